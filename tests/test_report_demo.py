"""``vcoal demo`` end to end on a tiny suite: results, report.html, a table, then ``results``/``report``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tiny_scenarios as tiny
from vcoal.policies import POLICIES
from vcoal.results import query

SCENARIOS = {
    "a-rr.toml": tiny.scenario("rr", tiny.rr()),
    "b-step.toml": tiny.scenario("step", tiny.poisson("rx", step=(0.01, 80000), p99_us=150.0)),
}


def vcoal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from vcoal.cli.main import main; sys.argv = ['vcoal', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def test_demo_writes_results_and_report_and_prints_where(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, text in SCENARIOS.items():
        (suite / name).write_text(text)
    out = tmp_path / "demo"
    run = vcoal("demo", "--suite", str(suite), "-o", str(out), "--workers", "2", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (out / "report.html").stat().st_size > 50_000
    assert f"report:  {(out / 'report.html').resolve()}" in run.stdout
    assert f"results: {out.resolve()}" in run.stdout
    for p in POLICIES:
        assert p in run.stdout  # the short table has a column per policy
    _, rows = query(out, "SELECT count(*), count(DISTINCT policy), count(DISTINCT scenario) FROM trials")
    assert rows == [(2 * len(POLICIES), len(POLICIES), 2)]

    show = vcoal("results", "show", str(out), cwd=tmp_path)
    assert show.returncode == 0 and "step" in show.stdout and "slo_met_pct" in show.stdout
    q = vcoal("results", "query", str(out), "SELECT policy, count(*) AS n FROM trials GROUP BY policy",
              "--format", "csv", cwd=tmp_path)
    assert q.returncode == 0 and q.stdout.splitlines()[0] == "policy,n"
    bad = vcoal("results", "query", str(out), "SELECT nope FROM trials", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("vcoal: error: query:")
    rep = vcoal("report", str(out), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert rep.returncode == 0 and (tmp_path / "r.html").exists()


def test_sweep_command_dry_run_and_bad_spec(tmp_path):
    (tmp_path / "s.toml").write_text(SCENARIOS["a-rr.toml"])
    (tmp_path / "sw.toml").write_text('scenario = "s.toml"\nseeds = 2\n[axes]\npolicy = ["off", "static"]\n')
    dry = vcoal("sweep", "sw.toml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and len(dry.stdout.splitlines()) == 4
    (tmp_path / "bad.toml").write_text('scenario = "s.toml"\n[axes]\n"nic.queues" = [0]\n')
    bad = vcoal("sweep", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "vcoal: error: bad.toml: axes nic.queues=0: spec: nic.queues: 0 out of range [1, 64]"
    ]
    run = vcoal("sweep", "sw.toml", "-o", "out", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "sweep done: 4 ok, 0 failed" in run.stderr
