"""Bad input gets one line naming the field and the accepted range; the sim CLI works end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vcoal.model.histogram import RELATIVE_ERROR, LatencyHistogram
from vcoal.spec import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
GUEST = {"name": "g1", "workload": {"kind": "poisson"}}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"guests": [GUEST], "bogus": 1}, "bogus: unknown key"),
        ({"guests": [{**GUEST, "vcpus": 0}]}, "guests.0.vcpus: 0 out of range [1, 64]"),
        ({"guests": [GUEST], "nic": {"coalesce": {"rx_usecs": -1}}}, "nic.coalesce.rx_usecs: -1 out of range"),
        ({"guests": [GUEST], "nic": {"coalesce": {"timer": "eqe"}}}, "nic.coalesce.timer"),
        ({"guests": [GUEST, GUEST]}, "names must be unique"),
        ({"guests": [{**GUEST, "nic_queue": 3}]}, "nic_queue=3: must be < nic.queues=1"),
        ({"guests": []}, "guests"),
    ],
)
def test_bad_specs_are_refused_with_one_line(data, needle):
    with pytest.raises(ValueError) as err:
        parse_scenario(data)
    msg = str(err.value)
    assert "\n" not in msg
    assert needle in msg


def test_trace_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp_us,size,direction\n1.0,64,rx\n2.0,99999,rx\n")
    (tmp_path / "s.toml").write_text('[[guests]]\nname="g"\nworkload={kind="trace", trace="t.csv"}\n')
    with pytest.raises(ValueError, match=r"t.csv:3: size 99999: .*\[1, 65535\]"):
        load_scenario(tmp_path / "s.toml")


def test_example_specs_load():
    for path in [ROOT / "examples/reference.toml", *sorted((ROOT / "examples/validation").glob("*.toml"))]:
        spec = load_scenario(path)
        assert spec.guests


def test_histogram_quantiles_within_stated_error():
    import random

    rng = random.Random(1)
    values = sorted(int(rng.lognormvariate(10, 1.5)) for _ in range(20_000))
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = values[max(0, int(q * len(values)) - 1)]
        assert abs(h.quantile_ns(q) - exact) <= RELATIVE_ERROR * exact + 1
    assert h.mean_ns() == pytest.approx(sum(values) / len(values))


def _vcoal(*args):
    return subprocess.run([sys.executable, "-m", "vcoal.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_sim_json_and_errors():
    r = _vcoal("sim", "examples/reference.toml", "--duration", "0.01", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {t["name"] for t in doc["tenants"]} == {"g1", "g2", "g3", "g4"}
    assert doc["tenants"][0]["latency_us"]["p99"] > 0
    r = _vcoal("sim", "examples/reference.toml", "--set", "nic.rx_usecs=-3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "rx_usecs=-3" in r.stderr
    r = _vcoal("sim", "examples/reference.toml", "--set", "nic.rx_usecs=64", "--duration", "0.01")
    assert r.returncode == 0 and "64/" in r.stdout


def test_override_naming_only_a_guest_is_refused():
    spec = parse_scenario({"guests": [GUEST]})
    with pytest.raises(ValueError, match=r"name a field of the guest"):
        spec.with_overrides({"guests.g1": 3})
