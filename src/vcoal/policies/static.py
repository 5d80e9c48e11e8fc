"""``static``: fixed ethtool parameters per layer, applied once."""

from __future__ import annotations

import dataclasses

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord
from vcoal.model.units import Site
from vcoal.policies.base import PolicyBase

_LAYERS = ("nic", "backend", "frontend")


class Static(PolicyBase):
    """Applies fixed parameters per layer (empty = keep the scenario's own settings).

    Parameters are tables per layer, e.g. ``{"nic": {"rx_usecs": 8, "rx_frames": 32}}``, and per
    site, which win over their layer's table: ``{"sites": {"backend:bulk": {"napi_defer_hard_irqs":
    2, "gro_flush_timeout_ns": 50000}}}`` (one tenant's path, the testbed oracle's grid).
    """

    name = "static"
    description = "fixed ethtool parameters per layer (default: keep the scenario's settings)"

    @dataclasses.dataclass(frozen=True)
    class Params:
        nic: dict = dataclasses.field(default_factory=dict)
        backend: dict = dataclasses.field(default_factory=dict)
        frontend: dict = dataclasses.field(default_factory=dict)
        sites: dict = dataclasses.field(default_factory=dict)

        def __post_init__(self) -> None:
            for layer in _LAYERS:
                table = getattr(self, layer)
                if not isinstance(table, dict):
                    raise ValueError(f"{layer}: expected a table of coalescing parameters")
                CoalesceParams.from_dict(table)  # validates keys and ranges
            if not isinstance(self.sites, dict):
                raise ValueError("sites: expected a table of site -> coalescing parameters")
            for name, table in self.sites.items():
                Site.parse(name)
                if not isinstance(table, dict):
                    raise ValueError(f"sites.{name}: expected a table of coalescing parameters")
                CoalesceParams.from_dict(table)

    @property
    def is_noop(self) -> bool:
        """True when it sets nothing (keeps the scenario's settings): engines may skip it."""
        return not any(getattr(self.params, layer) for layer in (*_LAYERS, "sites"))

    def reset(self, context, rng) -> None:
        super().reset(context, rng)
        unknown = sorted(set(self.params.sites) - {str(s) for s in context.sites})
        if unknown:
            raise ValueError(f"static: sites.{unknown[0]}: not a site of this scenario "
                             f"({', '.join(sorted(map(str, context.sites)))})")
        self._done = self.is_noop

    def decide(self) -> Decision | None:
        if self._done or self.context is None:
            return None
        self._done = True
        params, records = {}, []
        for site, info in self.context.sites.items():
            table = {**getattr(self.params, site.layer.value), **self.params.sites.get(str(site), {})}
            if not table:
                continue
            if info.supported is not None:
                table = {k: v for k, v in table.items() if k in info.supported}
            p = CoalesceParams.from_dict(table, info.initial)
            params[site] = p
            records.append(DecisionRecord(self.window.index if self.window else 0, site, p, p != info.initial, "static: fixed setting"))
        return Decision(params, tuple(records))
