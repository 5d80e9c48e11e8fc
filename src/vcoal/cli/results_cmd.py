"""``vcoal results query|show``: SQL over a results directory's summary tables (DuckDB)."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import typer

from vcoal.cli.jsonout import strict_json
from vcoal.cli.main import fail, warn

results_app = typer.Typer(
    help="Query stored sweep results (tables 'trials' and 'tenants'; see docs/experiments.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OVERVIEW_SQL = """
SELECT scenario, policy, count(*) AS trials,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       round(100.0 * avg(CASE WHEN slo_met THEN 1 ELSE 0 END) FILTER (WHERE status = 'ok'), 1) AS slo_met_pct,
       round(median(p99_us_max), 1) AS p99_us_median,
       round(median(cpu_ns_per_packet), 0) AS cpu_ns_per_packet,
       round(median(irq_per_s), 0) AS irq_per_s
FROM trials GROUP BY scenario, policy ORDER BY scenario, policy
"""


def check_results(results_dir: Path):
    """Check a results directory (``vcoal.results.check_store``): rows for files a killed driver
    never summarised, a damaged summary rebuilt, damaged trial files named; warnings on stderr."""
    from vcoal.results import check_store

    try:
        check = check_store(results_dir)
    except OSError as exc:  # e.g. a directory that cannot be listed
        fail(f"{results_dir}: cannot read: {exc.strerror}")
    for line in check.warnings():
        warn(line)
    if check.read_only:
        warn(f"{results_dir}: read-only: the summary was not updated")
    return check


def _open(results_dir: Path) -> None:
    from vcoal.results import is_results_dir

    if not is_results_dir(results_dir):
        fail(f"{results_dir}: not a vcoal results directory (no trials/, failed/ or summary/)")
    check_results(results_dir)


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.6g}"
    return str(v)


def print_table(cols: list[str], rows: list[tuple], title: str | None = None) -> None:
    """A rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    t = Table(title=title)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(_cell(v) for v in r))
    console.print(t)


@results_app.command("query", epilog='Example: vcoal results query vcoal-results/demo "SELECT policy, avg(p99_us_max) FROM trials GROUP BY policy"')
def query_cmd(
    results_dir: Path = typer.Argument(..., help="results directory written by vcoal sweep"),
    sql: str = typer.Argument(..., help="SQL over the views trials, tenants, trials_all, tenants_all"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (one object per line)"),
) -> None:
    """Run SQL (DuckDB) over the summary tables of a results directory."""
    import duckdb

    from vcoal.results import query

    if fmt not in ("table", "csv", "json"):
        fail(f"--format {fmt!r}: accepted: table, csv, json")
    if not sql.strip():
        fail("SQL: empty; give a query such as \"SELECT policy, count(*) FROM trials GROUP BY policy\"")
    _open(results_dir)
    try:
        cols, rows = query(results_dir, sql)
    except (duckdb.Error, ValueError) as exc:  # PermissionException: the query is read-only
        fail(f"query: {str(exc).splitlines()[0]}")
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    elif fmt == "json":
        for r in rows:
            typer.echo(strict_json(dict(zip(cols, r, strict=True))))
    else:
        print_table(cols, rows)


@results_app.command("show", epilog="Example: vcoal results show vcoal-results/demo")
def show_cmd(results_dir: Path = typer.Argument(..., help="results directory written by vcoal sweep")) -> None:
    """Summary per scenario × policy: trials, failures, SLO attainment, median p99, CPU, interrupts."""
    from vcoal.results import query, read_sweep_meta

    _open(results_dir)
    meta = read_sweep_meta(results_dir)
    cols, rows = query(results_dir, OVERVIEW_SQL)
    print_table(cols, rows, title=f"{meta.get('name', results_dir)}: {sum(r[2] for r in rows)} trials")
    _, failed = query(results_dir, "SELECT label, error FROM trials WHERE status = 'failed' ORDER BY label LIMIT 10")
    for label, error in failed:
        typer.echo(f"failed: {label}: {error}")


def register(app: typer.Typer) -> None:
    """Add the ``results`` command group to the app."""
    app.add_typer(results_app, name="results")
