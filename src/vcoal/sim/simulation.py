"""One simulated trial: build, run window by window with the policy in the loop, summarise."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from vcoal.model.histogram import LatencyHistogram
from vcoal.model.policy import Decision, Policy
from vcoal.model.result import TrialResult
from vcoal.model.stats import CounterSample, DirStats, SiteStats, TenantStats, WindowStats, window_series_row
from vcoal.sim.engine import Path
from vcoal.sim.kernel import Kernel
from vcoal.sim.summary import summarise
from vcoal.sim.workloads import KINDS
from vcoal.spec.context import context_from_spec
from vcoal.spec.scenario import ScenarioSpec


def _sample(site, t_ns: int) -> CounterSample:
    rx, tx = site.rx, site.tx
    return CounterSample(
        t_ns,
        DirStats(rx.packets, rx.bytes, rx.interrupts, rx.polls, rx.drops),
        DirStats(tx.packets, tx.bytes, tx.interrupts, tx.polls, tx.drops),
        site.cpu_ns,
    )


class Simulation:
    """A built scenario, ready to run."""

    def __init__(self, spec: ScenarioSpec, policy: Policy | None, seed: int, audit: bool = False) -> None:
        self.spec = spec
        self.seed = seed
        self.k = Kernel()
        self.end_ns = round(spec.duration_s * 1e9)
        self.warmup_ns = round(spec.warmup_s * 1e9)
        self.window_ns = max(1, round(spec.window.duration_us * 1000))
        self.live: set | None = set() if audit else None
        self.deliveries: list | None = None
        self.samples: list | None = None  # (t_ns, {site: CounterSample}) per window, for replay
        self.path = Path(spec, self.k, seed)
        self.tenants = [KINDS[g.workload.kind](self, i, g, seed) for i, g in enumerate(spec.guests)]
        self.path.tenants = self.tenants
        self.win_rtt = [LatencyHistogram() for _ in spec.guests]
        self.policy = policy
        self.context = context_from_spec(spec)
        self.windows: list[dict] = []
        self.decisions: list[dict] = []
        self._win_index = 0
        self._prev = {site: _sample(s, 0) for site, s in self.path.sites.items()}
        self._prev_busy = {c.name: [0, 0, 0] for c in self.all_cpus()}
        self._m0 = None
        if policy is not None:
            policy.reset(self.context, random.Random(seed ^ 0x5EED))
            self._apply(policy.decide())

    # --- policy loop -----------------------------------------------------------------------------

    def _apply(self, decision: Decision | None) -> None:
        if decision is None:
            return
        for site, params in decision.params.items():
            state = self.path.sites.get(site)
            if state is None:
                raise ValueError(f"policy {self.policy.name!r} set unknown site {site}")
            state.params = params
        self.decisions.extend(r.to_dict() for r in decision.records)

    def _window(self, t_ns: int) -> WindowStats:
        sites = {}
        if self.samples is not None and not self.samples:
            self.samples.append((0, dict(self._prev)))
        for site, state in self.path.sites.items():
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
            t.w_packets = t.w_bytes = 0
            t.win = LatencyHistogram()
            self.win_rtt[i] = LatencyHistogram()
        interval = t_ns - (self.windows[-1]["t_ns"] if self.windows else 0)
        stats = WindowStats(self._win_index, t_ns, interval, sites, tenants)
        self._win_index += 1
        row = window_series_row(stats)
        row["cpus"] = {}
        for c in self.all_cpus():
            prev = self._prev_busy[c.name]
            used = [(a - b) / interval if interval else 0.0 for a, b in zip(c.busy_ns, prev, strict=True)]
            row["cpus"][c.name] = {"irq": used[0], "softirq": used[1], "app": used[2], "idle": max(0.0, 1 - sum(used))}
            self._prev_busy[c.name] = list(c.busy_ns)
        self.windows.append(row)
        return stats

    # --- running ---------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> TrialResult:
        """Run to the end and return the summary."""
        wall0 = time.perf_counter()
        for t in self.tenants:
            t.start()
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
        wall_s = time.perf_counter() - wall0
        return summarise(self, wall_s)

    def _advance(self, t_ns: int) -> int:
        """Run one window (by time or by event count); returns the time it ends at."""
        events = self.spec.window.events
        budget = events if events is not None else -1
        nxt = self.end_ns if events is not None else min(t_ns + self.window_ns, self.end_ns)
        while True:
            measuring = self._m0 is not None
            stop = self.warmup_ns if (not measuring and self.k.now <= self.warmup_ns < nxt) else nxt
            budget = self.k.run(stop, budget)
            if budget == 0 and self.k.now < stop:
                return self.k.now
            if stop == nxt:
                return nxt
            self._start_measuring()

    def _start_measuring(self) -> None:
        for t in self.tenants:
            t.measuring = True
        self._m0 = {
            "t_ns": self.k.now,
            "sites": {site: _sample(s, self.k.now) for site, s in self.path.sites.items()},
            "cpus": {c.name: list(c.busy_ns) for c in self.all_cpus()},
            "runs": {c.name: c.runs for c in self.all_cpus()},
        }

    def all_cpus(self):
        return self.path.cpus + [c for vc in self.path.guest_vcpus for c in vc]

    def in_flight(self) -> int:
        """Packets created and neither delivered nor dropped."""
        return sum(t.sent - t.delivered - t.dropped for t in self.tenants)

