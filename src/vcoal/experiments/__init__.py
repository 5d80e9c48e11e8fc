"""Experiments: declarative sweeps (TOML) expanded into trials, run on a local pool or Dask.

``load_sweep(path).expand()`` gives ``TrialSpec``s; ``run_sweep(trials, out_dir)`` runs what is
not stored yet and stores every outcome through ``vcoal.results``. A single run is a sweep of one
(``single_trial``).
"""

from vcoal.experiments.executors import DaskHandle, ExecutorHandle, PoolHandle, open_executor
from vcoal.experiments.progress import NoProgress, RichProgress, SweepProgress
from vcoal.experiments.runner import SweepOutcome, run_sweep, run_sweep_spec
from vcoal.experiments.sweep import (
    SweepSpec,
    TrialSpec,
    expand,
    load_sweep,
    parse_sweep,
    run_key,
    single_trial,
)
from vcoal.experiments.worker import execute_trial, run_simulation

__all__ = [
    "DaskHandle",
    "ExecutorHandle",
    "NoProgress",
    "PoolHandle",
    "RichProgress",
    "SweepOutcome",
    "SweepProgress",
    "SweepSpec",
    "TrialSpec",
    "execute_trial",
    "expand",
    "load_sweep",
    "open_executor",
    "parse_sweep",
    "run_key",
    "run_simulation",
    "run_sweep",
    "run_sweep_spec",
    "single_trial",
]
