"""The sweep driver: submit trials to an executor, store every finished one at once, resume by run key.

One code path for every engine: ``Executor.submit`` + ``concurrent.futures.wait``. The driver is
the only writer of the results directory: each finished trial is written as its own file the
moment it arrives (so a killed worker or driver loses no finished result), summary rows are
appended to Parquet in batches, and Ctrl-C stops the engine, flushes and leaves a consistent
store. A rerun skips every run key that already has a result file.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import json
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcoal.experiments.executors import ExecutorHandle, open_executor
from vcoal.experiments.progress import NoProgress, SweepProgress
from vcoal.experiments.sweep import SweepSpec, TrialSpec
from vcoal.experiments.worker import (
    TrialFn,
    cold_engine_note,
    default_numba_cache_dir,
    error_record,
    execute_trial,
)
from vcoal.results import (
    SummaryWriter,
    check_store,
    compact,
    done_keys,
    git_facts,
    make_document,
    now_iso,
    package_version,
    read_sweep_meta,
    store_document,
    sync_summary,
)
from vcoal.results.files import write_atomic


@dataclass(slots=True)
class SweepOutcome:
    """What a sweep run did. ``lost`` trials neither finished nor failed (a worker died, Ctrl-C)."""

    out_dir: Path
    engine: str
    total: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    lost: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    store_warnings: list[str] = field(default_factory=list)
    """Damaged trial files (run again) and summary parts (rebuilt) found before the run."""

    @property
    def ran(self) -> int:
        """Trials that finished in this run (ok or failed)."""
        return self.ok + self.failed

    @property
    def complete(self) -> bool:
        """Every trial of the sweep has a stored outcome."""
        return not self.interrupted and self.lost == 0

    def trials_per_s(self) -> float:
        return self.ran / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _provenance(outcome: dict[str, Any], engine: str) -> dict[str, Any]:
    return {
        "package_version": outcome.get("package_version", package_version()),
        **git_facts(),
        "host": outcome.get("host") or {},
        "pid": outcome.get("pid"),
        "engine": engine,
        "driver_host": socket.gethostname(),
        "started_at": outcome.get("started_at"),
        "finished_at": outcome.get("finished_at") or now_iso(),
        "wall_s": outcome.get("wall_s"),
    }


def document_for(trial: TrialSpec, outcome: dict[str, Any], engine: str) -> dict[str, Any]:
    """The result-file document of a worker's outcome."""
    result = outcome["result"] if outcome["status"] == "ok" else None
    return make_document(
        run_key=trial.run_key,
        trial=trial.info(),
        spec=trial.scenario,
        spec_hash=trial.spec_hash,
        provenance=_provenance(outcome, engine),
        result=result,
        error=None if result is not None else outcome["error"],
    )


def _engine_failure(trial: TrialSpec, exc: BaseException) -> dict[str, Any]:
    """An outcome for a trial whose future itself failed (e.g. Dask KilledWorker, pickling)."""
    return {
        "run_key": trial.run_key,
        "status": "failed",
        "result": None,
        "error": error_record(exc),
        "finished_at": now_iso(),
    }


def _store(trial: TrialSpec, outcome: dict[str, Any], out: Path, writer: SummaryWriter, engine: str,
           result: SweepOutcome) -> bool:
    """Write one outcome's file and queue its summary row; True when the trial succeeded."""
    doc = document_for(trial, outcome, engine)
    _, facts = store_document(out, doc)
    writer.add(doc, facts)
    if doc["status"] == "ok":
        result.ok += 1
        return True
    result.failed += 1
    result.failures.append((trial.label, f"{doc['error']['type']}: {doc['error']['message']}"))
    return False


def _harvest(in_flight: dict[cf.Future, TrialSpec], out: Path, writer: SummaryWriter, engine: str,
             result: SweepOutcome) -> None:
    """On Ctrl-C: store trials that already finished but were not collected yet."""
    for fut, trial in list(in_flight.items()):
        try:
            if fut.done() and not fut.cancelled() and fut.exception(timeout=0) is None:
                _store(trial, fut.result(), out, writer, engine, result)
                del in_flight[fut]
        except Exception:  # best effort while shutting down
            continue


def _write_meta(out_dir: Path, trials: Sequence[TrialSpec], sweep: SweepSpec | None, engine: str) -> None:
    history = read_sweep_meta(out_dir).get("runs", [])
    entry = {
        "name": sweep.name if sweep else (trials[0].sweep if trials else ""),
        "description": sweep.description if sweep else "",
        "source": sweep.source if sweep else "",
        "trials": len(trials),
        "engine": engine,
        "started_at": now_iso(),
        "package_version": package_version(),
        **git_facts(),
    }
    meta = {**entry, "runs": [*history[-49:], entry]}
    write_atomic(out_dir / "sweep.json", json.dumps(meta, indent=1))


def pool_cold_engine_note(trial_fn: TrialFn | None, worker_cache_dir: str | None) -> str | None:
    """``cold_engine_note`` for a sweep's workers: only when they run the simulator (``trial_fn`` None)
    with a numba cache that this machine can see (``worker_cache_dir``; None for a Dask cluster)."""
    if trial_fn is not None or worker_cache_dir is None:
        return None
    return cold_engine_note(worker_cache_dir, "of each worker")


def run_sweep(
    trials: Sequence[TrialSpec],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    dask_address: str | None = None,
    dask_local: int | None = None,
    executor: Callable[[], ExecutorHandle] | None = None,
    trial_fn: TrialFn | None = None,
    progress: SweepProgress | None = None,
    sweep: SweepSpec | None = None,
    max_in_flight: int | None = None,
    batch_rows: int = 64,
    batch_s: float = 5.0,
    max_pool_restarts: int = 2,
    numba_cache_dir: str | None = None,
) -> SweepOutcome:
    """Run every trial that has no stored result yet and store each outcome in ``out_dir``.

    Parameters
    ----------
    trials
        Expanded trials (``SweepSpec.expand()``).
    out_dir
        Results directory (created).
    workers, dask_address, dask_local
        Engine choice (see ``open_executor``); ``executor`` overrides with a factory of handles.
    trial_fn
        ``fn(spec, policy, seed=..., duration_s=None) -> TrialResult``; default the simulator.
        Must be picklable (a module-level function).
    progress
        Progress reporter; silent by default.
    max_pool_restarts
        How often a process pool broken by a dying worker is replaced before giving up (the
        trials it lost are left for a rerun).

    Returns
    -------
    SweepOutcome
        Counts; ``interrupted`` is True after Ctrl-C (the store is consistent and resumable).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or NoProgress()
    # rows for files a killed driver stored but never summarised; damaged files are run again
    check = check_store(out)
    have = done_keys(out) - check.damaged_keys()
    todo = [t for t in trials if t.run_key not in have]
    cache_dir = numba_cache_dir or default_numba_cache_dir()
    result = SweepOutcome(out, "none", total=len(trials), skipped=len(trials) - len(todo),
                          store_warnings=check.warnings())
    if not todo:
        result.elapsed_s = time.perf_counter() - t0
        return result
    handle = executor() if executor else open_executor(workers, dask_address, dask_local, cache_dir)
    fn_cache_dir = None if isinstance(dask_address, str) else cache_dir
    result.engine = handle.name
    _write_meta(out, trials, sweep, handle.name)
    writer = SummaryWriter(out, batch_rows=batch_rows, batch_s=batch_s)
    pending = collections.deque(todo)
    in_flight: dict[cf.Future, TrialSpec] = {}
    restarts = 0
    if (note := pool_cold_engine_note(trial_fn, fn_cache_dir)) is not None:
        progress.note(note)
    progress.start(len(todo), result.skipped, handle.name)
    try:
        while pending or in_flight:
            window = max_in_flight or max(2, 2 * handle.workers)
            broken: list[TrialSpec] = []
            while pending and len(in_flight) < window and not broken:
                trial = pending.popleft()
                try:
                    in_flight[handle.executor.submit(execute_trial, trial.payload(), trial_fn, fn_cache_dir)] = trial
                except BrokenProcessPool:
                    broken.append(trial)
                    break
                progress.running(trial.label)
            done, _ = cf.wait(list(in_flight), timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                trial = in_flight.pop(fut)
                try:
                    outcome = fut.result()
                except (BrokenProcessPool, cf.CancelledError):
                    broken.append(trial)
                    continue
                except KeyboardInterrupt:  # raised inside a worker: treat like Ctrl-C here
                    pending.appendleft(trial)
                    raise
                except Exception as exc:
                    outcome = _engine_failure(trial, exc)
                ok = _store(trial, outcome, out, writer, handle.name, result)
                progress.finished(trial.label, ok)
            if broken:
                # A dead worker breaks the whole pool: everything in flight is lost with it.
                lost = broken + list(in_flight.values())
                in_flight.clear()
                if handle.restartable and restarts < max_pool_restarts:
                    restarts += 1
                    handle = handle.restart()
                    pending.extendleft(reversed(lost))
                else:
                    result.lost += len(lost) + len(pending)
                    pending.clear()
        handle.close()
    except KeyboardInterrupt:
        result.interrupted = True
        _harvest(in_flight, out, writer, handle.name, result)
        result.lost += len(in_flight) + len(pending)
        handle.abort()
    finally:
        progress.stop()
        writer.flush()
        result.elapsed_s = time.perf_counter() - t0
    if not result.interrupted:
        try:
            sync_summary(out)
            compact(out)  # interrupted half way it leaves duplicate rows, which the views drop
        except KeyboardInterrupt:
            result.interrupted = True
    return result


def run_sweep_spec(spec: SweepSpec, out_dir: str | Path, **kwargs: Any) -> SweepOutcome:
    """Expand a sweep spec and run it (see ``run_sweep`` for the keyword arguments)."""
    return run_sweep(spec.expand(), out_dir, sweep=spec, **kwargs)
