"""JSON the CLI prints or writes: strict (no NaN or Infinity tokens), so any parser reads it."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON null), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def strict_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: NaN/infinity become null, other non-JSON values their ``str``."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False, default=str)
