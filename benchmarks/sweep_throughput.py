"""Sweep throughput: trials/s on the local process pool vs a local Dask cluster, same sweep.

The sweep is one public-suite scenario (simulator, short duration) × every registered policy ×
seeds, run from scratch into a fresh results directory by each engine with the same number of
workers. Reported per engine:

- ``trials_per_s``: all trials / wall time of ``run_sweep`` (engine start-up and shutdown, storing
  every result file, Parquet batches and compaction included) -- what a user waits for;
- ``steady_trials_per_s``: trials between the first and the last finished one / time between them
  (start-up excluded);
- ``first_result_s``: time from the call to the first stored trial (start-up cost).

Each engine runs ``--repeats`` times in alternating order; the JSON line has medians (and the
range of ``trials_per_s``). Ends with one JSON line of figures (units in the keys). Usage:
    .venv/bin/python benchmarks/sweep_throughput.py [--workers 2] [--seeds 6] [--duration-s 0.05] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _trials(scenario: Path, seeds: int, duration_s: float, synthetic: bool):
    from vcoal.experiments import parse_sweep

    data = {"name": "throughput", "scenario": str(scenario), "seeds": seeds, "duration_s": duration_s,
            "axes": {"policy": "all"}}
    return parse_sweep(data, "benchmark").expand()


def _finished(out: Path) -> list[float]:
    from vcoal.results import iter_documents

    stamps = [datetime.fromisoformat(d.provenance["finished_at"]).timestamp() for d in iter_documents(out)]
    return sorted(stamps)


def _run(engine: str, trials, workers: int, synthetic: bool) -> dict:
    from vcoal.experiments import run_sweep
    from vcoal.experiments.synthetic import synthetic_trial

    with tempfile.TemporaryDirectory(prefix=f"vcoal-bench-{engine}-") as tmp:
        out = Path(tmp) / "results"
        kwargs = {"workers": workers} if engine == "pool" else {"dask_local": workers}
        t0 = time.time()
        outcome = run_sweep(trials, out, trial_fn=synthetic_trial if synthetic else None, **kwargs)
        wall_s = time.time() - t0
        if not outcome.complete or outcome.failed:
            raise SystemExit(f"{engine}: sweep incomplete: {outcome.failures[:3]}")
        stamps = _finished(out)
    n = len(trials)
    steady = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else float("nan")
    return {"wall_s": wall_s, "trials_per_s": n / wall_s, "steady_trials_per_s": steady,
            "first_result_s": stamps[0] - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=6, help="seeds per policy (trials = policies × seeds)")
    ap.add_argument("--duration-s", type=float, default=0.05, help="simulated seconds per trial")
    ap.add_argument("--scenario", type=Path, default=ROOT / "examples" / "suite" / "03-mixed-pair.toml")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine, alternating order (medians)")
    ap.add_argument("--synthetic", action="store_true", help="closed-form trials instead of the simulator")
    args = ap.parse_args()
    if not args.scenario.exists():
        args.scenario = ROOT / "examples" / "reference.toml"
    trials = _trials(args.scenario, args.seeds, args.duration_s, args.synthetic)
    print(f"{len(trials)} trials ({args.scenario.name}, {args.duration_s} s simulated each), "
          f"{args.workers} workers", file=sys.stderr)
    figures: dict[str, float | int | str] = {"trials": len(trials), "workers": args.workers,
                                             "sim_duration_s": args.duration_s, "scenario": args.scenario.name}
    runs: dict[str, list[dict]] = {"pool": [], "dask_local": []}
    for rep in range(args.repeats):  # alternate the order: a busy machine drifts
        for engine in ("pool", "dask_local") if rep % 2 == 0 else ("dask_local", "pool"):
            r = _run(engine, trials, args.workers, args.synthetic)
            runs[engine].append(r)
            print(f"{engine:10s} {r['trials_per_s']:7.2f} trials/s end to end ({r['wall_s']:.1f} s), "
                  f"{r['steady_trials_per_s']:7.2f} trials/s steady, first result after {r['first_result_s']:.2f} s")
    for engine, rs in runs.items():
        for key in ("trials_per_s", "steady_trials_per_s", "wall_s", "first_result_s"):
            figures[f"{engine}_{key}"] = round(statistics.median(r[key] for r in rs), 3)
        figures[f"{engine}_trials_per_s_min"] = round(min(r["trials_per_s"] for r in rs), 3)
        figures[f"{engine}_trials_per_s_max"] = round(max(r["trials_per_s"] for r in rs), 3)
    figures["repeats"] = args.repeats
    figures["dask_over_pool_trials_per_s_ratio"] = round(
        float(figures["dask_local_trials_per_s"]) / float(figures["pool_trials_per_s"]), 3
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
