"""One simulated trial: build, run window by window with the policy in the loop, summarise.

The events run in the engine (``vcoal.sim.engine``), compiled or interpreted, over the arena;
between windows this module copies the arena's counters and histograms into plain Python objects
(sites, CPUs, tenants), builds the window statistics the policy observes, and writes the policy's
decisions back into the arena's site parameters before the loop resumes.
"""

from __future__ import annotations

import random
import time
from array import array
from collections.abc import Callable

import numpy as np

from vcoal.model.histogram import LatencyHistogram
from vcoal.model.policy import Decision, Policy
from vcoal.model.result import TrialResult
from vcoal.model.stats import CounterSample, DirStats, SiteStats, TenantStats, WindowStats, window_series_row
from vcoal.sim.arena import Feeder, build, write_params
from vcoal.sim.engine import layout as L
from vcoal.sim.engine import load
from vcoal.sim.summary import summarise
from vcoal.sim.topology import Topology
from vcoal.spec.context import context_from_spec
from vcoal.spec.scenario import ScenarioSpec

TRACE_ROWS = 4096
LIFE_ERRORS = {L.ERR_ENDED_TWICE: "delivered or dropped twice", L.ERR_FREED_LIVE: "freed before it ended"}


class DirCounters:
    """Monotonic counters of one site and direction."""

    __slots__ = ("bytes", "drops", "interrupts", "packets", "polls", "suppressed")

    def __init__(self) -> None:
        self.packets = self.bytes = self.interrupts = self.polls = self.drops = self.suppressed = 0


class SiteState:
    """A site's parameters in force and its counters (rx, tx, CPU time)."""

    __slots__ = ("cpu_ns", "name", "params", "rx", "tx")

    def __init__(self, name: str, params) -> None:
        self.name = name
        self.params = params
        self.rx = DirCounters()
        self.tx = DirCounters()
        self.cpu_ns = 0


class CpuState:
    """A CPU's busy time per class (interrupt, softirq, application)."""

    __slots__ = ("busy_ns", "name", "runs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.busy_ns = [0, 0, 0]
        self.runs = 0  # softirq runs (engine/core.py cpu_submit)


class TenantState:
    """A guest's workload counters (run, measured period, window) and latency histograms."""

    def __init__(self, guest) -> None:
        self.guest = guest
        self.w = guest.workload
        self.name = guest.name
        self.hist = LatencyHistogram()
        self.rtt = LatencyHistogram()
        self.win = LatencyHistogram()
        self.sent = self.delivered = self.dropped = 0
        self.m_delivered = self.m_bytes = self.m_dropped = self.m_sent = 0
        self.w_packets = self.w_bytes = 0


def _sample(site, t_ns: int) -> CounterSample:
    rx, tx = site.rx, site.tx
    return CounterSample(
        t_ns,
        DirStats(rx.packets, rx.bytes, rx.interrupts, rx.polls, rx.drops),
        DirStats(tx.packets, tx.bytes, tx.interrupts, tx.polls, tx.drops),
        site.cpu_ns,
    )


def _hist(counts: np.ndarray, stat: np.ndarray) -> LatencyHistogram:
    n, total, lo, hi = (int(v) for v in stat)
    h = LatencyHistogram()
    if n:
        h.counts = array("q", counts.tobytes())
        h.count, h.sum_ns, h.min_ns, h.max_ns = n, total, lo, hi
    return h


class Simulation:
    """A built scenario, ready to run.

    ``compiled``: run the engine compiled (else interpreted: the reference). ``audit``: check every
    packet's life; a packet delivered or dropped twice, or freed while live, raises
    ``AssertionError``, and so does a count of live packets that disagrees with the tenants'.
    ``trace``: called with every event, in order, as rows of a (n, 5) int64 array: time, key
    ((prio << 56) | seq), event kind, job (kind * 4 + class of a live CPU completion, -1 for a
    stale one), events pending.
    """

    def __init__(self, spec: ScenarioSpec, policy: Policy | None, seed: int, *, compiled: bool = True,
                 audit: bool = False, trace: Callable[[np.ndarray], None] | None = None) -> None:
        self.spec = spec
        self.seed = seed
        self.compiled = compiled
        self.end_ns = round(spec.duration_s * 1e9)
        self.warmup_ns = round(spec.warmup_s * 1e9)
        self.window_ns = max(1, round(spec.window.duration_us * 1000))
        self.deliveries: list | None = None
        self.samples: list | None = None  # (t_ns, {site: CounterSample}) per window, for replay
        self.trace = trace
        self.sites = {site: SiteState(str(site), p) for site, p in spec.site_params().items()}
        self.site_list = list(self.sites.values())
        topo = Topology(spec)
        self.cpus = [CpuState(name) for name in topo.cpus]
        self.tenants = [TenantState(g) for g in spec.guests]
        self.win_rtt = [LatencyHistogram() for _ in spec.guests]
        self.engine = load(compiled)
        self.feeder = Feeder(spec, seed)
        self.arena = build(spec, topo, self.feeder, self.end_ns, audit, TRACE_ROWS if trace is not None else 0)
        self.now = 0
        self.events = 0
        self.policy = policy
        self.context = context_from_spec(spec)
        self.windows: list[dict] = []
        self.decisions: list[dict] = []
        self._win_index = 0
        self._prev = {site: _sample(s, 0) for site, s in self.sites.items()}
        self._prev_busy = {c.name: [0, 0, 0] for c in self.cpus}
        self._m0 = None
        if policy is not None:
            policy.reset(self.context, random.Random(seed ^ 0x5EED))
            self._apply(policy.decide())

    # --- the engine --------------------------------------------------------------------------------

    def _run_events(self, until_ns: int, budget: int = -1) -> int:
        """Events with time <= ``until_ns``, at most ``budget`` of them (-1: all); the budget left."""
        write_params(self.arena, (s.params for s in self.site_list))
        a = self.arena
        while True:
            budget = self.engine.run(a.m, a.x, until_ns, budget)
            if a.m[L.FLAG] & L.F_ERROR:
                self._drain(a)
                p = int(a.m[L.ERROR_PKT])
                raise AssertionError(f"audit: packet {p} {LIFE_ERRORS[int(a.m[L.ERROR])]} at {int(a.m[L.NOW])} ns")
            if a.m[L.FLAG]:
                a = self.arena = self.feeder.service(a, self._drain, self._drain_trace)
            if not a.m[L.STATUS]:
                break
        self._drain(a)
        self._drain_trace(a)
        self.now = int(a.m[L.NOW])
        self.events = int(a.m[L.EVENTS])
        return int(budget)

    def _drain(self, a) -> None:
        """Move recorded deliveries from the arena to ``self.deliveries``."""
        n = int(a.m[L.NDELIV])
        if n and self.deliveries is not None:
            self.deliveries.extend(map(tuple, a.view("deliv")[:n].tolist()))
        a.m[L.NDELIV] = 0

    def _drain_trace(self, a) -> None:
        n = int(a.m[L.NTRACE])
        if n and self.trace is not None:
            self.trace(a.view("trace")[:n].copy())
        a.m[L.NTRACE] = 0

    def _sync(self, full: bool) -> None:
        """Copy counters (and, if ``full``, the run's histograms) into the Python objects."""
        a = self.arena
        ctr = a.view("ctr").tolist()
        cpu_ns = a.view("sitecpu")[:, 0].tolist()
        for k, state in enumerate(self.site_list):
            for d, dc in ((0, state.rx), (1, state.tx)):
                dc.packets, dc.bytes, dc.interrupts, dc.polls, dc.drops, dc.suppressed = ctr[2 * k + d]
            state.cpu_ns = cpu_ns[k]
        cpu = a.view("cpu")
        for c, busy, runs in zip(self.cpus, cpu[:, L.C_BUSY : L.C_BUSY + 3].tolist(), cpu[:, L.C_RUNS].tolist(), strict=True):
            c.busy_ns = busy
            c.runs = runs
        n = len(self.tenants)
        rows = a.view("ten").tolist()
        hcount, hstat = a.view("hcount"), a.view("hstat")
        for i, t in enumerate(self.tenants):
            r = rows[i]
            t.sent, t.delivered, t.dropped = r[L.T_SENT], r[L.T_DELIVERED], r[L.T_DROPPED]
            t.m_delivered, t.m_bytes, t.m_dropped, t.m_sent = (
                r[L.T_M_DELIVERED], r[L.T_M_BYTES], r[L.T_M_DROPPED], r[L.T_M_SENT])
            t.w_packets, t.w_bytes = r[L.T_W_PACKETS], r[L.T_W_BYTES]
            t.win = _hist(hcount[L.HI_WIN * n + i], hstat[L.HI_WIN * n + i])
            self.win_rtt[i] = _hist(hcount[L.HI_WINRTT * n + i], hstat[L.HI_WINRTT * n + i])
            if full:
                t.hist = _hist(hcount[L.HI_HIST * n + i], hstat[L.HI_HIST * n + i])
                t.rtt = _hist(hcount[L.HI_RTT * n + i], hstat[L.HI_RTT * n + i])

    def live_packets(self) -> int:
        """Packets the arena holds as live (created, neither delivered nor dropped)."""
        a = self.arena
        return int(np.count_nonzero(a.view("pkt")[:, L.P_LIFE] == L.LIFE_LIVE))

    # --- policy loop -----------------------------------------------------------------------------

    def _apply(self, decision: Decision | None) -> None:
        if decision is None:
            return
        for site, params in decision.params.items():
            state = self.sites.get(site)
            if state is None:
                raise ValueError(f"policy {self.policy.name!r} set unknown site {site}")
            state.params = params
        self.decisions.extend(r.to_dict() for r in decision.records)

    def _window(self, t_ns: int) -> WindowStats:
        self._sync(t_ns >= self.end_ns)
        sites = {}
        if self.samples is not None and not self.samples:
            self.samples.append((0, dict(self._prev)))
        for site, state in self.sites.items():
            cur = _sample(state, t_ns)
            sites[site] = SiteStats.from_samples(site, self._prev[site], cur, state.params)
            self._prev[site] = cur
        if self.samples is not None:
            self.samples.append((t_ns, dict(self._prev)))
        tenants = {}
        for i, t in enumerate(self.tenants):
            src = self.win_rtt[i] if self.win_rtt[i].count else t.win
            tenants[t.name] = TenantStats(
                t.name,
                t.guest.slo.to_slo(),
                t.w_packets,
                t.w_bytes,
                src.quantile_ns(0.5) / 1e3 if src.count else None,
                src.quantile_ns(0.99) / 1e3 if src.count else None,
            )
        interval = t_ns - (self.windows[-1]["t_ns"] if self.windows else 0)
        stats = WindowStats(self._win_index, t_ns, interval, sites, tenants)
        self._win_index += 1
        row = window_series_row(stats)
        row["cpus"] = {}
        for c in self.cpus:
            prev = self._prev_busy[c.name]
            used = [(a - b) / interval if interval else 0.0 for a, b in zip(c.busy_ns, prev, strict=True)]
            row["cpus"][c.name] = {"irq": used[0], "softirq": used[1], "app": used[2], "idle": max(0.0, 1 - sum(used))}
            self._prev_busy[c.name] = list(c.busy_ns)
        self.windows.append(row)
        self._reset_window()
        return stats

    def _reset_window(self) -> None:
        """Start the next window's counters and histograms from zero."""
        a, n = self.arena, len(self.tenants)
        ten = a.view("ten")
        ten[:, L.T_W_PACKETS] = 0
        ten[:, L.T_W_BYTES] = 0
        hcount, hstat = a.view("hcount"), a.view("hstat")
        for h in (L.HI_WIN, L.HI_WINRTT):
            hcount[h * n : (h + 1) * n] = 0
            hstat[h * n : (h + 1) * n] = 0

    # --- running ---------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> TrialResult:
        """Run to the end and return the summary."""
        wall0 = time.perf_counter()
        a = self.arena
        a.m[L.REC_DELIV] = int(self.deliveries is not None)
        self.engine.start(a.m, a.x)
        if self.warmup_ns == 0:
            self._start_measuring()
        t_ns = 0
        while t_ns < self.end_ns:
            t_ns = self._advance(t_ns)
            stats = self._window(t_ns)
            if self.policy is not None and t_ns < self.end_ns:
                self.policy.observe(stats)
                self._apply(self.policy.decide())
            if progress is not None:
                progress(t_ns / self.end_ns)
        if self.arena.m[L.AUDIT] and self.live_packets() != self.in_flight():
            raise AssertionError(f"audit: {self.live_packets()} live packets, tenants count {self.in_flight()}")
        result = summarise(self, time.perf_counter() - wall0)
        result.meta["engine"] = "compiled" if self.compiled else "des"
        return result

    def _advance(self, t_ns: int) -> int:
        """Run one window (by time or by event count); returns the time it ends at."""
        events = self.spec.window.events
        budget = events if events is not None else -1
        nxt = self.end_ns if events is not None else min(t_ns + self.window_ns, self.end_ns)
        while True:
            measuring = self._m0 is not None
            stop = self.warmup_ns if (not measuring and self.now <= self.warmup_ns < nxt) else nxt
            budget = self._run_events(stop, budget)
            if budget == 0 and self.now < stop:
                return self.now
            if stop == nxt:
                return nxt
            self._start_measuring()

    def _start_measuring(self) -> None:
        self.arena.m[L.MEASURING] = 1
        self._sync(False)
        self._m0 = {
            "t_ns": self.now,
            "sites": {site: _sample(s, self.now) for site, s in self.sites.items()},
            "cpus": {c.name: list(c.busy_ns) for c in self.cpus},
            "runs": {c.name: c.runs for c in self.cpus},
        }

    def in_flight(self) -> int:
        """Packets created and neither delivered nor dropped."""
        return sum(t.sent - t.delivered - t.dropped for t in self.tenants)
