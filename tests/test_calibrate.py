"""Calibration of the simulator's cost model: cost files, the fit on a simulator-made grid, the CLI
on a small real measured grid (tests/golden/calibrate/grid_small.json), and a short root measurement."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcoal.cli.main import _register, app
from vcoal.experiments import calibrate as cal
from vcoal.experiments.calibrate_measure import measure
from vcoal.spec import load_scenario, parse_scenario
from vcoal.spec.scenario import read_cost_file

GOLDEN = Path(__file__).parent / "golden" / "calibrate" / "grid_small.json"
PP = {"name": "pp", "duration_s": 1.0, "nic": {"queues": 1},
      "guests": [{"name": "g1", "workload": {"kind": "request_response"}}]}

_register()
runner = CliRunner()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- cost files -----------------------------------------------------------------------------------


def test_cost_file_replaces_defaults_and_spec_cost_wins(tmp_path):
    _write(tmp_path / "c.toml", "[cost]\nnic_pkt_us = 7.5\nstack_pkt_us = 3.0\n[calibration]\nnote = 'x'\n")
    _write(tmp_path / "s.toml", 'cost_file = "c.toml"\nname = "s"\n[cost]\nstack_pkt_us = 2.0\n'
           '[[guests]]\nname = "g1"\nworkload = { kind = "request_response" }\n')
    spec = load_scenario(tmp_path / "s.toml")
    assert spec.cost.nic_pkt_us == 7.5  # from the file (replaces the default 1.0)
    assert spec.cost.stack_pkt_us == 2.0  # the spec's own [cost] overrides the file
    assert spec.cost.irq_us == 1.0  # untouched default
    assert "cost_file" not in spec.model_dump()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[cost]\nnic_pkt_us = -1\n", "cost.nic_pkt_us: -1 out of range [0, 1000]"),
        ("[cost]\nnic_pkt = 1\n", "cost.nic_pkt: unknown key"),
        ("[cost]\nirq_us = 1\n[other]\nx = 1\n", "other: unknown key"),
        ("[calibration]\nx = 1\n", "cost: missing [cost] table"),
        ("[cost\n", "not valid TOML"),
    ],
)
def test_cost_file_errors_are_one_line(tmp_path, text, needle):
    p = _write(tmp_path / "c.toml", text)
    with pytest.raises(ValueError) as exc:
        read_cost_file(p)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"{p}: ") and str(exc.value).count(str(p)) == 1
    _write(tmp_path / "s.toml", 'cost_file = "c.toml"\n[[guests]]\nname = "g1"\nworkload = { kind = "request_response" }\n')
    with pytest.raises(ValueError, match="cost_file"):
        load_scenario(tmp_path / "s.toml")


def test_missing_cost_file(tmp_path):
    _write(tmp_path / "s.toml", 'cost_file = "nope.toml"\n[[guests]]\nname = "g1"\nworkload = { kind = "request_response" }\n')
    with pytest.raises(ValueError, match=r"cost_file: .*nope.toml: cannot read"):
        load_scenario(tmp_path / "s.toml")


def test_sim_cost_option_overrides_the_scenario(tmp_path):
    _write(tmp_path / "s.toml", 'name = "s"\nduration_s = 0.01\n[cost]\nnic_pkt_us = 1.0\n'
           '[[guests]]\nname = "g1"\nworkload = { kind = "request_response" }\n')
    _write(tmp_path / "c.toml", "[cost]\nnic_pkt_us = 20.0\n")
    base = runner.invoke(app, ["sim", str(tmp_path / "s.toml"), "--json"])
    slow = runner.invoke(app, ["sim", str(tmp_path / "s.toml"), "--json", "--cost", str(tmp_path / "c.toml")])
    assert base.exit_code == 0 and slow.exit_code == 0, slow.output
    rtt = [json.loads(r.stdout)["tenants"][0]["rtt_us"]["p50"] for r in (base, slow)]
    assert rtt[1] > rtt[0] + 30  # 2 x 19 µs more per round trip
    _write(tmp_path / "bad.toml", "[cost]\nnic_pkt_us = 5000\n")
    bad = runner.invoke(app, ["sim", str(tmp_path / "s.toml"), "--cost", str(tmp_path / "bad.toml")])
    assert bad.exit_code == 2 and "cost.nic_pkt_us: 5000 out of range [0, 1000]" in bad.output


# --- the fit --------------------------------------------------------------------------------------


def test_fit_recovers_known_costs_from_a_simulated_grid():
    spec = parse_scenario(PP)
    points = [cal.parse_point(p) for p in ("none", "nic:50/2", "frontend:50/2", "backend:100/2", "nic:200/0")]
    truth = {"nic_pkt_us": 3.0, "stack_pkt_us": 2.0}
    doc = cal.synthetic_grid(spec, points, truth, mapping=(0.5, 0.25), duration_s=0.02)
    grid = cal.load_grid(json.loads(json.dumps(doc)))
    res = cal.fit(grid, ["nic_pkt_us", "stack_pkt_us"], duration_s=0.02, nm_evals=60, rounds=4)
    for k, v in truth.items():
        assert res.cost[k] == pytest.approx(v, rel=0.1), res.cost
    assert max(abs(r.err_p50) for r in res.rows) < 0.02
    assert max(abs(r.err_net_rx) for r in res.rows) < 0.02
    assert res.mapping[0] == pytest.approx(0.5, rel=0.05) and res.mapping[1] == pytest.approx(0.25, rel=0.05)


def test_net_rx_map_recovers_known_coefficients():
    sims = [cal.SimPoint(10, 10, 1, i, p) for i, p in ((100, 10), (50, 40), (10, 90), (70, 70))]
    a, b = cal.net_rx_map(sims, [0.3 * s.interrupts_per_s + 0.6 * s.polls_per_s for s in sims])
    assert a == pytest.approx(0.3, rel=1e-6) and b == pytest.approx(0.6, rel=1e-6)


def test_net_rx_map_clamps_a_negative_coefficient_to_the_one_column_fit():
    sims = [cal.SimPoint(10, 10, 1, i, p) for i, p in ((100, 10), (50, 40), (10, 90))]
    measured = [1.0 * s.interrupts_per_s - 0.2 * s.polls_per_s for s in sims]  # least squares: b < 0
    a, b = cal.net_rx_map(sims, measured)
    assert b == 0.0
    xs = [s.interrupts_per_s / m for s, m in zip(sims, measured, strict=True)]
    assert a == pytest.approx(sum(xs) / sum(x * x for x in xs))  # the best a alone, in relative error


def test_nelder_mead_minimises_a_quadratic():
    x = cal.nelder_mead(lambda v: (v[0] - 1) ** 2 + 3 * (v[1] + 2) ** 2, [0.0, 0.0], step=0.5, max_evals=300, tol=1e-12)
    assert x[0] == pytest.approx(1, abs=1e-3) and x[1] == pytest.approx(-2, abs=1e-3)


def test_points_parse_and_grid():
    assert cal.parse_point("all3:50/2").knobs == {k: (50, 2) for k in cal.LAYERS}
    assert cal.parse_point("nic:20/2,frontend:50/2").name == "nic 20us/2 frontend 50us/2"
    over = cal.parse_point("nic:50/2").overrides(timer_extra_us=10)
    assert over == {"nic.coalesce.gro_flush_timeout_ns": 60_000, "nic.coalesce.napi_defer_hard_irqs": 2}
    assert cal.parse_point("nic:50/0").overrides(timer_extra_us=10)["nic.coalesce.gro_flush_timeout_ns"] == 50_000
    with pytest.raises(ValueError, match="LAYER:TIMEOUT_US/DEFER"):
        cal.parse_point("vif:50/2")
    assert len(cal.default_grid()) >= 10


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(format="x"), "format"),
        (lambda d: d["points"][0].update(p50_us=-1), "points[0].p50_us"),
        (lambda d: d["points"][1].update(knobs={"vif": [1, 2]}), "points[1].knobs.vif"),
        (lambda d: d["points"].clear(), "points"),
        (lambda d: d["spec"]["guests"][0]["workload"].update(outstanding=4), "outstanding=1"),
    ],
)
def test_bad_grid_names_the_field(mutate, needle):
    doc = json.loads(GOLDEN.read_text())
    mutate(doc)
    with pytest.raises(ValueError) as exc:
        cal.load_grid(doc, "g.json")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


# --- CLI on the real measured fixture -------------------------------------------------------------


def test_cli_fit_and_report_on_the_measured_grid(tmp_path):
    out = tmp_path / "cost.toml"
    grid = tmp_path / 'grid "a" \\ b.json'  # quotes and a backslash must survive into the cost file
    grid.write_text(GOLDEN.read_text())
    r = runner.invoke(app, ["calibrate", "fit", str(grid), "-o", str(out), "--params", "nic_pkt_us,stack_pkt_us", "--rounds", "2"])
    assert r.exit_code == 0, r.output
    assert "| nic 200us/2 |" in r.stdout and "within 20%" in r.stdout
    calibration = tomllib.loads(out.read_text())["calibration"]
    assert calibration["grid"] == str(grid) and calibration["fitted"] == ["nic_pkt_us", "stack_pkt_us"]
    table = read_cost_file(out)
    assert set(table) == {"nic_pkt_us", "stack_pkt_us"}
    rep = runner.invoke(app, ["calibrate", "report", str(GOLDEN), "--cost", str(out), "--json"])
    assert rep.exit_code == 0, rep.output
    doc = json.loads(rep.stdout)
    assert len(doc["points"]) == len(json.loads(GOLDEN.read_text())["points"])
    assert all(p["simulated_p50_us"] > 0 and p["measured_net_rx_per_s"] > 0 for p in doc["points"])
    # the cost file loads in a scenario too
    _write(tmp_path / "s.toml", f'cost_file = "{out.name}"\n[[guests]]\nname = "g1"\nworkload = {{ kind = "request_response" }}\n')
    assert load_scenario(tmp_path / "s.toml").cost.nic_pkt_us == pytest.approx(table["nic_pkt_us"])


def test_cli_errors_are_one_line(tmp_path):
    bad = _write(tmp_path / "g.json", json.dumps({"format": cal.GRID_FORMAT, "spec": PP, "points": [{"p50_us": 5}]}))
    r = runner.invoke(app, ["calibrate", "fit", str(bad), "-o", str(tmp_path / "c.toml")])
    assert r.exit_code == 2 and "points[0].net_rx_per_s" in r.output
    r = runner.invoke(app, ["calibrate", "fit", str(GOLDEN), "-o", str(tmp_path / "c.toml"), "--params", "nope"])
    assert r.exit_code == 2 and "--params: nope" in r.output
    r = runner.invoke(app, ["calibrate", "report", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "cannot read" in r.output
    _write(tmp_path / "c.toml", "[cost]\nbogus = 1\n")
    r = runner.invoke(app, ["calibrate", "report", str(GOLDEN), "--cost", str(tmp_path / "c.toml")])
    assert r.exit_code == 2 and "cost.bogus: unknown key" in r.output


# --- a short real measurement (root) ----------------------------------------------------------------


@pytest.mark.root("sockperf")
def test_measure_two_points_on_the_testbed(tag):
    from vcoal.policies import make_policy
    from vcoal.testbed.trial import TrialOptions, run_trial

    spec = parse_scenario(PP)
    doc = measure(spec, [cal.parse_point("none"), cal.parse_point("nic:200/2")], reps=1, measure_s=1.0,
                  trial_fn=lambda s: run_trial(s, make_policy("static"), TrialOptions(measure_s=1.0, tag=tag)))
    grid = cal.load_grid(doc)
    none, deferred = grid.p50_us
    # With 200 µs deferral on peth0 the next request waits for the timer armed by the previous poll,
    # so the round trip is paced by the timer: about 200 µs whatever the undeferred round trip was.
    assert deferred > 150 and deferred > none + 50
    assert all(v > 0 for v in grid.net_rx_per_s)


def test_report_applies_every_cost_key_as_sim_does(tmp_path):
    """calibrate report --cost applies the file's [cost] as vcoal sim --cost does: distributions too."""
    p = _write(tmp_path / "c.toml", '[cost]\nnic_pkt_us = 1.5\nservice_dist = "exp"\n[calibration]\nnet_rx_per_interrupt = 1\nnet_rx_per_poll = 0\n')
    cost, mapping = cal.read_cost_model(p)
    assert cost == {"nic_pkt_us": 1.5, "service_dist": "exp"} and mapping == (1.0, 0.0)
    spec, point = parse_scenario(PP), cal.parse_point("none")
    det = cal.simulate_point(spec, point, {"nic_pkt_us": 1.5})
    exp = cal.simulate_point(spec, point, cost)
    assert det.p50_us != exp.p50_us
