"""``vcoal report``: one self-contained HTML page from a results directory (reads files only)."""

from __future__ import annotations

from pathlib import Path

import typer

from vcoal.cli.main import fail, output_path, warn


def report(
    results_dir: Path = typer.Argument(..., help="results directory written by vcoal sweep"),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file to write (default RESULTS_DIR/report.html)"),
) -> None:
    """Render SLO attainment, latency-vs-CPU, CDFs, phase-change series, decisions and provenance."""
    from vcoal.cli.results_cmd import check_results
    from vcoal.report import render_report
    from vcoal.results import ResultFormatError

    if not results_dir.is_dir():
        fail(f"{results_dir}: not a directory (expected a results directory written by vcoal sweep)")
    out = output_path(out or results_dir / "report.html", "--out")
    damaged = {str(p) for p in check_results(results_dir).damaged_files}
    try:
        info = render_report(results_dir, out)
    except (ValueError, ResultFormatError) as exc:
        fail(str(exc))
    for line in info.unreadable:
        if line.split(": ", 1)[0] not in damaged:  # those were named above
            warn(f"not in the report: {line}")
    typer.echo(f"report: {out} ({info.trials} trials, {len(info.plots)} plots, {len(info.html) // 1024} KiB)")


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("report", epilog="Example: vcoal report vcoal-results/demo -o report.html")(report)
