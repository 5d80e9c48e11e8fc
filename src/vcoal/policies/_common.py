"""Small helpers shared by the baseline policies: parameter checks, layer lists, supported fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import SiteInfo
from vcoal.model.units import Layer

LAYER_NAMES = tuple(layer.value for layer in Layer)


def check_int(name: str, value: Any, lo: int, hi: int) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``value`` is an int in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value}: out of range [{lo}, {hi}]")


def check_float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``value`` is a number in the range."""
    bracket = "(" if lo_open else "["
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}={value!r}: must be a number in {bracket}{lo}, {hi}]")
    if not (lo < value if lo_open else lo <= value) or not value <= hi:
        raise ValueError(f"{name}={value}: out of range {bracket}{lo}, {hi}]")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: must be one of {', '.join(choices)}")


def parse_layers(name: str, text: Any) -> tuple[Layer, ...]:
    """Parse a comma-separated list of layer names (``"nic,frontend"``), in the order given."""
    if not isinstance(text, str):
        raise ValueError(f"{name}={text!r}: must be a comma-separated list of {', '.join(LAYER_NAMES)}")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"{name}={text!r}: name at least one of {', '.join(LAYER_NAMES)}")
    for p in parts:
        if p not in LAYER_NAMES:
            raise ValueError(f"{name}={text!r}: unknown layer {p!r}; accepted: {', '.join(LAYER_NAMES)}")
    return tuple(Layer(p) for p in dict.fromkeys(parts))


def can_set(info: SiteInfo, field: str) -> bool:
    """True when the site lets a policy set ``field`` (``supported`` None means all)."""
    return info.supported is None or field in info.supported


def settable(info: SiteInfo, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``changes`` the site supports."""
    return {k: v for k, v in changes.items() if can_set(info, k)}


def apply_changes(base: CoalesceParams, info: SiteInfo, changes: Mapping[str, Any]) -> CoalesceParams:
    """``base`` with the supported subset of ``changes`` applied (validated by CoalesceParams)."""
    allowed = settable(info, changes)
    return base.with_changes(**allowed) if allowed else base


def ceil_div(num: int, den: int) -> int:
    """Integer division rounding up (the kernel's DIV_ROUND_UP) for non-negative operands."""
    return -(-num // den)


def round_div(num: int, den: int) -> int:
    """Integer division rounding half up, for non-negative operands."""
    return (2 * num + den) // (2 * den)
