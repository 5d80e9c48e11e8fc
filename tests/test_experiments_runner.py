"""The sweep runner on the process pool: failures as data, Ctrl-C and killed workers, resume.

Trial functions here are module level so the pool's forkserver workers can unpickle them; they
wrap ``synthetic_trial`` (a closed-form stand-in for the simulator) and inject faults by seed.
"""

from __future__ import annotations

import os
import signal
import tomllib
from pathlib import Path

import pytest

import tiny_scenarios as tiny
from vcoal.experiments import parse_sweep, run_sweep
from vcoal.experiments.synthetic import synthetic_trial
from vcoal.results import connect, load_trial, query
from vcoal.results.store import FAILED_DIR, TRIALS_DIR

SCENARIO = tiny.scenario("tiny", tiny.rr(), tiny.poisson("bg", step=(0.01, 60000)))

COMPARED = (
    "SELECT run_key, status, scenario, policy, seed, p99_us_max, cpu_ns_per_packet, irq_per_s, slo_met, "
    "delivered, windows FROM trials ORDER BY run_key"
)


def failing_trial(spec, policy, seed=None, duration_s=None):
    if seed == 2:
        raise RuntimeError("boom: seed 2 is cursed")
    return synthetic_trial(spec, policy, seed=seed, duration_s=duration_s)


def interrupting_trial(spec, policy, seed=None, duration_s=None):
    if seed == 5:
        raise KeyboardInterrupt
    return synthetic_trial(spec, policy, seed=seed, duration_s=duration_s)


def killing_trial(spec, policy, seed=None, duration_s=None):
    if seed == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return synthetic_trial(spec, policy, seed=seed, duration_s=duration_s)


def kill_once_trial(spec, policy, seed=None, duration_s=None):
    marker = Path(spec.description)  # the test puts a marker path in the description
    if seed == 3 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return synthetic_trial(spec, policy, seed=seed, duration_s=duration_s)


def env_trial(spec, policy, seed=None, duration_s=None):
    result = synthetic_trial(spec, policy, seed=seed, duration_s=duration_s)
    result.meta["numba_cache_dir"] = os.environ.get("NUMBA_CACHE_DIR")
    return result


def make_trials(seeds: int = 8, description: str = ""):
    scen = tomllib.loads(SCENARIO)
    scen["description"] = description
    data = {"name": "t", "scenario": scen, "seeds": seeds, "axes": {"policy": ["off", "static"]}}
    return parse_sweep(data, "test").expand()


def stored_table(out: Path) -> list[tuple]:
    return query(out, COMPARED)[1]


def files(out: Path, sub: str = TRIALS_DIR) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / sub).glob("*.json")}


@pytest.fixture(scope="module")
def clean_table(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("clean")
    outcome = run_sweep(make_trials(), out, workers=2, trial_fn=synthetic_trial)
    assert outcome.complete and outcome.ok == 16
    return stored_table(out)


def test_clean_run_then_rerun_skips_everything(tmp_path, clean_table):
    trials = make_trials()
    first = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert (first.ok, first.failed, first.skipped) == (16, 0, 0)
    assert stored_table(tmp_path) == clean_table
    before = files(tmp_path)
    again = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert (again.ran, again.skipped) == (0, 16)
    assert files(tmp_path) == before
    # the parts were compacted into one file per table
    assert len(list((tmp_path / "summary").glob("trials-*.parquet"))) == 1


def test_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path, clean_table):
    trials = make_trials()
    outcome = run_sweep(trials, tmp_path, workers=2, trial_fn=failing_trial)
    assert (outcome.ok, outcome.failed) == (14, 2)
    assert all("boom: seed 2" in err for _, err in outcome.failures)
    failed = sorted((tmp_path / FAILED_DIR).glob("*.json"))
    assert len(failed) == 2
    doc = load_trial(failed[0])
    assert not doc.ok and doc.doc["error"]["type"] == "RuntimeError"
    assert "boom" in doc.doc["error"]["traceback"]
    _cols, rows = query(tmp_path, "SELECT status, error FROM trials WHERE status = 'failed'")
    assert len(rows) == 2 and "RuntimeError: boom" in rows[0][1]
    # a rerun retries the failures only; successes replace the failure records
    rerun = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert (rerun.ok, rerun.failed, rerun.skipped) == (2, 0, 14)
    assert not list((tmp_path / FAILED_DIR).glob("*.json"))
    assert stored_table(tmp_path) == clean_table


def test_keyboard_interrupt_leaves_a_consistent_store_and_resume_completes(tmp_path, clean_table):
    trials = make_trials()
    first = run_sweep(trials, tmp_path, workers=2, trial_fn=interrupting_trial, batch_rows=1000)
    assert first.interrupted and not first.complete
    stored = files(tmp_path)
    assert 0 < len(stored) < 16
    assert first.ok == len(stored)
    # consistent without any repair: every stored file has its summary row, nothing else has one
    con = connect(tmp_path)
    keys = {k for (k,) in con.execute("SELECT run_key FROM trials").fetchall()}
    con.close()
    assert keys == {n.removesuffix(".json") for n in stored}
    assert not list(tmp_path.rglob("*.tmp"))
    second = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert second.complete
    assert (second.ran, second.skipped) == (16 - len(stored), len(stored))
    assert {k: v for k, v in files(tmp_path).items() if k in stored} == stored  # untouched
    assert stored_table(tmp_path) == clean_table


def test_killed_worker_loses_no_finished_result_and_rerun_completes(tmp_path, clean_table):
    trials = make_trials()
    first = run_sweep(trials, tmp_path, workers=2, trial_fn=killing_trial, max_pool_restarts=0)
    assert not first.interrupted and first.lost > 0
    stored = files(tmp_path)
    assert len(stored) == first.ok and first.ok + first.lost == 16
    for name in stored:
        assert load_trial(tmp_path / TRIALS_DIR / name).ok
    second = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert second.complete and second.ran == 16 - len(stored)
    assert stored_table(tmp_path) == clean_table


def test_broken_pool_is_replaced_and_the_sweep_completes(tmp_path, clean_table):
    marker = tmp_path / "killed-once"
    trials = make_trials(description=str(marker))
    outcome = run_sweep(trials, tmp_path / "out", workers=2, trial_fn=kill_once_trial)
    assert marker.exists()
    assert outcome.complete and outcome.ok == 16
    assert len(stored_table(tmp_path / "out")) == 16


def test_driver_killed_between_file_and_summary_is_repaired(tmp_path, clean_table):
    trials = make_trials()
    run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    for part in (tmp_path / "summary").glob("*.parquet"):
        part.unlink()  # as if the driver died before writing any batch
    again = run_sweep(trials, tmp_path, workers=2, trial_fn=synthetic_trial)
    assert again.ran == 0
    assert stored_table(tmp_path) == clean_table


def test_workers_get_a_numba_cache_dir(tmp_path):
    cache = tmp_path / "numba-cache"
    outcome = run_sweep(make_trials(seeds=1), tmp_path / "out", workers=1, trial_fn=env_trial,
                        numba_cache_dir=str(cache))
    assert outcome.ok == 2
    doc = load_trial(next((tmp_path / "out" / TRIALS_DIR).glob("*.json")))
    expected = os.environ.get("NUMBA_CACHE_DIR") or str(cache)
    assert doc.result.meta["numba_cache_dir"] == expected


def _numba_engine_index(cache: Path) -> Path:
    """Where numba itself puts the index of the compiled event loop in cache ``cache``."""
    import importlib.util

    from numba.core.caching import _CacheLocator

    loop_py = importlib.util.find_spec("vcoal.sim.engine.loop").origin
    return cache / _CacheLocator.get_suitable_cache_subpath(loop_py) / "loop.run-176.py311.nbi"


def test_a_cold_engine_cache_is_announced_once_numba_would_compile(tmp_path, monkeypatch):
    from io import StringIO

    from rich.console import Console

    from vcoal.experiments import RichProgress
    from vcoal.experiments.runner import pool_cold_engine_note
    from vcoal.experiments.worker import cold_engine_note, engine_cache_cold

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    index = _numba_engine_index(warm)
    index.parent.mkdir(parents=True)
    index.write_bytes(b"")
    assert engine_cache_cold(str(cold)) and not engine_cache_cold(str(warm))
    note = pool_cold_engine_note(None, str(cold))
    assert note is not None and str(cold) in note and "of each worker compiles" in note
    assert pool_cold_engine_note(None, str(warm)) is None
    assert "simulation on this machine compiles" in cold_engine_note(str(cold))  # vcoal sim's line
    assert pool_cold_engine_note(synthetic_trial, str(cold)) is None  # not the simulator: nothing to compile
    assert pool_cold_engine_note(None, None) is None  # a Dask cluster's workers: their caches are not ours
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(warm))  # the environment's choice wins, as in the workers
    assert not engine_cache_cold(str(cold)) and pool_cold_engine_note(None, str(cold)) is None
    out = StringIO()
    RichProgress(Console(file=out, width=200)).note(note)
    assert note in out.getvalue()
