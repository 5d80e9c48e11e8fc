"""Open-loop bursts (deterministic and distributed on/off periods, a start phase, burst groups),
app_us and interarrival distributions: validation, exact timings, moments, both engine modes."""

from __future__ import annotations

import numpy as np
import pytest

import sim_golden
from vcoal.sim import arena as A
from vcoal.sim import run_scenario
from vcoal.sim.rng import DrawSource
from vcoal.spec import link_warning, parse_scenario

CONST = lambda v: {"dist": "constant", "value": v}  # noqa: E731


def _poisson(name: str, **w) -> dict:
    return {"name": name, "workload": {"kind": "poisson", "packet_bytes": 64, **w}}


def _t0_by_tenant(spec, engine: str = "des") -> tuple[object, dict[int, np.ndarray]]:
    """Run ``spec``; the NIC arrival times (ns) of each tenant's delivered packets, sorted."""
    deliveries: list = []
    r = run_scenario(spec, None, engine=engine, deliveries=deliveries)
    d = np.array(deliveries, dtype=np.int64).reshape(-1, 3)
    return r, {i: np.sort(d[d[:, 0] == i, 1]) for i in range(len(spec.guests))}


def _bursts(t0: np.ndarray, quiet_ns: int) -> np.ndarray:
    """(first, last) arrival of each run of arrivals separated by more than ``quiet_ns``."""
    cut = np.flatnonzero(np.diff(t0) > quiet_ns)
    return np.stack([t0[np.r_[0, cut + 1]], t0[np.r_[cut, t0.size - 1]]], axis=1)


# --- deterministic periods, start phase ------------------------------------------------------------
ON_NS, OFF_NS, START_NS = 100_000, 400_000, 50_000
PERIOD_NS = ON_NS + OFF_NS


@pytest.mark.parametrize("engine", ["des", "compiled"])
def test_deterministic_bursts_arrive_only_in_their_exact_windows(engine):
    """on 100 µs, off 400 µs, first on at 50 µs: every arrival of both group members lies in
    [50 + 500 k, 150 + 500 k] µs, every one of the 20 windows before 10 ms has arrivals, and the
    arrivals number rate x on-fraction x time (200 000 x 0.2 x 10 ms = 400 per tenant, 4 sd)."""
    burst = {"rate_pps": 200_000, "on_us": CONST(100), "off_us": CONST(400), "burst_start_us": 50,
             "burst_group": "incast"}  # fmt: skip
    spec = parse_scenario({"duration_s": 0.01, "nic": {"rx_ring": 100_000},
                           "guests": [_poisson("a", **burst), _poisson("b", **burst)]})
    _, t0 = _t0_by_tenant(spec, engine)
    for i in (0, 1):
        phase = (t0[i] - START_NS) % PERIOD_NS
        assert t0[i].min() >= START_NS and phase.max() <= ON_NS
        assert np.unique((t0[i] - START_NS) // PERIOD_NS).tolist() == list(range(20))
        assert abs(t0[i].size - 400) <= 4 * 20


def test_a_start_phase_leaves_the_tenant_off_until_then():
    """burst_start_us = 3000 with exponential periods: nothing arrives before 3 ms."""
    spec = parse_scenario({"duration_s": 0.01, "guests": [
        _poisson("a", rate_pps=100_000, on_us=200, off_us=200, burst_start_us=3000)]})
    _, t0 = _t0_by_tenant(spec)
    assert t0[0].min() >= 3_000_000 and t0[0].size > 100


# --- distributed periods, burst groups ------------------------------------------------------------
ON_U = {"dist": "uniform", "low": 200, "high": 300}  # mean 250 µs
OFF_U = {"dist": "uniform", "low": 300, "high": 500}  # mean 400 µs
QUIET_NS = 150_000  # a gap this long inside a burst at 100 000 pps has probability e^-15


def _grouped(duration_s: float, rate_b: float = 100_000) -> object:
    burst = {"on_us": ON_U, "off_us": OFF_U}
    return parse_scenario({"duration_s": duration_s, "nic": {"rx_ring": 100_000}, "guests": [
        _poisson("a", rate_pps=100_000, burst_group="g", **burst),
        _poisson("b", rate_pps=rate_b, burst_group="g", **burst),
        _poisson("c", rate_pps=100_000, **burst)]})


def test_group_members_are_on_together_and_the_on_fraction_has_its_mean():
    """a and b (group g) burst together: every arrival of a lies within one of b's bursts (to the
    quiet gap); c, with the same settings outside the group, does not. Arrivals number rate x
    E[on] / (E[on] + E[off]) x time = 100 000 x 250 / 650 x 0.1 s = 3846 (within 6 %)."""
    _, t0 = _t0_by_tenant(_grouped(0.1))
    bb = _bursts(t0[1], QUIET_NS)
    assert len(bb) > 100

    def inside(t):
        k = np.searchsorted(bb[:, 0] - QUIET_NS, t, side="right") - 1
        return (k >= 0) & (t <= bb[np.maximum(k, 0), 1] + QUIET_NS)

    assert inside(t0[0]).all()
    assert inside(t0[2]).mean() < 0.9
    for i in (0, 1, 2):
        assert t0[i].size == pytest.approx(100_000 * 250 / 650 * 0.1, rel=0.06)


def test_a_groups_periods_do_not_depend_on_its_members_own_draws():
    """Changing b's rate (so b draws many more arrivals) leaves a's arrivals exactly as they were:
    the group's periods come from the stream burst/g/..., a's arrivals from a's own stream."""
    _, slow = _t0_by_tenant(_grouped(0.01, rate_b=100_000))
    _, fast = _t0_by_tenant(_grouped(0.01, rate_b=300_000))
    assert slow[1].size < fast[1].size
    np.testing.assert_array_equal(slow[0], fast[0])


def test_members_rows_hold_the_groups_draws():
    """Every member's on_us row draws the same values (the group's stream); the values are the
    uniform's, in ns, with its exact mean (within 1 % over 20 000 draws)."""
    spec = _grouped(0.01)
    feeder = A.Feeder(spec, spec.seed)
    rows = {(spec.guests[i].name, f): src.take(20_000) for i, f, src in feeder.dv}
    assert sorted(rows) == [("a", "off_us"), ("a", "on_us"), ("b", "off_us"), ("b", "on_us"),
                            ("c", "off_us"), ("c", "on_us")]
    np.testing.assert_array_equal(rows["a", "on_us"], rows["b", "on_us"])
    assert not np.array_equal(rows["a", "on_us"], rows["c", "on_us"])
    assert rows["a", "on_us"].mean() == pytest.approx(250_000, rel=0.01)
    assert rows["a", "on_us"].min() >= 200_000 and rows["a", "on_us"].max() <= 300_000


def test_a_plain_number_in_a_group_is_an_exponential_from_the_group_stream():
    spec = parse_scenario({"guests": [_poisson("a", on_us=50, off_us=70, burst_group="g")]})
    fields = {f: src for _, f, src in A.Feeder(spec, 3).dv}
    x = fields["on_us"].take(100_000)
    assert x.mean() == pytest.approx(50_000, rel=0.02)
    assert np.quantile(x, 0.9) == pytest.approx(-50_000 * np.log(0.1), rel=0.03)
    np.testing.assert_array_equal(x[:8], np.maximum(np.rint(
        DrawSource(3, "burst/g/on_us").take(8) * 50_000), 1))


# --- app_us and interarrival ----------------------------------------------------------------------
def test_drawn_app_work_has_its_mean_on_the_guest_cpu():
    """A poisson rx tenant's guest vCPU runs app_us per packet: with uniform(10, 30) µs its app time
    is delivered packets x 20 µs (within 3 %); with 0 it has none."""
    def run(app):
        spec = parse_scenario({"duration_s": 0.1, "guests": [_poisson("a", rate_pps=20_000, app_us=app)]})
        r = run_scenario(spec, None, engine="des")
        app_ns = sum(c.app for c in r.cpus if c.name.startswith("a")) * r.measured_s * 1e9
        return app_ns, r.tenants[0].delivered

    assert run(0.0)[0] == 0
    app_ns, delivered = run({"dist": "uniform", "low": 10, "high": 30})
    assert delivered > 1500
    assert app_ns == pytest.approx(delivered * 20_000, rel=0.03)


def test_a_tx_stream_draws_app_work_per_packet():
    """A tx poisson packet is created when the application's work for it is done: with app_us
    empirical {10, 30} µs instead of a fixed 20 µs (same arrivals, same send cost) each packet is
    created exactly 10 µs earlier or later (all but the few that queued behind another)."""
    t0 = []
    for app in (20.0, {"dist": "empirical", "values": [10, 30], "weights": [0.5, 0.5]}):
        spec = parse_scenario({"duration_s": 0.2, "guests": [
            _poisson("a", direction="tx", rate_pps=1000, app_us=app)]})
        t0.append(_t0_by_tenant(spec)[1][0])
    n = min(t0[0].size, t0[1].size)
    diff = np.abs(t0[1][:n] - t0[0][:n])
    assert n > 150 and (diff == 10_000).mean() > 0.9


def test_app_us_rows_hold_its_draws_in_ns():
    """The values the engine reads for app_us = exponential(mean 20 µs): ns, mean 20 000 and
    0.99-quantile 20 000 x ln(100) (within 2 % and 3 % over 200 000 draws)."""
    spec = parse_scenario({"guests": [_poisson("a", app_us={"dist": "exponential", "mean": 20.0})]})
    (i, field, src), = A.Feeder(spec, 5).dv
    x = src.take(200_000)
    assert (i, field) == (0, "app_us") and np.array_equal(x, np.rint(x))
    assert x.mean() == pytest.approx(20_000, rel=0.02)
    assert np.quantile(x, 0.99) == pytest.approx(20_000 * np.log(100), rel=0.03)


def test_constant_interarrival_spaces_arrivals_exactly():
    """interarrival constant: arrivals every 1e9 / 100 000 = 10 000 ns exactly."""
    spec = parse_scenario({"duration_s": 0.002, "guests": [
        _poisson("a", rate_pps=100_000, interarrival=CONST(1))]})
    _, t0 = _t0_by_tenant(spec)
    assert set(np.diff(t0[0]).tolist()) == {10_000} and t0[0][0] == 10_000


def test_lognormal_interarrival_has_its_mean_and_quantile():
    """Gaps of lognormal(mean 1, sigma 1) scaled to mean 1 / 50 000 s: mean 20 µs, 0.9-quantile
    20 µs x exp(-1/2 + 1.2816) (within 4 %, ~5 000 gaps)."""
    spec = parse_scenario({"duration_s": 0.1, "nic": {"rx_ring": 100_000}, "guests": [
        _poisson("a", rate_pps=50_000, interarrival={"dist": "lognormal", "mean": 3.0, "sigma": 1.0})]})
    _, t0 = _t0_by_tenant(spec)
    gaps = np.diff(t0[0])
    assert gaps.size > 4000
    assert gaps.mean() == pytest.approx(20_000, rel=0.04)
    assert np.quantile(gaps, 0.9) == pytest.approx(20_000 * np.exp(-0.5 + 1.2815516), rel=0.04)


# --- validation -----------------------------------------------------------------------------------
BAD = [
    ([_poisson("a", on_us=100, off_us=200, burst_group="x"), _poisson("b", on_us=100, off_us=300, burst_group="x")],
     r"^spec: guests\.1\.workload\.off_us: burst_group 'x' members must share on_us, off_us and burst_start_us"),
    ([_poisson("a", on_us=CONST(100), off_us=200, burst_group="x"), _poisson("b", on_us=100, off_us=200, burst_group="x")],
     r"^spec: guests\.1\.workload\.on_us: burst_group 'x'"),
    ([_poisson("a", burst_group="x")], r"^spec: guests\.0\.workload: burst_group: needs on/off bursts"),
    ([_poisson("a", burst_start_us=5)], r"^spec: guests\.0\.workload: burst_start_us: needs on/off bursts"),
    ([_poisson("a", on_us=CONST(0), off_us=3)], "on_us and off_us must both be > 0"),
    ([_poisson("a", on_us=100, off_us=100, burst_group="9x")], r"burst_group: String should match pattern"),
    ([_poisson("a", on_us={"dist": "uniform", "low": 1, "high": 2e9}, off_us=1)],
     r"guests\.0\.workload\.on_us: uniform: high 2000000000\.0 out of range \[0, 1e\+09\]"),
    ([{"name": "a", "workload": {"kind": "bulk", "on_us": CONST(5)}}],
     "on_us: a distribution applies to kind 'poisson' only, not 'bulk'"),
    ([_poisson("a", app_us=2e7)], r"guests\.0\.workload\.app_us: 20000000\.0 out of range \[0, 1000000\.0\]"),
    ([_poisson("a", interarrival=CONST(0))], r"guests\.0\.workload\.interarrival: constant: needs a mean > 0"),
    ([{"name": "a", "workload": {"kind": "request_response", "interarrival": CONST(1)}}],
     "interarrival: a distribution applies to kind 'poisson' only"),
]


@pytest.mark.parametrize(("guests", "message"), BAD)
def test_bad_burst_and_time_fields_are_refused_in_one_line(guests, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_scenario({"guests": guests})
    assert "\n" not in str(info.value)


def test_defaults_keep_their_plain_meaning():
    """A constant app_us is a plain number; on/off numbers, no group and no interarrival give no dv row."""
    spec = parse_scenario({"guests": [_poisson("a", app_us=CONST(3), on_us=10, off_us=20)]})
    w = spec.guests[0].workload
    assert w.app_us == 3.0 and w.dists() == {} and A.Feeder(spec, 1).dv == []
    assert parse_scenario(spec.model_dump(mode="json")) == spec


# --- both modes -----------------------------------------------------------------------------------
def test_both_engine_modes_agree_on_every_new_field():
    spec = parse_scenario({"duration_s": 0.005, "guests": [
        _poisson("a", rate_pps=150_000, on_us=CONST(80), off_us=OFF_U, burst_group="g", burst_start_us=30,
                 app_us={"dist": "exponential", "mean": 3}, interarrival={"dist": "pareto", "alpha": 1.5, "scale": 1}),
        _poisson("b", rate_pps=90_000, on_us=CONST(80), off_us=OFF_U, burst_group="g", burst_start_us=30),
        {"name": "rr", "workload": {"kind": "request_response", "app_us": {"dist": "lognormal", "mean": 5, "sigma": 1}}},
        {"name": "bulk", "workload": {"kind": "bulk", "direction": "tx", "app_us": ON_U}}]})
    out = []
    for engine in ("des", "compiled"):
        deliveries: list = []
        r = run_scenario(spec, None, engine=engine, deliveries=deliveries)
        out.append((sim_golden.strip(r), deliveries))
    assert out[0] == out[1]
    assert len(out[0][1]) > 500


# --- link-limited open loop -----------------------------------------------------------------------
LINK_GBPS, PKT_BYTES = 1.0, 1500
SER_NS = PKT_BYTES * 8 / LINK_GBPS  # 12 000 ns on the wire per packet


def _hot(layers: list[str], rate_pps: float = 200_000, duration_s: float = 0.02):
    return parse_scenario({"duration_s": duration_s, "host": {"link_gbps": LINK_GBPS, "layers": layers},
                           "nic": {"rx_ring": 100_000}, "guests": [
                               {"name": "hot", "workload": {"kind": "poisson", "rate_pps": rate_pps,
                                                            "packet_bytes": PKT_BYTES, "app_us": 0.0}}]})


def test_open_loop_arrivals_are_serialised_by_the_link():
    """200 000 pps of 1500 B (2.4 Gbit/s) on a 1 Gbit/s link: the host receives one packet per
    12 µs at most, so it delivers 1 Gbit/s (within 3 %), and the sender starts no packet after the
    end: sent <= 20 ms / 12 µs + 1."""
    spec = _hot(["nic", "backend", "frontend"])
    r = run_scenario(spec, None, engine="des")
    ten = r.tenants[0]
    assert ten.throughput_bps <= LINK_GBPS * 1e9 * 1.001
    assert ten.throughput_bps == pytest.approx(LINK_GBPS * 1e9, rel=0.03)
    assert ten.sent <= spec.duration_s * 1e9 / SER_NS + 1
    assert ten.drops == 0


def test_a_one_layer_host_keeps_arrivals_at_their_drawn_times():
    """The reference queue (B.1): the NIC receives the offered 2.4 Gbit/s (within 5 %)."""
    r = run_scenario(_hot(["nic"]), None, engine="des")
    assert r.tenants[0].throughput_bps == pytest.approx(200_000 * PKT_BYTES * 8, rel=0.05)


def test_the_link_warning_names_each_open_loop_tenant_and_the_figures():
    """Two rx tenants of 150 000 and 50 000 pps x 1500 B (1.80 + 0.60 Gbit/s) on a 1 Gbit/s link."""
    spec = _hot(["nic", "backend", "frontend"], rate_pps=150_000).model_dump(mode="json")
    spec["guests"].append({"name": "warm", "workload": {"kind": "poisson", "rate_pps": 50_000}})
    line = link_warning(parse_scenario(spec))
    assert "rx 2.40 Gbit/s (tenants hot 1.80, warm 0.60) exceeds host.link_gbps = 1 Gbit/s" in line
    assert "the link serialises open-loop arrivals" in line and "\n" not in line
    assert "not link-limited" in link_warning(_hot(["nic"]))
