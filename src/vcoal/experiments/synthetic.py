"""A synthetic trial function: a closed-form stand-in for the simulator, for tests and benchmarks.

It runs the real policy loop (``reset`` / ``observe`` / ``decide`` every window) over window
statistics computed from a tiny analytic model: per site, an interrupt fires every
``max(1, rate * rx_usecs)`` packets and a packet waits about half the coalescing delay. Load
follows each tenant's ``steps``, so a scenario with a rate step shows a phase change. The numbers
are plausible, deterministic for a seed, and mean nothing physically.
"""

from __future__ import annotations

import random
import time
from typing import Any

from vcoal.model.result import CpuResult, DirResult, SiteResult, TenantResult, TrialResult
from vcoal.model.slo import Slo
from vcoal.model.stats import DirStats, SiteStats, TenantStats, WindowStats, window_to_dict
from vcoal.model.units import NS_PER_S
from vcoal.spec import ScenarioSpec, context_from_spec


def _rate_pps(workload: Any, t_s: float) -> float:
    if workload.kind != "poisson":
        return 20_000.0
    rate = workload.rate_pps
    for at_s, step_rate in workload.steps:
        if t_s >= at_s:
            rate = step_rate
    return rate


def synthetic_trial(
    spec: ScenarioSpec, policy: Any, seed: int | None = None, duration_s: float | None = None, sleep_s: float = 0.0
) -> TrialResult:
    """Same signature as ``vcoal.sim.run_scenario``; ``sleep_s`` makes a trial take wall time."""
    seed = spec.seed if seed is None else seed
    duration_s = duration_s or spec.duration_s
    rng = random.Random(seed)
    context = context_from_spec(spec)
    params = {site: info.initial for site, info in context.sites.items()}
    if policy is not None:
        policy.reset(context, random.Random(seed + 1))
    window_ns = int(spec.window.duration_us * 1000)
    n_windows = max(1, int(duration_s * NS_PER_S // window_ns))
    windows: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    lat_sum = {g.name: [] for g in spec.guests}
    irq_total = dict.fromkeys(params, 0)
    pkt_total = dict.fromkeys(params, 0)
    for w in range(n_windows):
        t_s = (w + 1) * window_ns / NS_PER_S
        site_stats, tenant_stats = {}, {}
        load = dict.fromkeys(params, 0.0)
        for i, g in enumerate(spec.guests):
            for site in spec.tenant_path(i):
                load[site] += _rate_pps(g.workload, t_s)
        for site, p in params.items():
            pkts = int(load[site] * window_ns / NS_PER_S * rng.uniform(0.95, 1.05))
            batch = max(1.0, load[site] * p.rx_usecs / 1e6, float(p.rx_frames or 1) if p.rx_usecs == 0 else 1.0)
            irqs = int(pkts / batch)
            irq_total[site] += irqs
            pkt_total[site] += pkts
            rx = DirStats(pkts, pkts * 1500, irqs, irqs, 0)
            site_stats[site] = SiteStats(site, window_ns, rx, DirStats(), irqs * 1000 + pkts * 500, p)
        for i, g in enumerate(spec.guests):
            delay_us = sum(5.0 + params[s].rx_usecs / 2 for s in spec.tenant_path(i)) * rng.uniform(0.9, 1.1)
            lat_sum[g.name].append(delay_us)
            pk = int(_rate_pps(g.workload, t_s) * window_ns / NS_PER_S)
            tenant_stats[g.name] = TenantStats(g.name, g.slo.to_slo(), pk, pk * 1500, delay_us, delay_us * 2)
        stats = WindowStats(w, (w + 1) * window_ns, window_ns, site_stats, tenant_stats)
        windows.append(window_to_dict(stats))
        if policy is not None:
            policy.observe(stats)
            decision = policy.decide()
            if decision is not None:
                params.update(decision.params)
                decisions.extend(r.to_dict() for r in decision.records)
    if sleep_s:
        time.sleep(sleep_s)
    measured_s = n_windows * window_ns / NS_PER_S
    tenants = []
    for g in spec.guests:
        vals = sorted(lat_sum[g.name])
        p99 = vals[-1] * 2
        lat = {"mean": sum(vals) / len(vals), "p50": vals[len(vals) // 2], "p90": vals[int(len(vals) * 0.9)],
               "p99": p99, "p99_9": p99 * 1.1, "max": p99 * 1.2, "count": float(len(vals) * 100)}
        slo = g.slo.to_slo()
        delivered = int(_rate_pps(g.workload, measured_s) * measured_s)
        cdf = [(v, (k + 1) / len(vals)) for k, v in enumerate(vals)]
        tenants.append(TenantResult(
            g.name, g.workload.kind, g.workload.direction, slo.p99_us, slo.min_throughput_bps, lat, None,
            delivered / measured_s, delivered * 12000 / measured_s, delivered, delivered, 0,
            _slo_met(slo, p99), cdf))
    sites = []
    for site, p in params.items():
        rx = DirResult(pkt_total[site], pkt_total[site] * 1500, irq_total[site], irq_total[site], 0,
                       irq_total[site] / measured_s, pkt_total[site] / max(1, irq_total[site]))
        tx = DirResult(0, 0, 0, 0, 0, 0.0, 0.0)
        sites.append(SiteResult(str(site), site.layer.value, rx, tx, irq_total[site] * 1000, p.to_dict()))
    busy = min(0.95, sum(irq_total.values()) * 2e-6 / measured_s + 0.05)
    cpus = [CpuResult(f"dom0-{c}", busy / 3, busy / 3, busy / 3, 1 - busy) for c in range(spec.host.driver_domain_cores)]
    return TrialResult(
        scenario=spec.name, spec_hash=spec.spec_hash(), seed=seed,
        policy=getattr(policy, "name", "none"),
        policy_params=policy.params_dict() if hasattr(policy, "params_dict") else {},
        duration_s=duration_s, measured_s=measured_s, tenants=tenants, sites=sites, cpus=cpus,
        windows=windows, decisions=decisions, meta={"engine": "synthetic"},
    )


def _slo_met(slo: Slo, p99_us: float) -> bool | None:
    return None if slo.p99_us is None else p99_us <= slo.p99_us
