"""``off``: no coalescing anywhere (an interrupt per packet, no NAPI deferral)."""

from __future__ import annotations

import dataclasses

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord
from vcoal.policies.base import PolicyBase


class Off(PolicyBase):
    """Sets every site to no moderation once, then keeps it."""

    name = "off"
    description = "no coalescing: one interrupt per packet at every layer"

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass

    def reset(self, context, rng) -> None:
        super().reset(context, rng)
        self._done = False

    def decide(self) -> Decision | None:
        if self._done or self.context is None:
            return None
        self._done = True
        params, records = {}, []
        for site, info in self.context.sites.items():
            p = _only_supported(CoalesceParams(napi_budget=info.initial.napi_budget), info)
            params[site] = p
            records.append(DecisionRecord(self.window.index if self.window else 0, site, p, p != info.initial, "off: no coalescing"))
        return Decision(params, tuple(records))


def _only_supported(params: CoalesceParams, info) -> CoalesceParams:
    """Keep the initial value of every field the site cannot set."""
    if info.supported is None:
        return params
    keep = {f: getattr(info.initial, f) for f in CoalesceParams.field_names() if f not in info.supported}
    return params.with_changes(**keep)
