"""``vcoal compare``: every policy on every scenario of a suite, one table."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from vcoal.cli.jsonout import strict_json
from vcoal.cli.main import fail, interrupted, output_path, warn

EPILOG = """Examples:

  vcoal compare examples/suite

  vcoal compare examples/suite --policies qos,net_dim,intel_itr,off --oracle --duration 0.2

  vcoal compare examples/suite/03-mixed-pair.toml --json rows.json
"""


def compare_cmd(
    suite: Path = typer.Argument(..., help="directory of scenario TOML files (or one file)"),
    policies: str = typer.Option(None, "--policies", help="comma-separated policy names (default: all)"),
    oracle: bool = typer.Option(False, "--oracle", help="also search the cheapest static setting meeting every SLO (uniform grid, then per queue / tenant path)"),
    duration: float = typer.Option(None, "--duration", help="simulated seconds per trial (overrides the specs)"),
    seed: int = typer.Option(None, "--seed", help="root seed for every trial"),
    workers: int = typer.Option(2, "--workers", help="local processes", min=1, max=256),
    json_out: Path = typer.Option(None, "--json", help="write the rows as JSON to this file"),
    force: bool = typer.Option(False, "--force", help="run even when a scenario's estimated simulator events exceed the budget"),
) -> None:
    """Run each policy on each scenario and print p99 vs SLO, throughput, CPU per packet, irq/s."""
    from rich.console import Console
    from rich.progress import Progress

    from vcoal.experiments.compare import compare, failed_rows, suite_paths
    from vcoal.results.files import write_atomic
    from vcoal.sim.budget import over_budget
    from vcoal.spec import link_warning, load_scenario

    if duration is not None and not 0 < duration <= 3600:
        fail(f"--duration {duration}: must be in (0, 3600] seconds")
    if seed is not None and seed < 0:
        fail(f"--seed {seed}: must be >= 0")
    output_path(json_out, "--json")
    names = None
    if policies is not None:
        names = [p.strip() for p in policies.split(",") if p.strip()]
        if not names:
            fail(f"--policies {policies!r}: no policy name given; e.g. --policies qos,off (omit it for all)")
    try:
        specs = [load_scenario(p) for p in suite_paths(suite)]
    except ValueError as exc:
        fail(str(exc))
    for spec in specs:
        if (note := link_warning(spec)) is not None:
            warn(note)
        refusal = None if force else over_budget(spec if duration is None else spec.model_copy(update={"duration_s": duration}))
        if refusal is not None:
            fail(refusal)
    done: list[dict] = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("comparing", total=None)

        def on_done(row: dict) -> None:
            done.append(row)
            bar.advance(task)

        try:
            rows = compare(suite, names, oracle=oracle, seed=seed, duration_s=duration, workers=workers,
                           on_done=on_done)
        except ValueError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            bar.stop()
            kept = f"{len(done)} rows finished"
            if json_out and done:
                write_atomic(json_out, strict_json(done, indent=1))
                kept += f", written to {json_out}"
            else:
                kept += ", nothing stored"
            interrupted(kept)
    if json_out:
        write_atomic(json_out, strict_json(rows, indent=1))
    print_rows(rows)
    failed = failed_rows(rows)
    if failed:
        fail(f"{len(failed)} of {len(rows)} trials failed (first: {failed[0]['scenario']} / {failed[0]['policy']}: "
             f"{failed[0]['error']})", code=1)


def _f(x, d=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{d}f}"


def print_rows(rows: list[dict]) -> None:
    """The comparison table: one line per scenario x policy."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    t = Table(title="policies on the suite (p99 µs / SLO µs per tenant; rtt for request-response)")
    for col in ("scenario", "policy", "tenants p99/SLO", "all met", "Gb/s", "CPU µs/pkt", "irq/s"):
        t.add_column(col, justify="left" if col in ("scenario", "policy", "tenants p99/SLO") else "right")
    for r in rows:
        if r.get("error"):
            t.add_row(r["scenario"], r["policy"], f"[red]{r['error']}[/]", "-", "-", "-", "-")
            continue
        parts = []
        for x in r["tenants"]:
            mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: ""}[x["slo_met"]]
            bad = " [yellow]infeasible[/]" if x["name"] in r.get("infeasible", []) else ""
            parts.append(f"{x['name']} {_f(x['p99_us'], 0)}/{_f(x['slo_p99_us'], 0)}{mark}{bad}")
        gbps = sum(x["throughput_bps"] for x in r["tenants"]) / 1e9
        t.add_row(r["scenario"], r["policy"], " ".join(parts), "yes" if r["all_slos_met"] else "NO",
                  _f(gbps, 2), _f(r["cpu_ns_per_packet"] / 1e3, 2), _f(r["irq_per_s"], 0))
    console.print(t)
    for r in rows:
        if r.get("search"):
            console.print(f"{r['scenario']} / {r['policy']}: {r['search']}")


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("compare", epilog=EPILOG)(compare_cmd)
