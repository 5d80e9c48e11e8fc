"""One simulated trial: build, run window by window with the policy in the loop, summarise.

The events run in the engine (``vcoal.sim.engine``), compiled or interpreted, over the arena;
between windows this module reads the arena's counters and histograms, builds the window
statistics the policy observes, and writes the policy's decisions back into the arena's site
parameters before the loop resumes.
"""

from __future__ import annotations

import random
import time
from array import array
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from vcoal import __version__
from vcoal.model.histogram import LatencyHistogram
from vcoal.model.policy import Decision, Policy
from vcoal.model.result import CpuResult, SiteResult, TrialResult
from vcoal.model.stats import (
    TenantStats,
    WindowStats,
    new_counter_sample,
    new_dir_stats,
    sites_from_samples,
    window_series_row,
)
from vcoal.sim.arena import Feeder, build, write_params
from vcoal.sim.engine import layout as L
from vcoal.sim.engine import load
from vcoal.sim.summary import dir_result, tenant_result, trial_result
from vcoal.sim.topology import Topology
from vcoal.spec.context import context_from_spec
from vcoal.spec.scenario import ScenarioSpec, WorkloadSpec

TRACE_ROWS = 4096
LIFE_ERRORS = {L.ERR_ENDED_TWICE: "delivered or dropped twice", L.ERR_FREED_LIVE: "freed before it ended"}


class TenantCounts(NamedTuple):
    """A guest's packets over the whole run: created, delivered and dropped."""

    w: WorkloadSpec
    sent: int
    delivered: int
    dropped: int


class Simulation:
    """A built scenario, ready to run.

    ``compiled``: run the engine compiled (else interpreted: the reference). ``audit``: check every
    packet's life; a packet delivered or dropped twice, or freed while live, raises
    ``AssertionError``, and so does a count of live packets that disagrees with the tenants'.
    ``trace``: called with every event, in order, as rows of a (n, 5) int64 array: time, key
    ((prio << 56) | seq), event kind, job (kind * 4 + class of a CPU completion, else 0), events
    pending.
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
        self.params = spec.site_params()  # the parameters in force, per site
        self._slos = [g.slo.to_slo() for g in spec.guests]
        topo = Topology(spec)
        self.cpus = topo.cpus
        self.engine = load(compiled)
        self.feeder = Feeder(spec, seed)
        self.arena = build(spec, topo, self.feeder, self.end_ns, audit, TRACE_ROWS if trace is not None else 0)
        self.now = 0
        self.events = 0
        self.policy = policy
        self.windows: list[dict] = []
        self.decisions: list[dict] = []
        self._prev = self._sample(0)  # the counters at the end of the last window
        self._prev_busy = self._cpus()[0]
        self._m0: dict | None = None  # the counters at the start of the measured period
        if policy is not None:
            policy.reset(context_from_spec(spec), random.Random(seed ^ 0x5EED))
            self._apply(policy.decide())

    # --- the engine --------------------------------------------------------------------------------

    def _run_events(self, until_ns: int, budget: int = -1) -> int:
        """Events with time <= ``until_ns``, at most ``budget`` of them (-1: all); the budget left."""
        write_params(self.arena, self.params.values())
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

    # --- reading the arena -------------------------------------------------------------------------

    def _sample(self, t_ns: int) -> dict:
        """Every site's raw counters, as a host would show them at ``t_ns``."""
        ctr = self.arena.view("ctr")[:, : L.X_DROPS + 1].tolist()
        cpu_ns = self.arena.view("sitecpu")[:, 0].tolist()
        return {site: new_counter_sample(t_ns, new_dir_stats(*ctr[2 * k]), new_dir_stats(*ctr[2 * k + 1]),
                                         cpu_ns[k]) for k, site in enumerate(self.params)}

    def _cpus(self) -> tuple[list, list]:
        """Every CPU's busy time per class (interrupt, softirq, application) and its softirq runs."""
        cpu = self.arena.view("cpu")
        return cpu[:, L.C_BUSY : L.C_BUSY + 3].tolist(), cpu[:, L.C_RUNS].tolist()

    def _hist(self, which: int, i: int) -> LatencyHistogram:
        """Histogram ``which`` (``L.HI_*``) of tenant ``i``."""
        r = which * len(self.spec.guests) + i
        n, total, lo, hi = self.arena.view("hstat")[r].tolist()
        h = LatencyHistogram()
        if n:
            h.counts = array("q", self.arena.view("hcount")[r].tobytes())
            h.count, h.sum_ns, h.min_ns, h.max_ns = n, total, lo, hi
        return h

    @property
    def tenants(self) -> list[TenantCounts]:
        """Every guest's packets so far."""
        rows = self.arena.view("ten")[:, [L.T_SENT, L.T_DELIVERED, L.T_DROPPED]].tolist()
        return [TenantCounts(g.workload, *r) for g, r in zip(self.spec.guests, rows, strict=True)]

    def in_flight(self) -> int:
        """Packets created and neither delivered nor dropped."""
        return sum(t.sent - t.delivered - t.dropped for t in self.tenants)

    def live_packets(self) -> int:
        """Packets the arena holds as live (created, neither delivered nor dropped)."""
        return int(np.count_nonzero(self.arena.view("pkt")[:, L.P_LIFE] == L.LIFE_LIVE))

    # --- policy loop -----------------------------------------------------------------------------

    def _apply(self, decision: Decision | None) -> None:
        if decision is None:
            return
        for site, params in decision.params.items():
            if site not in self.params:
                raise ValueError(f"policy {self.policy.name!r} set unknown site {site}")
            self.params[site] = params
        self.decisions.extend(r.to_dict() for r in decision.records)

    def _window(self, t_ns: int) -> WindowStats:
        cur = self._sample(t_ns)
        if self.samples is not None:
            if not self.samples:
                self.samples.append((0, self._prev))
            self.samples.append((t_ns, cur))
        sites = sites_from_samples(self.params, self._prev, cur, self.params.__getitem__)
        self._prev = cur
        n = len(self.spec.guests)
        counts = self.arena.view("ten")[:, L.T_W_PACKETS : L.T_W_BYTES + 1].tolist()  # adjacent columns
        rtt_counts = self.arena.view("hstat")[L.HI_WINRTT * n : (L.HI_WINRTT + 1) * n, 0].tolist()
        tenants = {}
        for i, g in enumerate(self.spec.guests):
            src = self._hist(L.HI_WINRTT if rtt_counts[i] else L.HI_WIN, i)  # round trips where there are
            q = (src.quantile_ns(0.5) / 1e3, src.quantile_ns(0.99) / 1e3) if src.count else (None, None)
            tenants[g.name] = TenantStats(g.name, self._slos[i], *counts[i], *q)
        interval = t_ns - (self.windows[-1]["t_ns"] if self.windows else 0)
        stats = WindowStats(len(self.windows), t_ns, interval, sites, tenants)
        row = window_series_row(stats)
        busy = self._cpus()[0]
        row["cpus"] = {}
        for name, now, prev in zip(self.cpus, busy, self._prev_busy, strict=True):
            used = [(a - b) / interval if interval else 0.0 for a, b in zip(now, prev, strict=True)]
            row["cpus"][name] = {"irq": used[0], "softirq": used[1], "app": used[2],
                                 "idle": max(0.0, 1 - sum(used))}
        self._prev_busy = busy
        self.windows.append(row)
        # the next window's counters and histograms start from zero (HI_WIN and HI_WINRTT are adjacent)
        ten = self.arena.view("ten")
        ten[:, L.T_W_PACKETS] = 0
        ten[:, L.T_W_BYTES] = 0
        self.arena.view("hcount")[L.HI_WIN * n : (L.HI_WINRTT + 1) * n] = 0
        self.arena.view("hstat")[L.HI_WIN * n : (L.HI_WINRTT + 1) * n] = 0
        return stats

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
        return self._result(time.perf_counter() - wall0)

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
        busy, runs = self._cpus()
        self._m0 = {"t_ns": self.now, "sites": self._sample(self.now), "busy": busy, "runs": runs}

    def _result(self, wall_s: float) -> TrialResult:
        """Summary metrics of the measured period (warm-up to end), per-window series and decisions."""
        new = self._sample(self.end_ns)
        busy, runs = self._cpus()
        m0 = self._m0 or {"t_ns": self.end_ns, "sites": new, "busy": busy, "runs": runs}
        seconds = max(0.0, (self.end_ns - m0["t_ns"]) / 1e9)
        rows = self.arena.view("ten")[:, [L.T_M_SENT, L.T_M_DELIVERED, L.T_M_DROPPED, L.T_M_BYTES]].tolist()
        tenants = [tenant_result(g, self._hist(L.HI_HIST, i), self._hist(L.HI_RTT, i), seconds, *rows[i])
                   for i, g in enumerate(self.spec.guests)]
        sites = []
        for site, c in new.items():
            old = m0["sites"][site]
            sites.append(SiteResult(str(site), site.layer.value, dir_result(c.rx, old.rx, seconds),
                                    dir_result(c.tx, old.tx, seconds), c.cpu_ns - old.cpu_ns,
                                    self.params[site].to_dict()))
        cpus = []
        period_ns = self.end_ns - m0["t_ns"]
        for name, now, before in zip(self.cpus, busy, m0["busy"], strict=True):
            used = [min(1.0, (a - b) / period_ns) if period_ns else 0.0
                    for a, b in zip(now, before, strict=True)]
            cpus.append(CpuResult(name, used[0], used[1], used[2], max(0.0, 1.0 - sum(used))))
        runs = {name: r - r0 for name, r, r0 in zip(self.cpus, runs, m0["runs"], strict=True)}
        meta = {
            "engine": "compiled" if self.compiled else "des",
            "vcoal_version": __version__,
            "wall_s": wall_s,
            "events": self.events,
            "site_packets": sum(s.rx.packets + s.tx.packets for s in sites),
            "in_flight_end": self.in_flight(),
            "softirq_runs": sum(runs.values()),
            "softirq_runs_by_cpu": runs,
        }
        return trial_result(self.spec, self.seed, self.policy, seconds, tenants, sites, cpus, meta,
                            windows=self.windows, decisions=self.decisions)
