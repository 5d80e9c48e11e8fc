"""Turn a testbed trial's raw outputs and counters into a ``TrialResult`` (pure, testable).

Latency of a request-response tenant is the full round trip of every valid sockperf sample
(``--full-log``), put in a ``LatencyHistogram``; the result's ``latency_us`` and ``rtt_us`` both
hold it (the SLO is judged on the round trip). A bulk tenant's throughput is iperf3's receiver
figure; its packets are the data packets its receiver's device received.

CPU (see ``vcoal.testbed.measure``): ``cpus`` holds one entry, ``testbed_tasks``, whose fields are
CPU-seconds per second (may exceed 1 on 2 CPUs): ``softirq`` = ksoftirqd/napi kernel threads,
``app`` = the tool processes (clients and servers, including the softirqs they run inline),
``irq`` = 0 (not separable without IRQ-time accounting), ``idle`` = CPUs minus the sum.
``meta`` adds NET_RX softirqs per second and per delivered packet and all tasks' CPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from vcoal import __version__
from vcoal.model.histogram import LatencyHistogram
from vcoal.model.result import CpuResult, DirResult, SiteResult, TenantResult, TrialResult
from vcoal.model.stats import CounterSample, DirStats
from vcoal.model.units import Site
from vcoal.spec import ScenarioSpec
from vcoal.testbed import iperf3, sockperf
from vcoal.testbed.load import TenantLoad
from vcoal.testbed.measure import HostSnapshot
from vcoal.testbed.sites import SiteDevice


@dataclass(frozen=True, slots=True)
class ClientOutput:
    """What a finished client left: stdout, its sample log and its start time."""

    load: TenantLoad
    stdout: str
    full_log: str
    started_ns: int


def rtt_histogram(samples: list[tuple[float, float]]) -> LatencyHistogram:
    """Histogram of round trips (µs → ns)."""
    h = LatencyHistogram()
    for _t, rtt_us in samples:
        h.add(round(rtt_us * 1000))
    return h


def split_windows(
    samples: list[tuple[float, float]], started_ns: int, t_start_ns: int, window_ns: int, n: int
) -> list[LatencyHistogram]:
    """Samples per policy window; a sample's time is the client's start plus its tx time."""
    hists = [LatencyHistogram() for _ in range(n)]
    for tx_s, rtt_us in samples:
        k = int((started_ns + tx_s * 1e9 - t_start_ns) // window_ns)
        if 0 <= k < n:
            hists[k].add(round(rtt_us * 1000))
    return hists


def _dir(new: DirStats, old: DirStats, seconds: float) -> DirResult:
    p, b = new.packets - old.packets, new.bytes - old.bytes
    i, pl, d = new.interrupts - old.interrupts, new.polls - old.polls, new.drops - old.drops
    return DirResult(p, b, i, pl, d, i / seconds if seconds else 0.0, p / i if i else math.nan)


def in_period(samples: list[tuple[float, float]], started_ns: int, t0_ns: int, t1_ns: int) -> list[tuple[float, float]]:
    """The samples sent in the measured period [t0, t1) (a sample's time: client start + tx time)."""
    return [s for s in samples if t0_ns <= started_ns + s[0] * 1e9 < t1_ns]


def _tenant(
    spec: ScenarioSpec, out: ClientOutput, recv_packets: int, seconds: float, period: tuple[int, int],
    settle_s: float = 0.0,
) -> tuple[TenantResult, list[tuple[float, float]]]:
    ld = out.load
    g = next(x for x in spec.guests if x.name == ld.tenant)
    slo = g.slo.to_slo()
    if ld.tool == "sockperf":
        samples = sockperf.parse_full_log(out.full_log) if out.full_log else []
        samples = in_period(samples, out.started_ns, *period)
        res = sockperf.parse(out.stdout)
        h = rtt_histogram(samples)
        lat = h.summary_us() if h.count else {"count": res.observations, "mean": res.avg_rtt_us, **{
            k: v for k, v in res.percentiles_us.items() if k in ("p50", "p90", "p99", "p99_9", "max")}}
        if ld.kind == "poisson":  # a stream: what the guest received in the period (only some are answered)
            tps = recv_packets / seconds if seconds else 0.0
            bps = tps * g.workload.packet_bytes * 8
            delivered, drops = recv_packets, 0
        else:  # round trips completed in the measured period (sockperf's own count covers its whole run)
            tps = len(samples) / seconds if samples and seconds else (res.received / res.valid_s if res.valid_s else 0.0)
            bps = tps * (g.workload.request_bytes + g.workload.response_bytes) * 8
            delivered, drops = res.received, max(0, res.sent - res.received)
        met = slo.verdict(lat.get("p99", math.nan), bool(lat.get("count")), bps)
        return TenantResult(
            ld.tenant, ld.kind, ld.direction, slo.p99_us, slo.min_throughput_bps, lat, dict(lat),
            tps, bps, res.sent, delivered, drops, met, h.cdf_us() if h.count else [],
        ), samples
    r = iperf3.parse(out.stdout)
    bps = r.bits_per_second
    skip = round(settle_s)  # iperf3 reports 1 s intervals from its start, the start of the settle windows
    if skip and len(r.interval_bps) > skip:
        kept = r.interval_bps[skip:skip + max(1, round(seconds))]
        bps = sum(kept) / len(kept)
    met = slo.throughput_met(bps)
    return TenantResult(
        ld.tenant, ld.kind, ld.direction, slo.p99_us, slo.min_throughput_bps, {}, None,
        recv_packets / seconds if seconds else 0.0, bps, recv_packets, recv_packets, 0, met,
    ), []


def summarise(
    *,
    spec: ScenarioSpec,
    policy: Any,
    loads: list[TenantLoad],
    outputs: dict[str, ClientOutput],
    devices: dict[Site, SiteDevice],
    first_sites: dict[Site, CounterSample],
    last_sites: dict[Site, CounterSample],
    first_tenants: dict[str, dict[str, int]],
    last_tenants: dict[str, dict[str, int]],
    host0: HostSnapshot,
    host1: HostSnapshot,
    t_start_ns: int,
    window_ns: int,
    windows: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    meta: dict[str, Any],
) -> TrialResult:
    """Build the TrialResult of a finished trial (no I/O)."""
    seconds = (host1.t_ns - host0.t_ns) / 1e9
    tenants, extra = [], {}
    for ld in loads:
        a, b = first_tenants[ld.tenant], last_tenants[ld.tenant]
        # bulk or stream rx: the guest's geth receives the data; tx: it transmits it
        key = "rx_packets" if ld.direction == "rx" else "tx_packets"
        t, samples = _tenant(spec, outputs[ld.tenant], b[key] - a[key], seconds, (host0.t_ns, host1.t_ns),
                             meta.get("settle_windows", 0) * window_ns / 1e9)
        tenants.append(t)
        if samples:
            per = split_windows(samples, outputs[ld.tenant].started_ns, t_start_ns, window_ns, len(windows))
            for w, h in zip(windows, per, strict=True):
                if h.count:
                    w["tenants"][ld.tenant]["p50_us"] = h.quantile_ns(0.5) / 1e3
                    w["tenants"][ld.tenant]["p99_us"] = h.quantile_ns(0.99) / 1e3
        if ld.tool == "iperf3":
            r = iperf3.parse(outputs[ld.tenant].stdout)
            extra[ld.tenant] = {"cpu_sender_pct": r.cpu_sender_pct, "cpu_receiver_pct": r.cpu_receiver_pct,
                                "retransmits": r.retransmits}
    sites = [
        SiteResult(
            str(s), s.layer.value,
            _dir(last_sites[s].rx, first_sites[s].rx, seconds),
            _dir(last_sites[s].tx, first_sites[s].tx, seconds),
            0, meta.get("final_params", {}).get(str(s), {}),
        )
        for s in devices
    ]
    tools_ns = int(meta.get("tools_cpu_ns", 0))
    kthreads_ns = host1.kthreads_cpu_ns - host0.kthreads_cpu_ns
    ncpu = os.cpu_count() or 1
    app = tools_ns / 1e9 / seconds if seconds else 0.0
    soft = kthreads_ns / 1e9 / seconds if seconds else 0.0
    cpus = [CpuResult("testbed_tasks", 0.0, soft, app, max(0.0, ncpu - app - soft))]
    delivered = sum(t.delivered for t in tenants)
    net_rx = host1.net_rx - host0.net_rx
    all_ns = int(meta.get("all_tasks_cpu_ns", 0))
    meta = {
        **meta,
        "vcoal_version": __version__,
        "net_rx_per_s": net_rx / seconds if seconds else 0.0,
        "net_rx_per_packet": net_rx / delivered if delivered else math.nan,
        "net_tx_per_s": (host1.net_tx - host0.net_tx) / seconds if seconds else 0.0,
        "tasks_cpu_ns_per_packet": (tools_ns + kthreads_ns) / delivered if delivered else math.nan,
        "background_cpu_frac": max(0.0, all_ns - tools_ns - kthreads_ns) / 1e9 / seconds if seconds else 0.0,
        "tool_stats": extra,
        "cpus_online": ncpu,
    }
    return TrialResult(
        scenario=spec.name,
        spec_hash=spec.spec_hash(),
        seed=spec.seed,
        policy=getattr(policy, "name", type(policy).__name__),
        policy_params=policy.params_dict() if hasattr(policy, "params_dict") else {},
        duration_s=spec.duration_s,
        measured_s=seconds,
        tenants=tenants,
        sites=sites,
        cpus=cpus,
        windows=windows,
        decisions=decisions,
        meta=meta,
    )
