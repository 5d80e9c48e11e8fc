"""The compiled engine: the event-driven model of ``engine.py`` & co. as a numba loop over arrays.

The model is ported statement by statement (``compiled_core``: heap, pools, draws, histograms,
CPUs; ``compiled_hop``: the coalescing hop; ``compiled_tenant``: workloads; ``compiled_engine``:
forwarding, dispatch and the loop) and consumes the same random draws in the same order, so it
schedules the same events in the same order as the Python engine: results are identical
(deliveries, counters, histograms, events), which ``tests/test_sim_compiled.py`` checks.

Only the event loop is compiled. ``CompiledSimulation`` is a ``Simulation`` whose kernel runs the
compiled loop: the window and policy loop, the statistics and the summary are the Python
engine's own code, fed from the arrays at every window (``_sync``), and a policy's decisions are
written back into the site parameter array before the loop resumes.

Speed: ``benchmarks/sim_speed.py`` measures it against the Python engine and SimPy; the README's
speed section has the figures. The first call compiles (about 15 s) or loads numba's cache.
"""

from __future__ import annotations

from array import array

import numpy as np

from vcoal.model.histogram import LatencyHistogram
from vcoal.model.result import TrialResult
from vcoal.sim import compiled_core as C
from vcoal.sim import compiled_tenant as T
from vcoal.sim.compiled_engine import run as _run
from vcoal.sim.compiled_engine import start as _start_all
from vcoal.sim.compiled_state import Feeder, build, write_params
from vcoal.sim.simulation import Simulation


def supports(spec, policy, audit: bool = False) -> bool:
    """True when the compiled engine reproduces the Python engine for this run (all but audits)."""
    return not audit


class CompiledKernel:
    """Stands in for ``Kernel``: ``run``, ``now`` and ``events``, over the compiled loop."""

    def __init__(self, sim: CompiledSimulation) -> None:
        self.sim = sim
        self.feeder = Feeder(sim)
        self.arena = build(sim, self.feeder)
        self.now = 0
        self.events = 0
        self.trace = None

    def run(self, until_ns: int, budget: int = -1) -> int:
        """Kernel.run: events with time <= ``until_ns``, at most ``budget`` of them (-1: all)."""
        sim = self.sim
        write_params(self.arena, sim.site_list)
        while True:
            a = self.arena
            budget = _run(a.m, a.x, until_ns, budget)
            if a.m[C.FLAG]:
                self.arena = self.feeder.service(a, sim.drain)
            if not a.m[C.STATUS]:
                break
        sim.drain(self.arena)
        m = self.arena.m
        self.now = int(m[C.NOW])
        self.events = int(m[C.EVENTS])
        return int(budget)


def _noop() -> None:
    return None


def _hist(counts: np.ndarray, stat: np.ndarray) -> LatencyHistogram:
    n, total, lo, hi = (int(v) for v in stat)
    if not n:
        return LatencyHistogram()
    h = LatencyHistogram()
    h.counts = array("q", counts.tobytes())
    h.count, h.sum_ns, h.min_ns, h.max_ns = n, total, lo, hi
    return h


class CompiledSimulation(Simulation):
    """A Simulation whose events run in the compiled loop."""

    def __init__(self, spec, policy, seed: int) -> None:
        super().__init__(spec, policy, seed, audit=False)
        self.site_list = list(self.path.sites.values())
        for t in self.tenants:
            t.start = _noop  # the compiled loop starts the workloads (same order, same time)
        self.k = CompiledKernel(self)

    def run(self, progress=None) -> TrialResult:
        a = self.k.arena
        a.m[C.REC_DELIV] = int(self.deliveries is not None)
        _start_all(a.m, a.x)
        result = super().run(progress)
        result.meta["engine"] = "compiled"
        return result

    def drain(self, a) -> None:
        """Move recorded deliveries from the arena to ``self.deliveries``."""
        n = int(a.m[C.NDELIV])
        if n and self.deliveries is not None:
            self.deliveries.extend(map(tuple, a.view("deliv")[:n].tolist()))
        a.m[C.NDELIV] = 0

    def _sync(self, full: bool) -> None:
        """Copy counters (and, if ``full``, the run's histograms) into the Python objects."""
        a = self.k.arena
        ctr = a.view("ctr").tolist()
        cpu_ns = a.view("sitecpu")[:, 0].tolist()
        for k, state in enumerate(self.site_list):
            for d, dc in ((0, state.rx), (1, state.tx)):
                dc.packets, dc.bytes, dc.interrupts, dc.polls, dc.drops, dc.suppressed = ctr[2 * k + d]
            state.cpu_ns = cpu_ns[k]
        busy = a.view("cpu")[:, C.C_BUSY : C.C_BUSY + 3].tolist()
        runs = a.view("cpu")[:, C.C_RUNS].tolist()
        for k, c in enumerate(self.all_cpus()):
            c.busy_ns = busy[k]
            c.runs = runs[k]
        n = len(self.tenants)
        rows = a.view("ten").tolist()
        hcount, hstat = a.view("hcount"), a.view("hstat")
        for i, t in enumerate(self.tenants):
            r = rows[i]
            t.sent, t.delivered, t.dropped = r[T.T_SENT], r[T.T_DELIVERED], r[T.T_DROPPED]
            t.m_delivered, t.m_bytes, t.m_dropped, t.m_sent = (
                r[T.T_M_DELIVERED], r[T.T_M_BYTES], r[T.T_M_DROPPED], r[T.T_M_SENT])
            t.w_packets, t.w_bytes = r[T.T_W_PACKETS], r[T.T_W_BYTES]
            t.win = _hist(hcount[C.HI_WIN * n + i], hstat[C.HI_WIN * n + i])
            self.win_rtt[i] = _hist(hcount[C.HI_WINRTT * n + i], hstat[C.HI_WINRTT * n + i])
            if full:
                t.hist = _hist(hcount[C.HI_HIST * n + i], hstat[C.HI_HIST * n + i])
                t.rtt = _hist(hcount[C.HI_RTT * n + i], hstat[C.HI_RTT * n + i])

    def _start_measuring(self) -> None:
        self.k.arena.m[C.MEASURING] = 1
        self._sync(False)
        super()._start_measuring()

    def _window(self, t_ns: int):
        self._sync(t_ns >= self.end_ns)
        stats = super()._window(t_ns)
        a = self.k.arena
        n = len(self.tenants)
        ten = a.view("ten")
        ten[:, T.T_W_PACKETS] = 0
        ten[:, T.T_W_BYTES] = 0
        hcount, hstat = a.view("hcount"), a.view("hstat")
        for h in (C.HI_WIN, C.HI_WINRTT):
            hcount[h * n : (h + 1) * n] = 0
            hstat[h * n : (h + 1) * n] = 0
        return stats


def run_compiled(spec, policy=None, *, progress=None, deliveries: list | None = None) -> TrialResult:
    """Simulate ``spec`` (overrides already applied) on the compiled engine."""
    sim = CompiledSimulation(spec, policy, spec.seed)
    sim.deliveries = deliveries
    return sim.run(progress)
