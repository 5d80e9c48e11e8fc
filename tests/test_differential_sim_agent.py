"""Differential: the agent's loop fed the simulator's raw counter trace decides exactly as the
policy did inside the simulator (the same policy type, the same windows, the same decisions)."""

from __future__ import annotations

import dataclasses
import random
import threading

import pytest

from vcoal.agent.loop import Applied, run_loop
from vcoal.policies import make_policy
from vcoal.sim import run_scenario
from vcoal.spec import context_from_spec, parse_scenario

SPEC = {
    "duration_s": 0.03, "seed": 5, "window": {"duration_us": 1000},
    "nic": {"queues": 2, "coalesce": {"rx_usecs": 8, "rx_frames": 32}},
    "guests": [
        {"name": "rr", "workload": {"kind": "request_response", "outstanding": 2, "think_us": 20}},
        {"name": "bulk", "workload": {"kind": "bulk", "pace_gbps": 2.0}},
        {"name": "flow", "workload": {"kind": "poisson", "rate_pps": 50_000, "steps": [[0.015, 200_000]]}},
    ],
}


class ReplayClock:
    def __init__(self, times):
        self.times, self.k = times, 0

    def now_ns(self):
        return self.times[min(self.k, len(self.times) - 1)]

    def wait_until(self, deadline_ns, stop):
        self.k += 1
        return stop.is_set()


class ReplaySource:
    def __init__(self, context, samples):
        self.ctx, self.samples, self.k = context, samples, 0

    def context(self):
        return self.ctx

    def sample(self):
        out = self.samples[self.k][1]
        self.k += 1
        return out


class Applier:
    def __init__(self, context):
        self.in_force = {s: i.initial for s, i in context.sites.items()}

    def params(self, site):
        return self.in_force[site]

    def begin_window(self, window):
        pass

    def apply(self, decision, window):
        self.in_force.update(decision.params)
        return [Applied(s, p, ()) for s, p in decision.params.items()]


class SitesOnly:
    """A policy that sees only the site counters, as the agent does (no tenant p99 on a host)."""

    def __init__(self, inner):
        self.inner, self.name, self.params = inner, inner.name, inner.params

    def reset(self, context, rng):
        self.inner.reset(context, rng)

    def observe(self, stats):
        self.inner.observe(dataclasses.replace(stats, tenants={}))

    def decide(self):
        return self.inner.decide()


@pytest.mark.parametrize("name", ["net_dim", "intel_itr", "dxzl", "napi_defer", "static", "off", "qos"])
def test_agent_replaying_sim_counters_decides_like_the_policy_in_the_sim(name):
    spec = parse_scenario(SPEC)
    params = {"nic": {"rx_usecs": 16}} if name == "static" else {}
    samples: list = []
    sim_result = run_scenario(spec, SitesOnly(make_policy(name, params)), samples=samples)
    assert len(samples) == len(sim_result.windows) + 1
    ctx = context_from_spec(spec)
    res = run_loop(ReplayClock([t for t, _ in samples]), ReplaySource(ctx, samples), make_policy(name, params),
                   Applier(ctx), threading.Event(), spec.window.duration_us * 1000,
                   rng=random.Random(spec.seed ^ 0x5EED), max_windows=len(samples) - 2, keep_decisions=True)
    agent_records = [r.to_dict() for d in res.initial_decisions + res.decisions if d for r in d.records]
    assert agent_records == sim_result.decisions
    if name in ("net_dim", "intel_itr", "dxzl", "qos"):
        assert sum(r["changed"] for r in agent_records) >= 2  # the trace really moves these policies
