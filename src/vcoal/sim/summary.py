"""Turn a finished Simulation into a TrialResult (measured period = warm-up to end)."""

from __future__ import annotations

import math

from vcoal import __version__
from vcoal.model.result import CpuResult, DirResult, SiteResult, TenantResult, TrialResult


def _dir(new, old, seconds: float) -> DirResult:
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


def summarise(sim, wall_s: float) -> TrialResult:
    """Summary metrics, per-window series and decisions of a finished run."""
    from vcoal.sim.simulation import _sample

    spec = sim.spec
    m0 = sim._m0
    t0 = m0["t_ns"] if m0 else sim.end_ns
    seconds = max(0.0, (sim.end_ns - t0) / 1e9)
    tenants = []
    for t in sim.tenants:
        slo = t.guest.slo
        lat = t.hist.summary_us()
        rtt = t.rtt.summary_us() if t.rtt.count else None
        judged = rtt if rtt else lat
        tput_bps = t.m_bytes * 8 / seconds if seconds else 0.0
        met = slo.to_slo().verdict(judged["p99"], bool(judged["count"]), tput_bps)
        tenants.append(
            TenantResult(
                name=t.name,
                kind=t.w.kind,
                direction=t.w.direction,
                slo_p99_us=slo.p99_us,
                slo_min_throughput_bps=slo.min_throughput_bps,
                latency_us=lat,
                rtt_us=rtt,
                throughput_pps=t.m_delivered / seconds if seconds else 0.0,
                throughput_bps=tput_bps,
                sent=t.m_sent,
                delivered=t.m_delivered,
                drops=t.m_dropped,
                slo_met=met,
                latency_cdf_us=(t.rtt if t.rtt.count else t.hist).cdf_us(),
            )
        )
    sites = []
    for site, state in sim.sites.items():
        old = m0["sites"][site] if m0 else _sample(state, sim.end_ns)
        new = _sample(state, sim.end_ns)
        sites.append(
            SiteResult(
                site=str(site),
                layer=site.layer.value,
                rx=_dir(new.rx, old.rx, seconds),
                tx=_dir(new.tx, old.tx, seconds),
                cpu_ns=new.cpu_ns - old.cpu_ns,
                params_final=state.params.to_dict(),
            )
        )
    cpus = []
    period_ns = sim.end_ns - t0
    for c in sim.cpus:
        before = m0["cpus"][c.name] if m0 else c.busy_ns
        used = [min(1.0, (a - b) / period_ns) if period_ns else 0.0 for a, b in zip(c.busy_ns, before, strict=True)]
        cpus.append(CpuResult(c.name, used[0], used[1], used[2], max(0.0, 1.0 - sum(used))))
    pkts = sum(s.rx.packets + s.tx.packets for s in sites)
    runs = {c.name: c.runs - (m0["runs"][c.name] if m0 else c.runs) for c in sim.cpus}
    return TrialResult(
        scenario=spec.name,
        spec_hash=spec.spec_hash(),
        seed=sim.seed,
        policy=sim.policy.name if sim.policy is not None else "scenario",
        policy_params=policy_params(sim.policy),
        duration_s=spec.duration_s,
        measured_s=seconds,
        tenants=tenants,
        sites=sites,
        cpus=cpus,
        windows=sim.windows,
        decisions=sim.decisions,
        meta={
            "engine": "des",
            "vcoal_version": __version__,
            "wall_s": wall_s,
            "events": sim.events,
            "site_packets": pkts,
            "in_flight_end": sim.in_flight(),
            "softirq_runs": sum(runs.values()),
            "softirq_runs_by_cpu": runs,
        },
    )


def policy_params(policy) -> dict:
    """A policy's parameters as a dict ({} for none or a policy without ``params_dict``)."""
    if policy is None:
        return {}
    fn = getattr(policy, "params_dict", None)
    return fn() if callable(fn) else {}
