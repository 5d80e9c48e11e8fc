"""Workload distributions (vcoal.spec.dist): validation, the sampler's exact moments, the draws the
simulator actually uses, stream independence and the testbed's refusal."""

from __future__ import annotations

import numpy as np
import pytest

from vcoal.sim import arena as A
from vcoal.sim.engine import layout as L
from vcoal.sim.rng import sample, stream
from vcoal.sim.simulation import Simulation
from vcoal.spec import parse_scenario
from vcoal.spec.dist import DistSpec
from vcoal.testbed.load import check_tools

N = 200_000
# kind -> (distribution, quantile checked); tolerances: the mean within 2 % (4 % for pareto), the
# quantile within 2 % (a few standard errors at N = 200 000 draws)
CASES = {
    "constant": ({"dist": "constant", "value": 64}, 0.5),
    "exponential": ({"dist": "exponential", "mean": 50.0}, 0.99),
    "uniform": ({"dist": "uniform", "low": 64, "high": 1500}, 0.9),
    "lognormal": ({"dist": "lognormal", "mean": 800.0, "sigma": 0.8}, 0.95),
    "pareto": ({"dist": "pareto", "alpha": 2.5, "scale": 10.0}, 0.99),
    "pareto_capped": ({"dist": "pareto", "alpha": 1.2, "scale": 10.0, "cap": 2000.0}, 0.9),
    "empirical": ({"dist": "empirical", "values": [64, 4096], "weights": [0.9, 0.1]}, 0.95),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampler_matches_exact_mean_and_quantile(case):
    table, q = CASES[case]
    d = DistSpec.model_validate(table)
    x = sample(d, stream(7, f"test/{case}"), N)
    tol = 0.04 if d.dist == "pareto" else 0.02
    assert x.mean() == pytest.approx(d.mean_value(), rel=tol)
    assert np.quantile(x, q, method="inverted_cdf") == pytest.approx(d.quantile(q), rel=0.02)


def test_exact_moments_by_hand():
    assert DistSpec(dist="pareto", alpha=2.0, scale=10.0).mean_value() == 20.0
    capped = DistSpec(dist="pareto", alpha=2.0, scale=10.0, cap=20.0)  # 10 + 10 * (1 - 1/2)
    assert capped.mean_value() == 15.0
    assert DistSpec(dist="lognormal", mean=100.0, sigma=1.0).quantile(0.5) == pytest.approx(100 * np.exp(-0.5))
    emp = DistSpec(dist="empirical", values=[4096, 64], weights=[0.1, 0.9])
    assert (emp.quantile(0.9), emp.quantile(0.91), emp.mean_value()) == (64, 4096, pytest.approx(467.2))


def _spec(mc: dict, other: dict | None = None, duration_s: float = 0.05) -> object:
    guests = [{"name": "mc", "workload": {"kind": "request_response", "outstanding": 4, **mc}}]
    if other is not None:
        guests.append({"name": "p", "workload": {"kind": "poisson", "rate_pps": 50_000, **other}})
    return parse_scenario({"duration_s": duration_s, "guests": guests})


MIX = {"dist": "empirical", "values": [64, 4096], "weights": [0.9, 0.1]}


def test_the_simulator_delivers_the_drawn_sizes():
    """End to end: the responses leaving on the wire (the bytes request-response counts) and the
    poisson packets have the distributions' means (within 5 % over a few thousand packets)."""
    lognormal = {"dist": "lognormal", "mean": 800.0, "sigma": 0.5}
    spec = _spec({"response_bytes": MIX}, {"packet_bytes": lognormal}, duration_s=0.1)
    sim = Simulation(spec, None, spec.seed, compiled=False)
    r = sim.run()
    ten = sim.arena.view("ten")
    resp = ten[0, L.T_M_BYTES] / ten[0, L.T_M_DELIVERED]
    assert ten[0, L.T_M_DELIVERED] > 2000
    assert resp == pytest.approx(0.9 * 64 + 0.1 * 4096, rel=0.05)
    pois = r.tenants[1]
    assert pois.delivered > 3000
    assert pois.throughput_bps / (8 * pois.throughput_pps) == pytest.approx(800, rel=0.05)


def test_a_distribution_shifts_no_other_tenant_and_defaults_keep_their_draws():
    """The open-loop tenant's arrivals come from its own stream whatever the other tenant draws;
    a spec without distributions has no dv rows."""
    plain = _spec({}, {}, duration_s=0.01)
    think = {"think_us": {"dist": "pareto", "alpha": 1.5, "scale": 5.0, "cap": 500.0}}
    mixed = _spec({"request_bytes": MIX, "response_bytes": MIX, **think}, {}, duration_s=0.01)
    sent = []
    for spec in (plain, mixed):
        sim = Simulation(spec, None, spec.seed, compiled=False)
        sim.run()
        sent.append(int(sim.arena.view("ten")[1, L.T_SENT]))
    assert sent[0] == sent[1] > 0
    assert A.Feeder(plain, 1).dv == [] and [f for _, f, _ in A.Feeder(mixed, 1).dv] == [
        "request_bytes", "response_bytes", "think_us"]


def test_refills_keep_the_stream_in_order(monkeypatch):
    """A short dv buffer (refilled many times) gives the same run as a long one."""
    spec = _spec({"request_bytes": MIX, "think_us": {"dist": "exponential", "mean": 3.0}}, duration_s=0.01)
    res = []
    for length in (4096, 128):
        monkeypatch.setattr(A, "DV_LEN", length)
        r = Simulation(spec, None, spec.seed, compiled=False).run()
        res.append((r.tenants[0].delivered, r.tenants[0].rtt_us))
    assert res[0] == res[1]


BAD = [
    ({"request_bytes": {"dist": "empirical", "values": [64, 4096], "weights": [0.9, 0.2]}},
     "request_bytes: empirical: weights must sum to 1"),
    ({"request_bytes": {"dist": "empirical", "values": [64, 4096], "weights": [1.1, -0.1]}},
     "request_bytes: empirical: weights must be > 0"),
    ({"request_bytes": {"dist": "empirical", "values": [64], "weights": [0.5, 0.5]}},
     "request_bytes: empirical: 1 values but 2 weights"),
    ({"response_bytes": {"dist": "empirical", "values": [0, 4096], "weights": [0.5, 0.5]}},
     r"response_bytes: empirical: values 0.0 out of range \[1, 65535\]"),
    ({"response_bytes": {"dist": "uniform", "low": 64, "high": 70000}},
     r"response_bytes: uniform: high 70000.0 out of range \[1, 65535\]"),
    ({"request_bytes": {"dist": "pareto", "alpha": 1.0, "scale": 64}}, r"request_bytes: pareto: alpha 1.0 out of range \(1, 100\]"),
    ({"request_bytes": {"dist": "pareto", "alpha": 1.5, "scale": 64, "cap": 32}}, "request_bytes: pareto: cap 32.0 must be >= scale 64.0"),
    ({"think_us": {"dist": "lognormal", "mean": 10}}, "think_us: dist = 'lognormal' needs mean, sigma"),
    ({"think_us": {"dist": "exponential", "mean": 10, "sigma": 1}}, "think_us: sigma: not a parameter of dist = 'exponential'"),
    ({"think_us": {"dist": "gamma"}}, "think_us.dist: expected 'constant'"),
    ({"think_us": {"dist": "uniform", "low": 20, "high": 10}}, "think_us: uniform: needs low <= high"),
    ({"request_bytes": 70000}, r"request_bytes: 70000 out of range \[1, 65535\]"),
    ({"kind": "bulk", "packet_bytes": {"dist": "exponential", "mean": 900}},
     "workload: packet_bytes: a distribution applies to kind 'poisson' only, not 'bulk'"),
]


@pytest.mark.parametrize(("workload", "message"), BAD)
def test_bad_distributions_are_refused_in_one_line(workload, message):
    data = {"guests": [{"name": "mc", "workload": {"kind": "request_response", **workload}}]}
    with pytest.raises(ValueError, match=message) as info:
        parse_scenario(data)
    assert "\n" not in str(info.value) and str(info.value).startswith("spec: guests.0.workload")


def test_numbers_stay_valid_and_a_constant_size_is_a_number():
    spec = _spec({"request_bytes": 100, "response_bytes": {"dist": "constant", "value": 200}, "think_us": 5.0})
    w = spec.guests[0].workload
    assert (w.request_bytes, w.response_bytes, w.dists(), w.mean_of("think_us")) == (100, 200, {}, 5.0)
    assert spec.spec_hash() == parse_scenario(spec.model_dump(mode="json")).spec_hash()
    mixed = _spec({"request_bytes": MIX})
    assert parse_scenario(mixed.model_dump(mode="json")) == mixed  # round trip


def test_the_testbed_refuses_distributions():
    with pytest.raises(ValueError, match=r"^guests\.mc\.workload\.request_bytes: dist = 'empirical': the testbed") as info:
        check_tools(_spec({"request_bytes": MIX}))
    assert "\n" not in str(info.value)
