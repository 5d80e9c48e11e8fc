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
            p = CoalesceParams(napi_budget=info.initial.napi_budget)
            params[site] = p
            records.append(DecisionRecord(self.window.index if self.window else 0, site, p, p != info.initial, "off: no coalescing"))
        return Decision(params, tuple(records))
