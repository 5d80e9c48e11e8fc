"""``vcoal demo``: the main job. The public scenario suite × every registered policy, then a report."""

from __future__ import annotations

from pathlib import Path

import typer

from vcoal.cli.main import fail, output_path

EPILOG = """Examples:

  vcoal demo

  vcoal demo -o /tmp/demo --workers 4

  vcoal demo --duration 0.1        # quicker, noisier
"""


def find_suite() -> Path | None:
    """``examples/suite`` under the current directory, else next to the vcoal source tree."""
    import vcoal

    for base in (Path.cwd(), Path(vcoal.__file__).resolve().parents[2]):
        suite = base / "examples" / "suite"
        if suite.is_dir() and any(suite.glob("*.toml")):
            return suite
    return None


def demo(
    out: Path = typer.Option(Path("vcoal-results/demo"), "--out", "-o", help="results directory"),
    suite: Path = typer.Option(None, "--suite", help="directory of scenario TOMLs (default examples/suite)"),
    workers: int = typer.Option(None, "--workers", "-w", help="local process-pool size (default: CPU count)"),
    duration: float = typer.Option(None, "--duration", help="simulated seconds per trial (default: each scenario's)"),
    seeds: int = typer.Option(1, "--seeds", help="seeds per scenario and policy"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Run the public scenario suite with every registered policy on this machine; write results + report.html."""
    from vcoal.cli.results_cmd import OVERVIEW_SQL
    from vcoal.cli.sweep_cmd import _sigterm_as_interrupt, report_outcome
    from vcoal.experiments import NoProgress, RichProgress, parse_sweep, run_sweep
    from vcoal.report import render_report
    from vcoal.results import query

    suite = suite or find_suite()
    if suite is None or not suite.is_dir():
        fail("no scenario suite found: expected examples/suite/*.toml here or in the vcoal source tree; use --suite DIR")
    if workers is not None and not 1 <= workers <= 1024:
        fail(f"--workers {workers}: out of range [1, 1024]")
    output_path(out, "--out", directory=True)
    data: dict = {
        "name": "demo",
        "description": f"the public scenario suite ({suite}) × every registered policy",
        "scenario": sorted(str(p) for p in suite.glob("*.toml")),
        "seeds": seeds,
        "axes": {"policy": "all"},
    }
    if duration is not None:
        data["duration_s"] = duration
    try:
        spec = parse_sweep(data, "demo", suite)
        trials = spec.expand()
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"demo: {len(spec.scenarios)} scenarios × {len(spec.policies)} policies × {seeds} seed(s) "
               f"= {len(trials)} trials -> {out}", err=True)
    _sigterm_as_interrupt()
    outcome = run_sweep(trials, out, workers=workers, sweep=spec,
                        progress=NoProgress() if quiet else RichProgress())
    report_outcome(outcome)
    if outcome.interrupted:
        raise typer.Exit(130)
    report_path = out / "report.html"
    try:
        info = render_report(out, report_path)
    except ValueError as exc:
        fail(str(exc))
    print_pivot(query(out, OVERVIEW_SQL)[1])
    typer.echo(f"results: {out.resolve()}")
    typer.echo(f"report:  {report_path.resolve()} ({len(info.plots)} plots; open it in a browser)")
    typer.echo(f"query:   vcoal results query {out} \"SELECT policy, avg(p99_us_max) FROM trials GROUP BY policy\"")
    if outcome.failed or outcome.lost:
        raise typer.Exit(1)


def print_pivot(rows: list[tuple]) -> None:
    """Scenario rows × policy columns: SLO verdict, worst-tenant p99 and CPU per packet."""
    from rich.console import Console
    from rich.table import Table

    from vcoal.policies import POLICIES

    order = list(POLICIES)
    policies = sorted(dict.fromkeys(r[1] for r in rows), key=lambda p: (order.index(p) if p in order else 99, p))
    cells = {(r[0], r[1]): r for r in rows}
    t = Table(title="demo: all SLOs met? worst-tenant p99 (µs) / CPU per packet (µs)", show_lines=False)
    t.add_column("scenario")
    for p in policies:
        t.add_column(p, justify="right")
    for scen in dict.fromkeys(r[0] for r in rows):
        line = [scen]
        for p in policies:
            r = cells.get((scen, p))
            if r is None or r[4] is None:
                line.append("-" if r is None else "[red]failed[/]")
                continue
            mark = "[green]✓[/]" if r[4] >= 100 else ("[red]✗[/]" if r[4] == 0 else f"{r[4]:.0f}%")
            line.append(f"{mark} {r[5] or 0:.0f} / {(r[6] or 0) / 1000:.1f}")
        t.add_row(*line)
    Console(width=None if Console().is_terminal else 160).print(t)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("demo", epilog=EPILOG)(demo)
