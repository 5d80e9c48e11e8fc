"""run_loop driven by a fake clock, a scripted counter source and a recording applier."""

from __future__ import annotations

import dataclasses
import json
import random
import threading

import pytest

from vcoal.agent.loop import Applied, run_loop
from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext, SiteInfo
from vcoal.model.stats import (
    CounterSample,
    DirStats,
    SiteStats,
    WindowStats,
    window_from_dict,
    window_to_dict,
)
from vcoal.model.units import Layer, Site
from vcoal.policies import POLICIES, make_policy
from vcoal.policies.base import PolicyBase

W_NS = 100_000_000
NIC, VIF = Site(Layer.NIC, "eth0"), Site(Layer.BACKEND, "vif1.0")


class FakeClock:
    """Jumps to each deadline, plus scripted lateness per wait."""

    def __init__(self, late_ns: dict[int, int] | None = None) -> None:
        self.t, self.waits, self.late = 0, 0, late_ns or {}

    def now_ns(self) -> int:
        return self.t

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        self.t = max(self.t, deadline_ns) + self.late.get(self.waits, 0)
        self.waits += 1
        return stop.is_set()


class ScriptedSource:
    """Cumulative samples built from per-window deltas; site sets may change per window."""

    def __init__(self, deltas: list[dict[Site, DirStats]], initial: dict[Site, CoalesceParams], clock) -> None:
        self.deltas, self.initial, self.clock, self.k = deltas, initial, clock, 0
        self.totals = {s: (DirStats(), DirStats()) for d in deltas for s in d}

    def context(self) -> PolicyContext:
        sites = self.deltas[min(self.k, len(self.deltas) - 1)]
        return PolicyContext({s: SiteInfo(s, self.initial[s]) for s in sites})

    def sample(self):
        if self.k:
            for s, d in self.deltas[self.k - 1].items():
                rx, tx = self.totals[s]
                self.totals[s] = (rx + d, tx)
        present = self.deltas[min(self.k, len(self.deltas) - 1)] if self.k else self.deltas[0]
        self.k += 1
        return {s: CounterSample(self.clock.t, *self.totals[s], cpu_ns=0) for s in present}


class RecordingApplier:
    def __init__(self, initial: dict[Site, CoalesceParams]) -> None:
        self.in_force = dict(initial)
        self.applied: list[tuple[int, Site, CoalesceParams]] = []
        self.begun: list[int] = []

    def params(self, site: Site) -> CoalesceParams:
        return self.in_force[site]

    def begin_window(self, window: int) -> None:
        self.begun.append(window)

    def apply(self, decision: Decision, window: int) -> list[Applied]:
        out = []
        for site, p in decision.params.items():
            self.in_force[site] = p
            self.applied.append((window, site, p))
            out.append(Applied(site, p, ("rx_usecs",)))
        return out


class Threshold(PolicyBase):
    """Test policy: rx_usecs 0 below 1000 packets per window, 50 above; explains with the rate."""

    name = "test-threshold"

    @dataclasses.dataclass(frozen=True)
    class Params:
        packets: int = 1000

    def decide(self):
        if self.window is None:
            return None
        params, recs = {}, []
        for site, s in self.window.sites.items():
            want = s.params.with_changes(rx_usecs=50 if s.rx.packets > self.params.packets else 0)
            noise = self.rng.random()  # randomness only from the injected generator
            if want != s.params:
                params[site] = want
                recs.append(DecisionRecord(self.window.index, site, want, True, "rate", {"rx_packets": s.rx.packets, "u": noise}))
        return Decision(params, tuple(recs)) if params else None


def _trace(n: int, seed: int = 1) -> list[dict[Site, DirStats]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        high = (k // 5) % 2 == 1
        out.append({
            s: DirStats(rng.randint(1500, 3000) if high else rng.randint(0, 500), rng.randint(0, 10**6), rng.randint(0, 900))
            for s in (NIC, VIF)
        })
    return out


INITIAL = {NIC: CoalesceParams(), VIF: CoalesceParams(napi_defer_hard_irqs=0)}


def test_loop_observes_decides_and_applies():
    clock = FakeClock()
    src = ScriptedSource(_trace(20), INITIAL, clock)
    app = RecordingApplier(INITIAL)
    seen: list[WindowStats] = []
    res = run_loop(clock, src, Threshold(), app, threading.Event(), W_NS, max_windows=20,
                   on_window=lambda r: r.initial or seen.append(r.stats))
    assert res.windows == 20 and res.overruns == 0
    assert [w.index for w in seen] == list(range(20))
    assert all(w.interval_ns == W_NS for w in seen)
    assert app.begun == list(range(20))
    assert {w for w, _, p in app.applied if p.rx_usecs == 50} == {5, 15}
    assert seen[6].sites[NIC].params.rx_usecs == 50  # the window after a change sees the new params


def test_overruns_are_counted_and_the_loop_realigns():
    clock = FakeClock(late_ns={3: 3 * W_NS + 1})
    src = ScriptedSource(_trace(10), INITIAL, clock)
    res = run_loop(clock, src, Threshold(), RecordingApplier(INITIAL), threading.Event(), W_NS, max_windows=6)
    assert res.overruns == 3 and res.windows == 6


def test_stop_event_ends_the_loop():
    stop = threading.Event()
    stop.set()
    clock = FakeClock()
    res = run_loop(clock, ScriptedSource(_trace(3), INITIAL, clock), Threshold(), RecordingApplier(INITIAL), stop, W_NS)
    assert res.windows == 0


def test_site_set_change_resets_the_policy_and_skips_the_new_site_once():
    deltas = _trace(6)
    for d in deltas[3:]:
        d.pop(VIF)  # the guest shut down at window 3
    clock = FakeClock()
    src = ScriptedSource(deltas, INITIAL, clock)
    seen = []
    res = run_loop(clock, src, Threshold(), RecordingApplier(INITIAL), threading.Event(), W_NS, max_windows=6,
                   on_window=lambda r: r.initial or seen.append(set(r.stats.sites)))
    assert res.resets == 1
    assert seen[1] == {NIC, VIF} and seen[-1] == {NIC}


def test_bad_window_length():
    with pytest.raises(ValueError):
        run_loop(FakeClock(), None, None, None, threading.Event(), 0)


def _direct(policy, trace: list[WindowStats], seed: int) -> list[Decision | None]:
    """The simulator's way: hand each window to the policy, apply decisions to the params in force."""
    policy.reset(PolicyContext({s: SiteInfo(s, INITIAL[s]) for s in INITIAL}), random.Random(seed))
    in_force = dict(INITIAL)
    first = policy.decide()  # every environment decides once right after reset
    if first:
        in_force.update(first.params)
    out = [first]
    for w in trace:
        w = WindowStats(w.index, w.t_ns, w.interval_ns,
                        {s: dataclasses.replace(st, params=in_force[s]) for s, st in w.sites.items()})
        policy.observe(w)
        d = policy.decide()
        if d:
            in_force.update(d.params)
        out.append(d)
    return out


def _record_trace(n: int) -> list[WindowStats]:
    """A recorded trace: windows as the result files store them (window_to_dict round trip)."""
    windows = []
    for k, d in enumerate(_trace(n)):
        sites = {s: SiteStats(s, W_NS, rx, DirStats(), 0, INITIAL[s]) for s, rx in d.items()}
        windows.append(WindowStats(k, (k + 1) * W_NS, W_NS, sites))
    return [window_from_dict(json.loads(json.dumps(window_to_dict(w)))) for w in windows]


@pytest.mark.parametrize("name", ["test-threshold", *sorted(POLICIES)])
def test_differential_agent_path_equals_direct_policy(name):
    trace = _record_trace(40)
    make = (lambda: Threshold()) if name == "test-threshold" else (lambda: make_policy(name, {}))
    direct = _direct(make(), trace, seed=7)
    clock = FakeClock()
    src = ScriptedSource([{s: st.rx for s, st in w.sites.items()} for w in trace], INITIAL, clock)
    seen: list[WindowStats] = []
    res = run_loop(clock, src, make(), RecordingApplier(INITIAL), threading.Event(), W_NS,
                   rng=random.Random(7), max_windows=len(trace), keep_decisions=True,
                   on_window=lambda r: r.initial or seen.append(r.stats))
    assert [w.sites[NIC].rx for w in seen] == [w.sites[NIC].rx for w in trace]
    assert res.initial_decisions + res.decisions == direct
    if name == "test-threshold":
        assert sum(d is not None for d in direct) >= 4


def test_initial_decision_is_applied_before_the_first_window():
    clock = FakeClock()
    src = ScriptedSource(_trace(3), INITIAL, clock)
    applier = RecordingApplier(INITIAL)
    reports = []
    pol = make_policy("static", {"nic": {"rx_usecs": 32}})
    res = run_loop(clock, src, pol, applier, threading.Event(), W_NS, max_windows=3, keep_decisions=True,
                   on_window=reports.append)
    assert applier.applied[0] == (0, NIC, INITIAL[NIC].with_changes(rx_usecs=32))
    assert reports[0].initial and not any(r.initial for r in reports[1:])
    assert res.windows == 3 and res.initial_decisions[0] is not None and res.decisions == [None, None, None]
