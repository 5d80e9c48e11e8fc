"""One real-kernel trial: topology → knobs → closed-loop policy per window → load → counters → TrialResult.

Timeline (monotonic clock)::

    up topology, start servers (readiness polled), set the scenario's knobs, policy.reset
    t_c      sockperf clients and the wire tap start (sockperf idles ~2 s, then warms up 0.4 s)
    t_load   = t_c + 2.4 s: iperf3 clients start; window 0 begins; counters sampled
    every window_s: counters sampled → WindowStats → policy.observe/decide → knobs applied
    t_start  = t_load + settle windows (``settle_s``, default 0): the measured period begins
    t_start + measure_s: last window ends; clients finish; results parsed; topology removed

The policy sees per-window site counters, tenant packet/byte counts and, for sockperf tenants,
the window's round-trip p50/p99 from the wire tap (``vcoal.testbed.tap``; sockperf itself reports
only at exit). The result's window rows also get sockperf's own per-window p50/p99 afterwards,
from its full sample log.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vcoal.linux import procs, topology
from vcoal.linux.hostinfo import host_info
from vcoal.linux.knobs import LinuxKnobs
from vcoal.linux.napitrace import NapiTrace, TraceCounts, TraceUnavailable
from vcoal.linux.rps import set_rps
from vcoal.model.policy import Policy
from vcoal.model.result import TrialResult
from vcoal.model.stats import CounterSample, SiteStats, TenantStats, WindowStats, window_series_row
from vcoal.model.units import Site
from vcoal.spec import ScenarioSpec, context_from_spec
from vcoal.testbed import measure, placement, tap
from vcoal.testbed.load import TenantLoad, check_tools, client_argv, plan_loads
from vcoal.testbed.sites import (
    SUPPORTED_KNOBS,
    SiteDevice,
    SitePolls,
    counter_sample,
    knob_values,
    merge_nic,
    site_devices,
)
from vcoal.testbed.sockperf import STARTUP_S, WARMUP_S
from vcoal.testbed.summary import ClientOutput, summarise

log = logging.getLogger(__name__)
ATTRIBUTION_TRACE = "napi_poll tracepoint"
ATTRIBUTION_HOST_WIDE = "host-wide NET_RX"


@dataclass(frozen=True, slots=True)
class TrialOptions:
    """How to run a scenario on the testbed.

    ``measure_s`` defaults to the scenario's ``duration_s`` (at least 1 s); ``window_s`` is the
    policy window (the scenario's µs-scale window is for the simulator; a real knob write plus
    counter read takes milliseconds). ``tag`` names the topology (random when None).
    ``tap_every`` > 0 (a power of two) runs ``vcoal.testbed.tap`` on wire0, which times every
    ``tap_every``-th sockperf round trip from kernel packet timestamps, so the policy sees each
    latency tenant's p50/p99 every window; 0 disables it. ``placement``: ``auto`` splits the CPUs
    like a Xen host when there are enough (``vcoal.testbed.placement``), ``shared`` never does.
    ``settle_s`` (rounded to whole windows): the load and the policy run this long before the
    measured period, as in the simulator's warm-up (the policy acts, nothing is measured; its
    decisions are recorded with the settle windows' indices, ``meta.settle_windows`` of them).
    """

    measure_s: float | None = None
    window_s: float = 1.0
    tag: str | None = None
    napi: bool = True
    tap_every: int = 4
    settle_s: float = 0.0
    placement: str = "auto"

    def measured(self, spec: ScenarioSpec) -> float:
        return max(1.0, self.measure_s if self.measure_s is not None else spec.duration_s)


class KnobSet:
    """The NAPI knobs of every site, one LinuxKnobs (netlink sockets) per namespace.

    Sites sharing a device (several ``nic:qN`` on peth0) are merged with ``merge_nic``.
    """

    def __init__(self, devices: dict[Site, SiteDevice]) -> None:
        self.devices = devices
        self._knobs = {ns: LinuxKnobs(netns=ns) for ns in {d.ns for d in devices.values()}}
        self._applied: dict[tuple[str, str], dict[str, int]] = {}

    def read(self) -> dict[str, dict[str, int]]:
        return {f"{d.ns}/{d.dev}": self._knobs[d.ns].read(d.dev) for d in self.devices.values()}

    def apply(self, params: dict[Site, object], only: set[Site] | None = None) -> list[dict]:
        """Write the knobs of the devices of ``only`` (all when None); returns what was written."""
        by_dev: dict[tuple[str, str], dict[Site, object]] = {}
        for s, d in self.devices.items():
            by_dev.setdefault((d.ns, d.dev), {})[s] = params[s]
        out = []
        for (ns, dev), group in by_dev.items():
            if only is not None and not (set(group) & only):
                continue
            want = knob_values(merge_nic(group) if len(group) > 1 else next(iter(group.values())))
            if self._applied.get((ns, dev)) == want:
                continue
            got = self._knobs[ns].set(dev, want)
            self._applied[(ns, dev)] = want
            out.append({"dev": f"{ns}/{dev}", "sites": sorted(map(str, group)), "applied": got})
        return out

    def close(self) -> None:
        for k in self._knobs.values():
            k.close()


class Counters:
    """Per-window counters: device statistics of every site and tenant, host NET_RX, and the NAPI
    polls of every hop from the ``napi:napi_poll`` tracepoint (host-wide NET_RX where tracing is
    unavailable: ``attribution`` says which, and why)."""

    def __init__(self, devices: dict[Site, SiteDevice], topo: topology.TopologyPlan, trace: bool = True) -> None:
        self.devices = devices
        self.tenant_dev = {g.name: (g.ns, g.dev) for g in topo.guests}
        namespaces = {d.ns for d in devices.values()} | {ns for ns, _ in self.tenant_dev.values()}
        self._links = topology.LinkCounters(sorted(namespaces))
        self.kthreads = measure.kernel_net_threads()
        self.trace: NapiTrace | None = None
        self.attribution = {"source": ATTRIBUTION_HOST_WIDE, "reason": "disabled"}
        if trace:
            try:
                self.trace = NapiTrace(topo.tag, topo.napi_devices())
                self.attribution = {"source": ATTRIBUTION_TRACE, "devices": list(topo.napi_devices())}
            except (TraceUnavailable, ValueError) as exc:
                self.attribution = {"source": ATTRIBUTION_HOST_WIDE, "reason": str(exc)}
                log.warning("per-site attribution unavailable, using host-wide NET_RX: %s", exc)

    def sample(self, final: bool = False) -> tuple[dict[Site, CounterSample], dict[str, dict[str, int]],
                                                    measure.HostSnapshot, TraceCounts | None]:
        """Site and tenant counters, host counters and (when traced) cumulative polls per device;
        ``final`` stops the trace first, so its counts are complete."""
        host = measure.snapshot(self.kthreads)
        links = self._links.read()
        napi = None
        if self.trace is not None:  # after the clock: a drain takes time
            napi = self.trace.stop() if final else self.trace.read()
        wanted = [(d.ns, d.dev) for d in self.devices.values()] + list(self.tenant_dev.values())
        missing = [f"netns {ns}: no device {dev!r}" for ns, dev in wanted if dev not in links.get(ns, {})]
        if missing:
            raise RuntimeError(missing[0])

        def polls(d: SiteDevice) -> SitePolls:
            if napi is None:
                return SitePolls.host_wide(host.net_rx)
            return SitePolls(napi.devices[d.dev].polls, napi.devices[d.peer_dev].polls)

        sites = {s: counter_sample(d, links[d.ns][d.dev], host.t_ns, polls(d)) for s, d in self.devices.items()}
        tenants = {name: links[ns][dev] for name, (ns, dev) in self.tenant_dev.items()}
        return sites, tenants, host, napi

    def attribution_state(self) -> dict:
        """Where per-site polls come from (and, when traced, the events lost so far and the CPU time
        the trace's reading took, settle windows included)."""
        if self.trace is None:
            return dict(self.attribution)
        return {**self.attribution, "overrun": self.trace.overrun(), "reader_cpu_s": self.trace.reader_cpu_ns / 1e9}

    def close(self) -> None:
        self._links.close()
        if self.trace is not None:
            self.trace.close()


def _sleep_until(t_ns: int, clients: list[procs.NsProcess]) -> None:
    while True:
        left = (t_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return
        for c in clients:
            if c.popen.poll() not in (None, 0):
                raise RuntimeError(f"{c.label} exited early ({c.popen.returncode}): {c.stderr().strip()[-300:]}")
        time.sleep(min(left, 0.05))


def run_trial(spec: ScenarioSpec, policy: Policy, options: TrialOptions | None = None) -> TrialResult:
    """Run the scenario's tenants on a fresh topology under ``policy``; the topology is removed after."""
    options = options or TrialOptions()
    check_tools(spec)
    tag = options.tag or "r" + secrets.token_hex(3)
    topo = topology.plan(tag, [g.name for g in spec.guests])
    devices = site_devices(spec, topo)
    measure_s = options.measured(spec)
    n_windows = max(1, round(measure_s / options.window_s))
    window_ns = round(measure_s * 1e9 / n_windows)
    n_settle = round(options.settle_s / options.window_s)
    wall0 = time.monotonic()
    topology.up(topo, napi=options.napi)
    knobs: KnobSet | None = None
    counters: Counters | None = None
    try:
        placed, placement_meta = _place(topo, options.placement)
        wire_cpus = placed.sets[placement.WIRE] if placed else None
        with tempfile.TemporaryDirectory(prefix="vcoal-tb-") as log_dir, procs.ProcessSet() as ps:
            loads = plan_loads(spec, topo, measure_s + n_settle * window_ns / 1e9, log_dir)
            for ld in loads:
                ps.start(ld.server_ns, ld.server_argv, f"{ld.tool}-server-{ld.tenant}",
                         placed.of_guest(ld.tenant) if placed else None).wait_listening(ld.port, ld.proto)
            knobs = KnobSet(devices)
            knobs_initial = knobs.read()
            ctx = context_from_spec(spec, supported=SUPPORTED_KNOBS)
            current = {s: info.initial for s, info in ctx.sites.items()}
            knobs.apply(current)
            knobs_before = knobs.read()
            policy.reset(ctx, random.Random(spec.seed))
            windows, decisions, applied_log = [], [], []
            # as the simulator and the agent do: one decision right after reset, applied before load
            _decide(policy.decide(), -1, devices, current, knobs, decisions, applied_log)
            counters = Counters(devices, topo)

            clients: dict[str, procs.NsProcess] = {}
            t_c = time.monotonic_ns()
            for ld in loads:
                if ld.tool == "sockperf":
                    clients[ld.tenant] = ps.start(ld.client_ns, client_argv(ld), f"sockperf-{ld.tenant}", wire_cpus)
            tap_reader, tap_ports = _start_tap(ps, topo, loads, options.tap_every, log_dir, wire_cpus)
            t_load = t_c + round((STARTUP_S + WARMUP_S) * 1e9)
            t_start = t_load + n_settle * window_ns  # the measured period starts after the settle windows
            _sleep_until(t_load, list(clients.values()))
            for ld in loads:
                if ld.tool == "iperf3":
                    clients[ld.tenant] = ps.start(ld.client_ns, client_argv(ld), f"iperf3-{ld.tenant}", wire_cpus)
            old_sites, old_ten, host0, napi0 = counters.sample()
            first_sites, first_ten, prev_host, prev_napi = old_sites, old_ten, host0, napi0
            t0_ns = host0.t_ns  # the policy's windows are timed from the load's start (settle windows too)
            tools0, all_cpu0 = _tools_cpu(ps), measure.all_tasks_cpu_ns()
            tap_samples: list[tuple[int, int, int]] = []
            last = n_settle + n_windows - 1
            for k in range(last + 1):
                _sleep_until(t_load + (k + 1) * window_ns, list(clients.values()))
                new_sites, new_ten, host, napi = counters.sample(final=k == last)
                lat = {}
                if tap_reader is not None:
                    tap_samples += tap_reader.read_new()
                    lat = {t: tap.window_quantiles(tap_samples, port, _t_of(old_sites), host.t_ns)
                           for t, port in tap_ports.items()}
                ws = _window(k, ctx, current, old_sites, new_sites, old_ten, new_ten, host.t_ns - t0_ns, lat)
                if k >= n_settle:
                    windows.append(_row(ws, host.net_rx - prev_host.net_rx, polls_delta(prev_napi, napi)))
                    for t, (n, p50, p99) in lat.items():
                        windows[-1]["tenants"][t].update(tap_samples=n, tap_p50_us=p50, tap_p99_us=p99)
                prev_host, prev_napi = host, napi
                if k < last:  # no decision after the last window (as in the simulator)
                    policy.observe(ws)
                    _decide(policy.decide(), k, devices, current, knobs, decisions, applied_log)
                old_sites, old_ten = new_sites, new_ten
                if k == n_settle - 1:  # settled: the measured period's baselines
                    first_sites, first_ten, host0, napi0 = new_sites, new_ten, host, napi
                    tools0, all_cpu0 = _tools_cpu(ps), measure.all_tasks_cpu_ns()
            host_end = host
            tools1, all_cpu1 = _tools_cpu(ps), measure.all_tasks_cpu_ns()
            outputs = {}
            for ld in loads:
                c = clients[ld.tenant]
                c.wait(timeout_s=15.0)
                log_text = ""
                if ld.tool == "sockperf" and getattr(ld.client, "full_log", None):
                    p = Path(ld.client.full_log)
                    log_text = p.read_text() if p.exists() else ""
                outputs[ld.tenant] = ClientOutput(ld, c.stdout(), log_text, c.started_ns)
            knobs_after = knobs.read()
        return summarise(
            spec=spec,
            policy=policy,
            loads=loads,
            outputs=outputs,
            devices=devices,
            first_sites=first_sites,
            last_sites=old_sites,
            first_tenants=first_ten,
            last_tenants=old_ten,
            host0=host0,
            host1=host_end,
            t_start_ns=t_start,
            window_ns=window_ns,
            windows=windows,
            decisions=decisions,
            meta={
                "environment": "testbed",
                "host": {**host_info().to_dict(), "sockperf": _version(["sockperf", "--version"]),
                         "iperf3": _version(["iperf3", "--version"])},
                "topology_tag": tag,
                "window_s": window_ns / 1e9,
                "settle_windows": n_settle,
                "knobs_initial": knobs_initial,
                "knobs_before": knobs_before,
                "knobs_after": knobs_after,
                "knob_writes": applied_log,
                "final_params": {str(s): p.to_dict() for s, p in current.items()},
                "tools_cpu_ns": tools1 - tools0,
                "tap_every": options.tap_every if tap_reader is not None else 0,
                "tap": {
                    t: dict(zip(("samples", "p50_us", "p99_us"), tap.window_quantiles(tap_samples, port, t_start, host_end.t_ns), strict=True))
                    for t, port in tap_ports.items()
                },
                "all_tasks_cpu_ns": all_cpu1 - all_cpu0,
                "placement": placement_meta,
                "attribution": attribution_summary(counters.attribution_state(), napi0, prev_napi,
                                                   host_end.net_rx - host0.net_rx),
                "wall_s": time.monotonic() - wall0,
            },
        )
    finally:
        if knobs is not None:
            knobs.close()
        if counters is not None:
            counters.close()
        topology.down(tag)


def _decide(decision, k: int, devices, current: dict, knobs: KnobSet, decisions: list, applied_log: list) -> None:
    """Record a decision and write the knobs of the sites it changes."""
    if decision is None:
        return
    decisions.extend(r.to_dict() for r in decision.records)
    changed = {s for s, p in decision.params.items() if s in devices and p != current[s]}
    current.update({s: decision.params[s] for s in changed})
    for entry in knobs.apply(current, changed):
        applied_log.append({"window": k, **entry})


def _place(topo: topology.TopologyPlan, asked: str) -> tuple[placement.Placement | None, dict]:
    """Split the CPUs this process may use (``asked``: ``auto`` or ``shared``) and steer every
    device's receive path to its owner's set; (the placement or None, ``meta.placement``)."""
    cpus = sorted(os.sched_getaffinity(0))
    placed = placement.plan(topo, cpus) if asked == "auto" else None
    if placed is None:
        return None, placement.shared_meta(topo, cpus, asked)
    for (ns, dev), role in placed.devices.items():
        set_rps(ns, dev, placed.sets[role])
    return placed, placed.to_meta()


def _start_tap(
    ps: procs.ProcessSet, topo: topology.TopologyPlan, loads: list[TenantLoad], every: int, log_dir: str,
    cpus: tuple[int, ...] | None = None,
) -> tuple[tap.TapReader | None, dict[str, int]]:
    """One tap on wire0 for all sockperf tenants; returns its reader and tenant → server port."""
    ports = {ld.tenant: ld.port for ld in loads if ld.tool == "sockperf"}
    if every <= 0 or not ports:
        return None, {}
    tap.bpf_program(every)  # validates
    path = f"{log_dir}/tap.txt"
    argv = [sys.executable, "-m", "vcoal.testbed.tap", topo.wire_dev, str(every), path]
    t = ps.start(topo.wire_ns, argv, "tap", cpus)
    procs.poll_until(lambda: Path(path).exists() or not t.running(), 5.0)
    if not t.running():
        raise RuntimeError(f"latency tap on {topo.wire_dev} failed: {t.stderr().strip()[-300:]}")
    return tap.TapReader(path), ports


def _version(argv: list[str]) -> str:
    """First line of a tool's version output ('' when it cannot run)."""
    import subprocess

    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].replace("sockperf: ", "").strip() if text else ""


def _tools_cpu(ps: procs.ProcessSet) -> int:
    """Run time of the load tools (the tap excluded: it is measurement, not load)."""
    return sum(p.cpu_ns() for p in ps.procs if p.label != "tap")


def _t_of(sites: dict[Site, CounterSample]) -> int:
    """Start time (ns) of the window that ends now: the time of the previous sample."""
    return next(iter(sites.values())).t_ns


def _window(
    k: int,
    ctx,
    current: dict[Site, object],
    old_sites: dict[Site, CounterSample],
    new_sites: dict[Site, CounterSample],
    old_ten: dict[str, dict[str, int]],
    new_ten: dict[str, dict[str, int]],
    t_ns: int,
    lat: dict[str, tuple[int, float | None, float | None]],
) -> WindowStats:
    sites = {s: SiteStats.from_samples(s, old_sites[s], new_sites[s], current[s]) for s in new_sites}
    interval = next(iter(sites.values())).interval_ns if sites else 0
    tenants = {}
    for name, info in ctx.tenants.items():
        a, b = old_ten[name], new_ten[name]
        pk = (b["rx_packets"] - a["rx_packets"]) + (b["tx_packets"] - a["tx_packets"])
        by = (b["rx_bytes"] - a["rx_bytes"]) + (b["tx_bytes"] - a["tx_bytes"])
        _n, p50, p99 = lat.get(name, (0, None, None))
        tenants[name] = TenantStats(name, info.slo, pk, by, p50, p99)
    return WindowStats(k, t_ns, interval, sites, tenants)


def _row(w: WindowStats, net_rx: int, traced: TraceCounts | None) -> dict:
    """A window as stored in TrialResult.windows (the simulator's row, plus NET_RX and, when traced,
    the NAPI polls of every hop, the traced NET_RX runs and those that polled a hop)."""
    row = window_series_row(w)
    per_s = 1e9 / (w.interval_ns or 1)
    row["net_rx_per_s"] = net_rx * per_s
    if traced is not None:
        row["napi_polls_per_s"] = {dev: p.polls * per_s for dev, p in traced.devices.items()}
        row["attributed_polls_per_s"] = traced.polls * per_s
        row["traced_net_rx_per_s"] = traced.net_rx_runs * per_s
        row["attributed_net_rx_per_s"] = traced.attributed_runs * per_s
    return row


def polls_delta(old: TraceCounts | None, new: TraceCounts | None) -> TraceCounts | None:
    """The traced counts between two readings (None without tracing)."""
    return None if old is None or new is None else new.minus(old)


def attribution_summary(attribution: dict, first: TraceCounts | None, last: TraceCounts | None, net_rx: int) -> dict:
    """``meta.attribution``: where site polls came from and, when traced, over the measured period:
    each hop's polls and packets per poll, the NET_RX runs the trace saw against /proc/softirqs
    (``traced_over_net_rx`` ~1: nothing lost) and the share of NET_RX runs that polled a hop."""
    out = dict(attribution)
    d = polls_delta(first, last)
    if d is None:
        return out
    out.update(
        devices={dev: {"polls": p.polls, "packets": p.packets, "empty_polls": p.empty,
                       "pkts_per_poll": p.packets / p.polls if p.polls else None} for dev, p in d.devices.items()},
        polls=d.polls,
        net_rx=net_rx,
        traced_net_rx=d.net_rx_runs,
        attributed_net_rx=d.attributed_runs,
        traced_over_net_rx=d.net_rx_runs / net_rx if net_rx else None,
        attributed_over_net_rx=d.attributed_runs / net_rx if net_rx else None,
        polls_per_attributed_run=d.polls / d.attributed_runs if d.attributed_runs else None,
    )
    return out
