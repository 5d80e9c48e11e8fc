"""How much work a scenario is before it runs: an estimate of simulator events.

``estimate_events(spec)`` multiplies each tenant's packet rate (an upper estimate from its
workload: open-loop rates and steps, pacing or the link, closed-loop requests over the fastest
round trip the cost model allows, trace rows) by the duration, the hops a packet crosses and the
events a packet causes per hop. Front ends refuse a scenario above ``EVENT_BUDGET`` unless forced.
"""

from __future__ import annotations

from vcoal.spec.scenario import ScenarioSpec, WorkloadSpec

EVENT_BUDGET = 1_000_000_000
"""Events a run may take without ``--force``: about half a minute on the compiled engine."""
EVENTS_PER_PACKET_HOP = 4
"""Events one packet causes at one hop (ring arrival, gate/timer, poll, completion); measured
2.8-3.7 on the example suite, rounded up."""
US = 1e-6


def estimate_events(spec: ScenarioSpec) -> int:
    """Estimated simulator events of ``spec`` (an upper estimate; see the module docstring)."""
    hops = len(spec.host.layers)
    return int(sum(_packets(spec, g.workload) * hops * EVENTS_PER_PACKET_HOP for g in spec.guests))


def over_budget(spec: ScenarioSpec, budget: int = EVENT_BUDGET) -> str | None:
    """One line saying why ``spec`` is refused (estimate above ``budget``), or None."""
    est = estimate_events(spec)
    if est <= budget:
        return None
    return (
        f"{spec.name}: about {est:.1e} simulator events estimated (rates x {spec.duration_s:g} s x "
        f"{len(spec.host.layers)} hops), above the budget of {budget:.0e}; shorten duration_s or lower "
        "the rates, or pass --force to run it anyway"
    )


def _packets(spec: ScenarioSpec, w: WorkloadSpec) -> float:
    """Packets the workload puts on the path during the run (both directions)."""
    duration = spec.duration_s
    link_bps = spec.host.link_gbps * 1e9
    if w.kind == "trace":
        return sum(1 for ts, _, _ in w.trace_rows if ts * US < duration)
    if w.kind == "poisson":
        return max([w.rate_pps, *(rate for _, rate in w.steps)]) * duration
    if w.kind == "bulk":
        bps = w.pace_gbps * 1e9 if w.pace_gbps > 0 else link_bps
        data_pps = min(bps, link_bps) / (8 * w.mean_of("packet_bytes"))
        return data_pps * (1 + 1 / w.ack_every) * duration
    c = spec.cost  # request_response: outstanding requests over the fastest possible round trip
    per_packet_us = c.nic_pkt_us + c.bridge_pkt_us + c.netback_pkt_us + c.frontend_pkt_us + c.stack_pkt_us
    rtt_us = w.mean_of("think_us") + w.mean_of("app_us") + c.ctx_switch_us + 2 * per_packet_us
    link_pps = link_bps / (8 * (w.mean_of("request_bytes") + w.mean_of("response_bytes")))
    requests_per_s = min(w.outstanding / max(rtt_us * US, 1e-9), link_pps)
    return 2 * requests_per_s * duration
