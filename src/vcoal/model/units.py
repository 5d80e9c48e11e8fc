"""Units, layers, directions and the names of coalescing sites."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class Layer(StrEnum):
    """The three driver layers every packet of a guest crosses."""

    NIC = "nic"
    BACKEND = "backend"
    FRONTEND = "frontend"


class Direction(StrEnum):
    """RX: wire towards the guest. TX: guest towards the wire."""

    RX = "rx"
    TX = "tx"


@dataclass(frozen=True, slots=True, order=True)
class Site:
    """One place whose coalescing parameters a policy sets: a layer and an instance name.

    Examples: ``Site("nic", "q0")`` for NIC queue 0, ``Site("backend", "g1")`` for the netback of
    guest ``g1``, ``Site("frontend", "g1")`` for its netfront.
    """

    layer: Layer
    instance: str

    def __str__(self) -> str:
        return f"{self.layer}:{self.instance}"

    @classmethod
    def parse(cls, text: str) -> Site:
        """Parse ``layer:instance``; raises ValueError naming the accepted layers."""
        layer, sep, instance = text.partition(":")
        if not sep or not instance:
            raise ValueError(f"site {text!r}: expected 'layer:instance', e.g. 'nic:q0'")
        try:
            return cls(Layer(layer), instance)
        except ValueError:
            raise ValueError(
                f"site {text!r}: layer must be one of {', '.join(x.value for x in Layer)}"
            ) from None
