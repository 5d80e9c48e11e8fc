"""The parts of a TrialResult both engines assemble alike (the event engine's ``Simulation`` and
the one-layer fast path): a tenant's figures and SLO verdict, a site's direction, the trial."""

from __future__ import annotations

import math

from vcoal.model.histogram import LatencyHistogram
from vcoal.model.result import DirResult, TenantResult, TrialResult
from vcoal.model.stats import DirStats


def tenant_result(g, hist: LatencyHistogram, rtt: LatencyHistogram, seconds: float, sent: int, delivered: int,
                  drops: int, nbytes: int) -> TenantResult:
    """Guest ``g``'s figures over the measured ``seconds``, judged on its round trips where it has them."""
    lat = hist.summary_us()
    rtt_us = rtt.summary_us() if rtt.count else None
    judged = rtt_us if rtt_us else lat
    tput_bps = nbytes * 8 / seconds if seconds else 0.0
    return TenantResult(
        name=g.name,
        kind=g.workload.kind,
        direction=g.workload.direction,
        slo_p99_us=g.slo.p99_us,
        slo_min_throughput_bps=g.slo.min_throughput_bps,
        latency_us=lat,
        rtt_us=rtt_us,
        throughput_pps=delivered / seconds if seconds else 0.0,
        throughput_bps=tput_bps,
        sent=sent,
        delivered=delivered,
        drops=drops,
        slo_met=g.slo.to_slo().verdict(judged["p99"], bool(judged["count"]), tput_bps),
        latency_cdf_us=(rtt if rtt.count else hist).cdf_us(),
    )


def dir_result(new: DirStats, old: DirStats, seconds: float) -> DirResult:
    """One direction of a site between two samples of its counters."""
    packets = new.packets - old.packets
    irqs = new.interrupts - old.interrupts
    return DirResult(
        packets=packets,
        bytes=new.bytes - old.bytes,
        interrupts=irqs,
        polls=new.polls - old.polls,
        drops=new.drops - old.drops,
        irq_per_s=irqs / seconds if seconds > 0 else 0.0,
        pkts_per_irq=packets / irqs if irqs else math.nan,
    )


def trial_result(spec, seed: int, policy, seconds: float, tenants: list, sites: list, cpus: list, meta: dict,
                 **kw) -> TrialResult:
    """The TrialResult of ``spec`` run under ``policy`` (None: the scenario's settings), with ``kw``
    (its windows and decisions)."""
    params = getattr(policy, "params_dict", None)
    return TrialResult(
        scenario=spec.name,
        spec_hash=spec.spec_hash(),
        seed=seed,
        policy=policy.name if policy is not None else "scenario",
        policy_params=params() if callable(params) else {},
        duration_s=spec.duration_s,
        measured_s=seconds,
        tenants=tenants,
        sites=sites,
        cpus=cpus,
        meta=meta,
        **kw,
    )
