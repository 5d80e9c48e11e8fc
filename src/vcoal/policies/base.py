"""Shared pieces of every policy: parameter validation and a base class."""

from __future__ import annotations

import dataclasses
import random
import typing
from typing import Any, ClassVar

from vcoal.model.policy import Decision, PolicyContext
from vcoal.model.stats import WindowStats


def params_from_dict(params_cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a policy's frozen ``Params`` dataclass, rejecting unknown keys and bad types.

    Range checks live in each ``Params.__post_init__`` and raise ValueError naming the field.
    """
    names = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        accepted = ", ".join(sorted(names)) or "none"
        raise ValueError(f"{what}: unknown parameter {unknown[0]!r}; accepted: {accepted}")
    hints = typing.get_type_hints(params_cls)
    clean: dict[str, Any] = {}
    for key, value in data.items():
        expected = hints.get(key)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected in (int, float, str, bool) and not isinstance(value, expected):
            raise ValueError(f"{what}: parameter {key}={value!r}: expected {expected.__name__}")
        if expected in (int, float) and isinstance(value, bool):
            raise ValueError(f"{what}: parameter {key}={value!r}: expected {expected.__name__}")
        clean[key] = value
    try:
        return params_cls(**clean)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {exc}") from None


class PolicyBase:
    """Base class: stores params, context and rng. Subclasses define ``Params`` and ``decide``."""

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        self.context: PolicyContext | None = None
        self.rng = random.Random(0)
        self.window: WindowStats | None = None

    def reset(self, context: PolicyContext, rng: random.Random) -> None:
        """Start over for a new environment."""
        self.context = context
        self.rng = rng
        self.window = None

    def observe(self, stats: WindowStats) -> None:
        """Remember the latest window."""
        self.window = stats

    def decide(self) -> Decision | None:
        """Keep everything (subclasses override)."""
        return None

    def params_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)
