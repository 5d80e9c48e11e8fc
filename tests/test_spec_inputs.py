"""Input that hangs or lies: NaN/inf, runaway rates and files, strict types, trace rows, bounds.

Every bad input is refused at validation with one line naming the field (or the file and line)
and what is accepted, before any simulation starts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vcoal.model.tomlfile import read_toml
from vcoal.spec import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
GUEST = {"name": "g1", "workload": {"kind": "poisson"}}


def _spec(**top):
    return {"guests": [GUEST], **top}


def _with_workload(**w):
    return {"guests": [{"name": "g1", "workload": {"kind": "poisson", **w}}]}


def _refused(data) -> str:
    with pytest.raises(ValueError) as err:
        parse_scenario(data)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- NaN / infinity anywhere ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_with_workload(steps=[[0.01, math.nan]]), "guests.0.workload.steps.0.1"),
        (_with_workload(steps=[[math.nan, 100.0]]), "guests.0.workload.steps.0.0"),
        (_with_workload(steps=[[0.01, math.inf]]), "guests.0.workload.steps.0.1"),
        ({"guests": [{"name": "g1", "workload": {"kind": "trace", "trace_rows": [[math.nan, 64, "rx"]]}}]},
         "guests.0.workload.trace_rows.0.0"),
        (_spec(duration_s=math.nan), "duration_s"),
        (_spec(cost={"irq_us": math.inf}), "cost.irq_us"),
        (_spec(host={"link_gbps": math.nan}), "host.link_gbps"),
        ({"guests": [{**GUEST, "slo": {"p99_us": math.nan}}]}, "guests.0.slo.p99_us"),
    ],
)
def test_nan_and_inf_are_refused_naming_the_field(data, field):
    msg = _refused(data)
    assert f"{field}: expected a finite number" in msg


# --- runaway rates ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [1e15, 2e9])
def test_a_rate_step_above_the_rate_limit_is_refused(rate):
    msg = _refused(_with_workload(steps=[[0.01, rate]]))
    assert "guests.0.workload.steps" in msg and "rate_pps" in msg and "[0, 1e+09]" in msg


def test_a_step_after_the_longest_run_is_refused():
    assert "at_s" in _refused(_with_workload(steps=[[1e12, 10.0]]))


# --- range messages, one error one message, strict types --------------------------------------------

@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_spec(duration_s=0), "duration_s: 0 out of range (0, 3600]"),
        (_spec(host={"link_gbps": 0}), "host.link_gbps: 0 out of range (0, 1000"),
        (_spec(warmup_s=-1), "warmup_s: -1 out of range [0, 3600]"),
    ],
)
def test_range_messages_print_open_and_closed_bounds(data, needle):
    assert needle in _refused(data)


@pytest.mark.parametrize(
    "guest",
    [{**GUEST, "vcpus": 0}, {**GUEST, "name": 5}, {"name": "g1", "workload": {"kind": "poisson", "rate_pps": -1}}],
)
def test_one_bad_guest_gives_one_error_not_a_spurious_tuple_length_one(guest):
    msg = _refused({"guests": [guest]})
    assert "more)" not in msg and "at least 1 item" not in msg


def test_no_guest_is_still_refused():
    assert "guests: at least one [[guests]]" in _refused({"guests": []})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_spec(nic={"queues": True}), "nic.queues"),
        (_spec(nic={"coalesce": {"rx_frames": "64"}}), "nic.coalesce.rx_frames"),
        (_spec(seed=True), "seed"),
        (_spec(duration_s="0.1"), "duration_s"),
        ({"guests": [{**GUEST, "vcpus": 1.0}]}, "guests.0.vcpus"),
    ],
)
def test_types_are_strict(data, field):
    msg = _refused(data)
    assert f"{field}: expected " in msg


def test_number_fields_accept_integers():
    spec = parse_scenario(_spec(duration_s=1, host={"link_gbps": 25}))
    assert spec.duration_s == 1.0 and spec.host.link_gbps == 25.0


# --- trace rows: inline and CSV are checked alike ----------------------------------------------------

BAD_ROWS = [
    ([[1.0, 64, "sideways"]], 0, "sideways"),
    ([[1.0, -5, "rx"]], 0, "size -5"),
    ([[1.0, 0, "tx"]], 0, "size 0"),
    ([[-1.0, 64, "rx"]], 0, "-1.0"),
    ([[300.0, 64, "rx"], [10.0, 64, "rx"]], 1, "sorted"),
]


@pytest.mark.parametrize(("rows", "bad", "needle"), BAD_ROWS)
def test_inline_trace_rows_are_validated_like_csv(tmp_path, rows, bad, needle):
    inline = _refused({"guests": [{"name": "g1", "workload": {"kind": "trace", "trace_rows": rows}}]})
    assert "guests.0.workload.trace_rows" in inline and needle in inline
    (tmp_path / "t.csv").write_text("".join(f"{ts},{size},{d}\n" for ts, size, d in rows))
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g"\nworkload={kind="trace", trace="t.csv"}\n')
    with pytest.raises(ValueError) as err:
        load_scenario(tmp_path / "s.toml")
    assert f"t.csv:{bad + 1}: " in str(err.value) and needle in str(err.value)


def _trace_spec(tmp_path: Path, content: bytes) -> Path:
    (tmp_path / "t.csv").write_bytes(content)
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g"\nworkload={kind="trace", trace="t.csv"}\n')
    return tmp_path / "s.toml"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"1.0,64,rx\n\xff\xfe,64,rx\n", "t.csv:2: not UTF-8"),
        (b"timestamp_us,size,direction\n1.0,64,rx\n2.0,abc,rx\n", "t.csv:3: size 'abc'"),
        (b"1.0,64,rx\nabc,64,rx\n", "t.csv:2: timestamp_us 'abc'"),
        (b"1.0,64,rx\nnan,64,rx\n", "t.csv:2: timestamp_us nan"),
        (b"1.0,64,rx\ninf,64,rx\n", "t.csv:2: timestamp_us inf"),
        (b"", "t.csv: no rows"),
        (b"timestamp_us,size,direction\n", "t.csv: no rows"),
    ],
)
def test_trace_file_errors_name_the_file_and_line(tmp_path, content, needle):
    with pytest.raises(ValueError) as err:
        load_scenario(_trace_spec(tmp_path, content))
    assert needle in str(err.value) and "guests.g.workload.trace" in str(err.value)


def test_a_trace_that_is_not_a_regular_file_is_refused(tmp_path):
    (tmp_path / "t.csv").mkdir()
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g"\nworkload={kind="trace", trace="t.csv"}\n')
    with pytest.raises(ValueError, match=r"t.csv: not a regular file"):
        load_scenario(tmp_path / "s.toml")


def test_an_oversized_trace_is_refused_before_reading(tmp_path):
    from vcoal.spec.trace import TRACE_MAX_BYTES

    path = _trace_spec(tmp_path, b"")
    with open(tmp_path / "t.csv", "wb") as fh:  # sparse: no disk used, NUL bytes if ever read
        fh.truncate(TRACE_MAX_BYTES + 1)
    with pytest.raises(ValueError, match=r"t.csv: .* above the 64.0 MiB limit"):
        load_scenario(path)


def test_a_scenario_file_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "s.toml").write_bytes(b'name = "ok"\nname2 = "\xff"\n')
    with pytest.raises(ValueError, match=r"s.toml:2: not UTF-8"):
        read_toml(tmp_path / "s.toml")


# --- the CLI: budget, flags, Ctrl-C, strict JSON ----------------------------------------------------

@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from vcoal.cli.main import _register, app

    _register()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_sim_refuses_a_run_above_the_event_budget_and_shows_the_estimate(tmp_path, cli, monkeypatch):
    import vcoal.sim

    def never(*a, **k):  # the refusal must come before any simulation starts
        raise AssertionError("simulation started")

    monkeypatch.setattr(vcoal.sim, "run_scenario", never)
    (tmp_path / "s.toml").write_text('duration_s = 3600\n[[guests]]\nname="g1"\nworkload={kind="poisson", rate_pps=1e9}\n')
    r = cli("sim", tmp_path / "s.toml")
    assert r.exit_code == 2
    assert "simulator events estimated" in r.output and "--force" in r.output and "e+" in r.output


def test_sweep_refuses_a_trial_above_the_event_budget_before_any_trial_runs(tmp_path, cli, monkeypatch):
    import vcoal.experiments

    def never(*a, **k):
        raise AssertionError("sweep started")

    monkeypatch.setattr(vcoal.experiments, "run_sweep", never)
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g1"\nworkload={kind="poisson", rate_pps=1e8}\n')
    # the sweep's duration makes the second trial too big: the check sees each trial's expanded scenario
    (tmp_path / "w.toml").write_text('name = "big"\nscenario = "s.toml"\n'
                                     '[axes]\npolicy = ["off"]\nduration_s = [0.01, 60.0]\n')
    r = cli("sweep", tmp_path / "w.toml", "-o", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("vcoal: error: trial ") and "duration_s=60" in r.output and "--force" in r.output
    assert "duration_s=0.01" not in r.output  # the small trial is within the budget
    assert not (tmp_path / "out").exists()


def test_event_estimate_scales_with_duration_and_rate():
    from vcoal.sim.budget import estimate_events

    base = parse_scenario(_with_workload(rate_pps=1e5) | {"duration_s": 1.0})
    assert estimate_events(base.model_copy(update={"duration_s": 2.0})) == 2 * estimate_events(base)
    stepped = parse_scenario(_with_workload(rate_pps=1e5, steps=[[0.5, 1e6]]) | {"duration_s": 1.0})
    assert estimate_events(stepped) > 5 * estimate_events(base)


def test_example_scenarios_are_within_the_budget():
    from vcoal.sim.budget import over_budget

    root = Path(__file__).resolve().parents[1] / "examples"
    for path in [root / "reference.toml", *sorted((root / "suite").glob("*.toml"))]:
        assert over_budget(load_scenario(path)) is None, path


@pytest.mark.parametrize("value", [",", " , ", ""])
def test_compare_refuses_an_empty_policy_list(cli, value):
    r = cli("compare", ROOT / "examples/suite", "--policies", value)
    assert r.exit_code == 2 and "--policies" in r.output and r.output.count("\n") == 1


def test_sim_ctrl_c_says_what_was_kept(tmp_path, cli, monkeypatch):
    import vcoal.sim

    def interrupted_run(spec, policy, seed=None, duration_s=None, progress=None):
        progress(0.25)
        raise KeyboardInterrupt

    monkeypatch.setattr(vcoal.sim, "run_scenario", interrupted_run)
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g1"\nworkload={kind="poisson"}\n')
    r = cli("sim", tmp_path / "s.toml", "--out", tmp_path / "r.json")
    assert r.exit_code == 130
    assert "interrupted" in r.output and "25%" in r.output and "nothing stored" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "r.json").exists()


def test_compare_ctrl_c_keeps_the_finished_rows(tmp_path, cli, monkeypatch):
    import vcoal.experiments.compare as cmp

    row = {"scenario": "s", "policy": "off", "tenants": [], "cpu_ns_per_packet": math.nan, "irq_per_s": 1.0,
           "all_slos_met": False, "params": {}, "error": None}

    def interrupted_compare(suite, names, on_done=None, **kw):
        on_done(row)
        raise KeyboardInterrupt

    monkeypatch.setattr(cmp, "compare", interrupted_compare)
    r = cli("compare", ROOT / "examples/suite/01-latency-only.toml", "--json", tmp_path / "rows.json")
    assert r.exit_code == 130 and "interrupted: 1 rows finished" in r.output
    rows = json.loads((tmp_path / "rows.json").read_text(), parse_constant=_no_constant)
    assert rows[0]["policy"] == "off" and rows[0]["cpu_ns_per_packet"] is None


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def test_compare_json_is_strict(tmp_path, cli, monkeypatch):
    import vcoal.experiments.compare as cmp

    row = {"scenario": "s", "policy": "oracle", "tenants": [], "cpu_ns_per_packet": math.nan,
           "irq_per_s": math.inf, "all_slos_met": False, "params": {}, "error": cmp.NO_FEASIBLE}
    monkeypatch.setattr(cmp, "compare", lambda *a, **k: [row])
    r = cli("compare", ROOT / "examples/suite/01-latency-only.toml", "--json", tmp_path / "rows.json")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "rows.json").read_text(), parse_constant=_no_constant)
    assert rows[0]["cpu_ns_per_packet"] is None and rows[0]["irq_per_s"] is None
