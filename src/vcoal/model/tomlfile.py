"""Reading a TOML file with a one-line error (scenarios, cost files, sweeps, agent configs)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: str | Path, what: str | None = None) -> dict[str, Any]:
    """A TOML file as a dict; ValueError with one line when it cannot be read or parsed."""
    path = Path(path)
    prefix = f"{what}: " if what else ""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{prefix}{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{prefix}{path}: not valid TOML: {exc}") from None
