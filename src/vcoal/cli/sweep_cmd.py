"""``vcoal sweep``: expand a sweep TOML and run its trials on a local pool or a Dask cluster."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from vcoal.cli.main import fail, output_path

EPILOG = """Examples:

  vcoal sweep examples/sweeps/load_vs_policy.toml -o results/load

  vcoal sweep examples/sweeps/load_vs_policy.toml --workers 8

  vcoal sweep examples/sweeps/load_vs_policy.toml --dask-local 4

  vcoal sweep examples/sweeps/load_vs_policy.toml --dask tcp://scheduler:8786

Interrupt with Ctrl-C and run the same command again: finished trials are skipped.
"""


def _sigterm_as_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def default_out_dir(name: str) -> Path:
    """Where a sweep writes when ``-o`` is not given."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path("vcoal-results") / safe


def sweep(
    sweep_path: Path = typer.Argument(..., help="sweep TOML file (see docs/experiments.md)"),
    out: Path = typer.Option(None, "--out", "-o", help="results directory (default vcoal-results/NAME)"),
    dask: str = typer.Option(None, "--dask", metavar="ADDRESS", help="run on an existing Dask scheduler"),
    dask_local: int = typer.Option(None, "--dask-local", metavar="N", help="start a local Dask cluster of N workers"),
    workers: int = typer.Option(None, "--workers", "-w", help="local process-pool size (default: CPU count)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the expanded trials and exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    force: bool = typer.Option(False, "--force", help="run even when a trial's estimated simulator events exceed the budget"),
) -> None:
    """Run every trial of a sweep that has no stored result yet; failures are recorded, not fatal."""
    from vcoal.experiments import NoProgress, RichProgress, load_sweep, run_sweep

    if dask and dask_local:
        fail("give either --dask ADDRESS or --dask-local N, not both")
    if workers is not None and (dask or dask_local):
        fail("--workers sizes the local process pool; with Dask use --dask-local N or size the cluster")
    if workers is not None and not 1 <= workers <= 1024:
        fail(f"--workers {workers}: out of range [1, 1024]")
    if dask_local is not None and not 1 <= dask_local <= 1024:
        fail(f"--dask-local {dask_local}: out of range [1, 1024]")
    try:
        spec = load_sweep(sweep_path)
        trials = spec.expand()
    except ValueError as exc:
        fail(str(exc))
    if not force:
        refusal = first_over_budget(trials)
        if refusal is not None:
            fail(refusal)
    if dry_run:
        for t in trials:
            typer.echo(f"{t.run_key}  {t.label}")
        typer.echo(f"{len(trials)} trials", err=True)
        return
    out = output_path(out or default_out_dir(spec.name), "--out", directory=True)
    _sigterm_as_interrupt()
    try:
        outcome = run_sweep(
            trials, out, workers=workers, dask_address=dask, dask_local=dask_local, sweep=spec,
            progress=NoProgress() if quiet else RichProgress(),
        )
    except ValueError as exc:
        fail(str(exc))
    report_outcome(outcome)
    if outcome.interrupted:
        raise typer.Exit(130)
    if outcome.failed or outcome.lost:
        raise typer.Exit(1)


def first_over_budget(trials) -> str | None:
    """The refusal line of the first trial whose estimated simulator events exceed the budget
    (``vcoal.sim.budget``; a trial's scenario carries the sweep's duration and axes), or None."""
    from vcoal.sim.budget import over_budget
    from vcoal.spec import ScenarioSpec

    seen: set[str] = set()
    for t in trials:
        if t.spec_hash in seen:
            continue
        seen.add(t.spec_hash)
        refusal = over_budget(ScenarioSpec.model_validate(t.scenario))
        if refusal is not None:
            return f"trial {t.label}: {refusal}"
    return None


def report_outcome(outcome) -> None:
    """Print what a sweep did and what to run next (stderr)."""
    o = outcome
    for line in o.store_warnings:
        typer.echo(f"vcoal: warning: {line}", err=True)
    state = "interrupted" if o.interrupted else ("incomplete" if o.lost else "done")
    typer.echo(
        f"sweep {state}: {o.ok} ok, {o.failed} failed, {o.skipped} already stored, {o.lost} not run "
        f"({o.total} trials) in {o.elapsed_s:.1f} s on {o.engine}",
        err=True,
    )
    for label, error in o.failures[:10]:
        typer.echo(f"  failed: {label}: {error}", err=True)
    if len(o.failures) > 10:
        typer.echo(f"  ... and {len(o.failures) - 10} more (vcoal results show {o.out_dir})", err=True)
    if o.interrupted or o.lost:
        typer.echo("  run the same command again to complete the missing trials", err=True)
    typer.echo(f"results: {o.out_dir}   next: vcoal results show {o.out_dir}; vcoal report {o.out_dir}", err=True)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("sweep", epilog=EPILOG)(sweep)
