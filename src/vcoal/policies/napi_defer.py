"""``napi_defer``: the kernel's software interrupt deferral, static per layer, as Linux ships it.

Mechanism (net/core/dev.c ``napi_complete_done``, Linux 5.8+, per NAPI since 6.13; algorithms.md
section 3.1): after a poll that did work the driver keeps the device (or virtual) interrupt masked
and an hrtimer re-polls the queue every ``gro_flush_timeout`` ns, for up to
``napi_defer_hard_irqs`` consecutive empty polls; then the interrupt is re-armed. Both knobs must
be non-zero for deferral; ``gro_flush_timeout`` alone only delays the GRO flush. It works for any
NAPI driver, so it is the knob of the software layers (netback's and netfront's/virtio's queues,
veth) that have no hardware moderation.

The kernel has no adaptive rule for these knobs: they are sysfs/netlink settings an operator
chooses (the only dynamic variant, IRQ suspension in 6.13, needs an epoll busy-polling application
and is out of scope). The faithful baseline is therefore static: the chosen layers get the chosen
values once, on the first ``decide``, and keep them. Defaults follow the published "defer" setting
of Karsten and Damato's benchmark (``napi_defer_hard_irqs`` = 100, ``gro_flush_timeout`` = 10 us),
applied to the backend and frontend layers. Sites that cannot set both knobs are left alone.
"""

from __future__ import annotations

import dataclasses

from vcoal.model.params import MAX_DEFER_HARD_IRQS, MAX_GRO_FLUSH_TIMEOUT_NS
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext
from vcoal.policies._common import can_set, check_int, parse_layers
from vcoal.policies.base import PolicyBase

_FIELDS = ("napi_defer_hard_irqs", "gro_flush_timeout_ns")


class NapiDefer(PolicyBase):
    """Static NAPI deferral (``napi_defer_hard_irqs`` + ``gro_flush_timeout``) on chosen layers."""

    name = "napi_defer"
    description = "static NAPI IRQ deferral (defer_hard_irqs + gro_flush_timeout) on software layers"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``layers``: comma-separated layers to set; ``defer_hard_irqs``: empty polls before the
        interrupt is re-armed; ``gro_flush_timeout_ns``: re-poll period in ns."""

        layers: str = "backend,frontend"
        defer_hard_irqs: int = 100
        gro_flush_timeout_ns: int = 10_000

        def __post_init__(self) -> None:
            parse_layers("layers", self.layers)
            check_int("defer_hard_irqs", self.defer_hard_irqs, 0, MAX_DEFER_HARD_IRQS)
            check_int("gro_flush_timeout_ns", self.gro_flush_timeout_ns, 0, MAX_GRO_FLUSH_TIMEOUT_NS)

    def reset(self, context: PolicyContext, rng) -> None:
        super().reset(context, rng)
        self._done = False

    def decide(self) -> Decision | None:
        """Set the deferral knobs of every chosen site once; keep everything else."""
        if self._done or self.context is None:
            return None
        self._done = True
        p = self.params
        layers = set(parse_layers("layers", p.layers))
        index = self.window.index if self.window is not None else 0
        params, records = {}, []
        active = p.defer_hard_irqs > 0 and p.gro_flush_timeout_ns > 0
        for site, info in self.context.sites.items():
            if site.layer not in layers:
                continue
            if not all(can_set(info, f) for f in _FIELDS):
                records.append(
                    DecisionRecord(index, site, info.initial, False, "napi_defer: site cannot set both knobs")
                )
                continue
            new = info.initial.with_changes(
                napi_defer_hard_irqs=p.defer_hard_irqs, gro_flush_timeout_ns=p.gro_flush_timeout_ns
            )
            params[site] = new
            reason = (
                f"napi_defer: re-poll every {p.gro_flush_timeout_ns} ns, re-arm after "
                f"{p.defer_hard_irqs} empty polls"
                if active
                else "napi_defer: deferral off (a knob is 0)"
            )
            predicted = {"max_poll_wait_us": p.gro_flush_timeout_ns / 1000 if active else 0.0}
            records.append(DecisionRecord(index, site, new, new != info.initial, reason, {}, predicted))
        return Decision(params, tuple(records)) if records else None
