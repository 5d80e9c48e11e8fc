"""A real SIGINT (Ctrl-C) to a running sweep driver: clean stop, consistent store, resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vcoal.results import connect, query

SCRIPT = textwrap.dedent('''
    import sys, tomllib
    from vcoal.experiments import parse_sweep, run_sweep
    from vcoal.experiments.synthetic import synthetic_trial

    SCENARIO = """
    name = "sig"
    duration_s = 0.02
    [window]
    duration_us = 2000
    [[guests]]
    name = "a"
    workload = { kind = "poisson", rate_pps = 20000 }
    slo = { p99_us = 100.0 }
    """

    def slow(spec, policy, seed=None, duration_s=None):
        return synthetic_trial(spec, policy, seed=seed, duration_s=duration_s, sleep_s=float(sys.argv[2]))

    if __name__ == "__main__":
        data = {"name": "sig", "scenario": tomllib.loads(SCENARIO), "seeds": 24}
        o = run_sweep(parse_sweep(data, "sig").expand(), sys.argv[1], workers=2, trial_fn=slow, batch_rows=1000)
        print(f"ok={o.ok} lost={o.lost} skipped={o.skipped} interrupted={o.interrupted}")
        sys.exit(130 if o.interrupted else 0)
''')


def test_sigint_stops_cleanly_and_a_rerun_completes(tmp_path: Path):
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0.3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "trials").glob("*.json"))) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted=True" in stdout
    stored = sorted(p.stem for p in (out / "trials").glob("*.json"))
    assert 4 <= len(stored) < 24
    con = connect(out)  # consistent as left: one summary row per stored file, no temporaries
    assert sorted(k for (k,) in con.execute("SELECT run_key FROM trials").fetchall()) == stored
    con.close()
    assert not list(out.rglob("*.tmp"))
    rerun = subprocess.run([sys.executable, str(script), str(out), "0"], capture_output=True, text=True,
                           timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped={len(stored)}" in rerun.stdout and f"ok={24 - len(stored)}" in rerun.stdout
    assert query(out, "SELECT count(*), count(DISTINCT seed) FROM trials WHERE status = 'ok'")[1] == [(24, 24)]
