"""``vcoal calibrate rank``: Spearman and the ±30 % share of simulated vs measured NET_RX per packet.

Expected values are worked by hand in the comments; the compare documents are synthetic (the
shape ``vcoal testbed compare --json`` writes, see tests/test_testbed_compare.py).
"""

from __future__ import annotations

import math

import pytest

from vcoal.experiments import calibrate_rank as cr


def _row(label, policy, median, params=None, grid=True, scenario="s"):
    return {"scenario": scenario, "label": label, "policy": policy, "params": params or {}, "grid": grid,
            "net_rx_per_packet": {"median": median, "min": median * 0.9, "max": median * 1.1}}


def _doc(*rows):
    return {"rows": list(rows), "oracle": {}}


def test_spearman_without_ties_is_one_minus_six_sum_d2_over_n_n2_minus_1():
    # ranks x 1 2 3 4, y 1 3 2 4: d = 0 1 -1 0, sum d^2 = 2 -> 1 - 6*2/(4*15) = 0.8
    assert cr.spearman([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert cr.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_with_ties_uses_average_ranks():
    # y = 5 6 7 8 7 -> ranks 1 2 3.5 5 3.5; Pearson with 1..5: 8 / sqrt(10 * 9.5) = 0.82078
    assert cr.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert list(cr.average_ranks([5, 6, 7, 8, 7])) == [1, 2, 3.5, 5, 3.5]


def test_spearman_of_a_constant_is_nan_and_short_input_is_refused():
    assert math.isnan(cr.spearman([1, 2, 3], [4, 4, 4]))
    with pytest.raises(ValueError):
        cr.spearman([1], [2])


def test_load_points_keeps_off_and_grid_rows_of_one_scenario():
    doc = _doc(_row("off", "off", 1.2, grid=False), _row("qos", "qos", 1.4, grid=False),
               _row("static", "static", 1.3, grid=False), _row("grid: a", "static", 0.5, {"sites": {"nic:q0": {}}}),
               _row("grid: b", "static", 0.8))
    pts = cr.load_points(doc, "run.json")
    assert [p.label for p in pts] == ["off", "grid: a", "grid: b"]
    assert pts[1].params == {"sites": {"nic:q0": {}}} and pts[1].measured == 0.5


@pytest.mark.parametrize(("doc", "needle"), [
    ([], "no non-empty 'rows' list"),
    ({"rows": []}, "no non-empty 'rows' list"),
    (_doc(_row("off", "off", 1.0, grid=False), _row("g", "static", 0.5)), "ranking needs at least 3"),
    (_doc(_row("off", "off", 1.0, grid=False), _row("g", "static", 0.5, scenario="t")), "pick one with --scenario"),
    (_doc(_row("off", "off", -1.0, grid=False)), "rows[0].net_rx_per_packet.median: -1.0 is not a positive"),
    ({"rows": [{"scenario": "s", "policy": "off", "net_rx_per_packet": 3}]}, "rows[0].net_rx_per_packet: expected"),
])
def test_load_points_refuses_other_shapes_with_one_line(doc, needle):
    with pytest.raises(ValueError) as e:
        cr.load_points(doc, "run.json")
    assert needle in str(e.value) and str(e.value).startswith("run.json: ") and "\n" not in str(e.value)


def test_fit_scale_is_the_geometric_mean_of_measured_over_simulated():
    p = [cr.Point(str(i), "static", {}, m, m, m) for i, m in enumerate((1.0, 4.0))]
    ranked = [cr.Ranked(p[0], 2.0), cr.Ranked(p[1], 2.0)]  # ratios 0.5 and 2 -> geometric mean 1
    assert cr.fit_scale(ranked) == pytest.approx(1.0)
    assert cr.fit_scale([cr.Ranked(p[1], 1.0)]) == pytest.approx(4.0)


def test_fidelity_counts_points_within_thirty_percent_after_scaling():
    pts = [cr.Point(str(i), "static", {}, m, m, m) for i, m in enumerate((1.0, 1.0, 1.0, 2.0))]
    # simulated 1.29 (+29 %), 1.31 (+31 %), 0.71 (-29 %), 1.0 (-50 %)
    ranked = [cr.Ranked(pts[0], 1.29), cr.Ranked(pts[1], 1.31), cr.Ranked(pts[2], 0.71), cr.Ranked(pts[3], 1.0)]
    f = cr.fidelity(ranked)
    assert f.within == 2 and f.within_share == 0.5
    assert cr.fidelity(ranked, scale=2.0).within == 1  # only the last: 2.0 vs 2.0
    table = cr.fidelity_table(f)
    assert "within ±30%: 2/4 (50%)" in table and table.count("<- outside") == 2


def test_rank_command_simulates_the_veth_testbed_spec_in_the_kernels_order(tmp_path):
    """End to end on examples/testbed/mixed-2core.toml (veth profile): the kernel's order of these
    three settings (measured on the 2-vCPU testbed: off 1.25, peth0 50 µs 0.60, peth0 200 µs 0.25
    NET_RX per packet) is the simulator's."""
    import json as _json
    from pathlib import Path

    from typer.testing import CliRunner

    from vcoal.cli.main import _register, app

    _register()
    spec = Path(__file__).resolve().parents[1] / "examples" / "testbed" / "mixed-2core.toml"
    shared = lambda t: {"sites": {"nic:q0": {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": t * 1000}}}  # noqa: E731
    run = tmp_path / "run.json"
    run.write_text(_json.dumps(_doc(
        _row("off", "off", 1.25, grid=False, scenario="testbed-mixed-2core"),
        _row("grid: shared hop 50 us", "static", 0.60, shared(50), scenario="testbed-mixed-2core"),
        _row("grid: shared hop 200 us", "static", 0.25, shared(200), scenario="testbed-mixed-2core"))))
    out = tmp_path / "rank.json"
    res = CliRunner().invoke(app, ["calibrate", "rank", str(run), "--spec", str(spec), "--duration", "0.1",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = _json.loads(out.read_text())
    assert doc["spearman"] == pytest.approx(1.0)
    sim = {r["label"]: r["simulated_softirq_runs_per_packet"] for r in doc["rows"]}
    assert sim["grid: shared hop 200 us"] < sim["grid: shared hop 50 us"] < sim["off"]
    bad = CliRunner().invoke(app, ["calibrate", "rank", str(run), "--spec", str(spec), "--duration", "0"])
    assert bad.exit_code != 0 and "--duration 0.0: must be in [0.01, 60]" in bad.output
