"""The policy hook: every window the policy sees per-site counters and its decision is applied."""

from __future__ import annotations

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord
from vcoal.model.units import Layer, Site
from vcoal.sim import run_scenario
from vcoal.spec import parse_scenario

SPEC = {
    "duration_s": 0.02, "window": {"duration_us": 2000},
    "nic": {"queues": 2},
    "guests": [{"name": "a", "workload": {"kind": "poisson", "rate_pps": 200_000}},
               {"name": "b", "workload": {"kind": "request_response", "think_us": 10}, "slo": {"p99_us": 500}}],
}


class Recorder:
    """Sets NIC queue 0 to 64 µs / 64 frames after window 3; records what it saw."""

    name = "recorder"

    def reset(self, context, rng):
        self.context, self.seen = context, []

    def observe(self, stats):
        self.seen.append(stats)

    def decide(self):
        if len(self.seen) != 3:
            return None
        site = Site(Layer.NIC, "q0")
        p = CoalesceParams(rx_usecs=64, rx_frames=64)
        return Decision({site: p}, (DecisionRecord(3, site, p, True, "test"),))


def test_policy_sees_every_window_and_its_decision_takes_effect():
    pol = Recorder()
    r = run_scenario(parse_scenario(SPEC), pol)
    assert len(pol.seen) == len(r.windows) - 1  # no decision after the last window
    assert [w.index for w in pol.seen] == list(range(len(pol.seen)))
    assert all(w.interval_ns == 2_000_000 for w in pol.seen)
    assert set(pol.context.sites) == {Site(Layer.NIC, "q0"), Site(Layer.NIC, "q1"), Site(Layer.BACKEND, "a"),
                                      Site(Layer.FRONTEND, "a"), Site(Layer.BACKEND, "b"), Site(Layer.FRONTEND, "b")}
    assert pol.context.tenants["b"].slo.p99_us == 500
    first = pol.seen[0].sites[Site(Layer.NIC, "q0")]
    assert first.rx.packets > 0 and first.rx.interrupts > 0 and first.cpu_ns > 0
    assert pol.seen[0].tenants["b"].p99_us is not None
    before = [w["sites"]["nic:q0"] for w in r.windows[:3]]
    after = [w["sites"]["nic:q0"] for w in r.windows[4:]]
    assert all(x["params"]["rx_usecs"] == 0 for x in before) and all(x["params"]["rx_usecs"] == 64 for x in after)
    assert max(x["rx_irq_per_s"] for x in after) < 0.5 * min(x["rx_irq_per_s"] for x in before)
    assert r.decisions == [{"window": 3, "site": "nic:q0", "params": CoalesceParams(rx_usecs=64, rx_frames=64).to_dict(),
                            "changed": True, "reason": "test", "inputs": {}, "predicted": {}}]
    assert r.sites[0].params_final["rx_usecs"] == 64


def test_event_count_windows():
    spec = parse_scenario({**SPEC, "window": {"events": 5000}})
    pol = Recorder()
    r = run_scenario(spec, pol)
    assert len(r.windows) == -(-r.meta["events"] // 5000)
    intervals = [w.interval_ns for w in pol.seen]
    assert len(set(intervals)) > 1  # windows end by event count, not by time
