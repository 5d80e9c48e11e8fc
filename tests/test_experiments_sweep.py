"""Sweep specs: parsing, one-line errors, Cartesian expansion, explicit trials, run keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import tiny_scenarios as tiny
from vcoal.experiments import load_sweep, parse_sweep, single_trial
from vcoal.policies import POLICIES
from vcoal.spec import parse_scenario

SCENARIO = tiny.scenario("tiny", tiny.rr(), tiny.poisson("bg"), seed=5)


@pytest.fixture
def scen_dir(tmp_path: Path) -> Path:
    (tmp_path / "scen").mkdir()
    (tmp_path / "scen" / "a.toml").write_text(SCENARIO)
    (tmp_path / "scen" / "b.toml").write_text(SCENARIO.replace('name = "tiny"', 'name = "tiny-b"'))
    return tmp_path


def write(d: Path, text: str) -> Path:
    p = d / "sweep.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_cartesian_product_of_scenarios_axes_policies_params_and_seeds(scen_dir):
    spec = load_sweep(write(scen_dir, """
        name = "grid"
        scenario = "scen/*.toml"
        seeds = 2
        [axes]
        policy = ["off", "static"]
        "guests.*.workload.rate_pps" = [1000, 2000, 3000]
        nic.coalesce.rx_usecs = [0, 8]
        params.static.nic = [{ rx_usecs = 4 }, { rx_usecs = 16 }]
    """))
    trials = spec.expand()
    # 2 scenarios × (3 × 2 scenario axes) × (off: 1 + static: 2) × 2 seeds
    assert len(trials) == 2 * 6 * 3 * 2
    assert len({t.run_key for t in trials}) == len(trials)
    assert {t.seed for t in trials} == {1, 2}
    t = next(t for t in trials if t.policy == "static")
    assert t.policy_params["nic"]["rx_usecs"] in (4, 16)
    assert {g["workload"]["rate_pps"] for g in t.scenario["guests"]} <= {1000, 2000, 3000}
    assert "rate_pps=" in t.label and "seed=" in t.label
    assert all(t.sweep == "grid" for t in trials)


def test_explicit_trials_and_defaults(scen_dir):
    spec = load_sweep(write(scen_dir, """
        scenario = "scen/a.toml"
        [[trials]]
        policy = "static"
        params = { nic = { rx_usecs = 32 } }
        set = { "nic.coalesce.rx_frames" = 16 }
        seeds = [7, 8]
    """))
    trials = spec.expand()
    assert spec.name == "sweep"  # the file stem
    # default axis: the static policy on the scenario's own seed, plus two explicit trials
    assert [(t.policy, t.seed) for t in trials] == [("static", 5), ("static", 7), ("static", 8)]
    assert trials[1].scenario["nic"]["coalesce"]["rx_frames"] == 16
    assert trials[1].policy_params == {"nic": {"rx_usecs": 32}}


def test_inline_scenario_and_all_policies(tmp_path):
    import tomllib

    data = {"name": "inline", "scenario": tomllib.loads(SCENARIO), "axes": {"policy": "all"}, "duration_s": 0.01}
    trials = parse_sweep(data, "inline").expand()
    assert [t.policy for t in trials] == list(POLICIES)
    # the duration override scales warmup in proportion
    assert trials[0].scenario["duration_s"] == 0.01
    assert trials[0].scenario["warmup_s"] == pytest.approx(0.001)


def test_run_key_is_stable_and_sensitive():
    base = parse_scenario(__import__("tomllib").loads(SCENARIO))
    a = single_trial(base, "static", seed=1).expand()[0]
    b = single_trial(base, "static", seed=1).expand()[0]
    c = single_trial(base, "static", seed=2).expand()[0]
    d = single_trial(base, "off", seed=1).expand()[0]
    assert a.run_key == b.run_key
    assert len({a.run_key, c.run_key, d.run_key}) == 3


def test_duplicate_trials_are_kept_once(scen_dir):
    spec = load_sweep(write(scen_dir, """
        scenario = ["scen/a.toml", "scen/a.toml"]
        seeds = [1, 1]
    """))
    assert len(spec.expand()) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('scenario = "scen/a.toml"\nbogus = 1', "bogus: unknown key; accepted:"),
        ('scenario = "nope*.toml"', "scenario: 'nope*.toml' matches no file"),
        ("seeds = 1", "scenario: missing"),
        ('scenario = "scen/a.toml"\nseeds = 0', "seeds: count 0 out of range [1, 100000]"),
        ('scenario = "scen/a.toml"\nseeds = [-1]', "seeds: -1 out of range [0,"),
        ('scenario = "scen/a.toml"\nduration_s = 0', "duration_s: 0 out of range (0, 3600]"),
        ('scenario = "scen/a.toml"\n[axes]\npolicy = ["nope"]', "axes.policy: 'nope' unknown; registered:"),
        ('scenario = "scen/a.toml"\n[axes]\n"nic.queues" = 3', "axes.nic.queues: expected a non-empty list"),
        ('scenario = "scen/a.toml"\n[axes]\n"nic.queues" = [0]', "nic.queues: 0 out of range [1, 64]"),
        ('scenario = "scen/a.toml"\n[axes]\n"guests.zz.vcpus" = [2]', "no guest named 'zz'"),
        ('scenario = "scen/a.toml"\n[params.static]\nbogus = 1', "unknown parameter 'bogus'"),
        ('scenario = "scen/a.toml"\n[[trials]]\npolicy = "x"', "trials[0].policy: 'x' unknown"),
        ('scenario = "scen/a.toml"\n[[trials]]\nfoo = 1', "trials[0].foo: unknown key"),
    ],
)
def test_bad_specs_give_one_line_naming_the_field(scen_dir, body, expected):
    with pytest.raises(ValueError) as exc:
        load_sweep(write(scen_dir, body)).expand()
    msg = str(exc.value)
    assert expected in msg
    assert "\n" not in msg
    assert "sweep.toml" in msg


def test_too_many_trials_is_refused(scen_dir):
    values = list(range(1, 101))
    body = f'scenario = "scen/a.toml"\nseeds = 1000\n[axes]\n"guests.*.vcpus" = {values[:50]}\n"nic.rx_ring" = {values}\n'
    with pytest.raises(ValueError, match="5000000 trials; accepted at most 1000000"):
        load_sweep(write(scen_dir, body))


def test_example_sweeps_expand():
    root = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
    paths = sorted(root.glob("*.toml"))
    assert paths
    for p in paths:
        assert load_sweep(p).expand(), p


@pytest.mark.parametrize("axes", [[1, 2], "ab"])
def test_axes_that_are_not_a_table_get_one_line(axes):
    with pytest.raises(ValueError, match=r"axes: expected a table"):
        parse_sweep({"scenario": {"guests": [{"name": "g", "workload": {"kind": "poisson"}}]},
                     "axes": axes})
