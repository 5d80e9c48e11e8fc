"""The policy protocol: observe window statistics, decide parameters, never apply them.

The same policy type runs in the simulator, the testbed and the agent; the caller applies the
decision (like lib/dim's driver work item). A policy reads no clock, does no I/O and draws
randomness only from the generator handed to ``reset``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from vcoal.model.params import CoalesceParams
from vcoal.model.slo import Slo
from vcoal.model.stats import WindowStats
from vcoal.model.units import Layer, Site


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """A site a policy controls: its layer, the tenants whose packets cross it, its start values.

    ``supported`` names the parameters the site can really set (a veth has no ``rx_usecs``; a real
    NIC reports its set over ethtool netlink); None means all.
    """

    site: Site
    initial: CoalesceParams
    tenants: tuple[str, ...] = ()
    supported: frozenset[str] | None = None

    @property
    def layer(self) -> Layer:
        return self.site.layer


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """A tenant (guest), its SLO and the sites on its path, in path order."""

    name: str
    slo: Slo = field(default_factory=Slo)
    path: tuple[Site, ...] = ()
    kind: str = "unknown"


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy knows about the world before the first window."""

    sites: Mapping[Site, SiteInfo]
    tenants: Mapping[str, TenantInfo] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    profile: str = "xen"  # host shape (``host.profile``): "xen" (3-layer, real interrupts) or "veth"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """Why a policy set (or kept) one site's parameters: inputs, predictions and reason."""

    window: int
    site: Site
    params: CoalesceParams
    changed: bool
    reason: str
    inputs: Mapping[str, float] = field(default_factory=dict)
    predicted: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "site": str(self.site),
            "params": self.params.to_dict(),
            "changed": self.changed,
            "reason": self.reason,
            "inputs": dict(self.inputs),
            "predicted": dict(self.predicted),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """New parameters for some sites (others keep theirs) and the explanation records."""

    params: Mapping[Site, CoalesceParams] = field(default_factory=dict)
    records: tuple[DecisionRecord, ...] = ()


@runtime_checkable
class Policy(Protocol):
    """A coalescing policy. ``decide`` returns None to keep every site's parameters."""

    name: ClassVar[str]

    def reset(self, context: PolicyContext, rng: random.Random) -> None: ...

    def observe(self, stats: WindowStats) -> None: ...

    def decide(self) -> Decision | None: ...
