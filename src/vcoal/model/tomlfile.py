"""Reading input files with a one-line error (scenarios, cost files, sweeps, agent configs, traces).

Every error names the file (and the line where there is one). Only regular files are read, and
only up to a stated size: ``/dev/zero``, a FIFO or a runaway file is refused before any reading.
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

TOML_MAX_BYTES = 16 * 2**20
"""Largest TOML file read (16 MiB): a scenario, sweep or config is a few kB."""


def read_text(path: str | Path, what: str | None, max_bytes: int) -> str:
    """A regular UTF-8 text file of at most ``max_bytes``; ValueError with one line otherwise."""
    path = Path(path)
    prefix = f"{what}: " if what else ""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{prefix}{path}: not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{prefix}{path}: {_mib(info.st_size)} is above the {_mib(max_bytes)} limit")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"{prefix}{path}: cannot read: {exc.strerror}") from None
    if len(data) > max_bytes:  # grew while we looked
        raise ValueError(f"{prefix}{path}: above the {_mib(max_bytes)} limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{prefix}{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def read_toml(path: str | Path, what: str | None = None) -> dict[str, Any]:
    """A TOML file as a dict; ValueError with one line when it cannot be read or parsed."""
    path = Path(path)
    text = read_text(path, what, TOML_MAX_BYTES)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        prefix = f"{what}: " if what else ""
        raise ValueError(f"{prefix}{path}: not valid TOML: {exc}") from None
