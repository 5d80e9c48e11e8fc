"""``vcoal calibrate measure|fit|report``: fit the simulator's cost model to testbed measurements."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from vcoal.cli.main import fail, output_path
from vcoal.results.files import write_atomic

app = typer.Typer(
    help="Calibrate the simulator's cost model against the real-kernel testbed (measure as root; fit/report anywhere).",
    no_args_is_help=True,
)

EPILOG = """Examples:

  sudo vcoal calibrate measure calib.toml --reps 3 -o grid.json

  vcoal calibrate fit grid.json -o cost.toml

  vcoal calibrate report grid.json --cost cost.toml

  vcoal sim SPEC.toml --cost cost.toml

  vcoal calibrate rank run2.json --spec examples/testbed/mixed-2core.toml --fit-on run1.json
"""


def _read_json(path: Path, load, *args):
    """``load(doc, source, *args)`` of the JSON document at ``path``; one error line on any problem."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}")
    except json.JSONDecodeError as exc:
        fail(f"{path}: not valid JSON: {exc}")
    try:
        return load(doc, str(path), *args)
    except ValueError as exc:
        fail(str(exc))


def _load_grid(path: Path):
    from vcoal.experiments.calibrate import load_grid

    return _read_json(path, load_grid)


@app.command("measure", epilog=EPILOG)
def measure_cmd(
    spec_path: Path = typer.Argument(..., help="scenario TOML: one guest with a request_response tenant (outstanding 1)"),
    out: Path = typer.Option(..., "--out", "-o", help="grid JSON to write"),
    reps: int = typer.Option(3, "--reps", help="interleaved repetitions (each runs every point once, shuffled)"),
    duration: float = typer.Option(2.0, "--duration", help="measured seconds per run"),
    point: list[str] = typer.Option([], "--point", help="grid point: none | LAYER:TIMEOUT_US/DEFER[,...] | all3:T/D (repeatable; default: the standard grid)"),
    seed: int = typer.Option(1, "--seed", help="shuffle seed"),
    wait_quiet: float = typer.Option(0.0, "--wait-quiet", help="before each run wait up to this many seconds until no other sockperf/iperf3 runs on the host (NET_RX is host-wide)"),
) -> None:
    """Run a grid of NAPI deferral settings on the testbed (needs root) and write the measurements."""
    from vcoal.experiments import calibrate as cal
    from vcoal.spec import load_scenario

    output_path(out, "--out")
    try:
        spec = load_scenario(spec_path)
        cal.check_spec(spec)
        points = [cal.parse_point(p) for p in point] if point else cal.default_grid()
        if not 1 <= reps <= 100:
            raise ValueError(f"--reps {reps}: must be in [1, 100]")
        if not 1.0 <= duration <= 600:
            raise ValueError(f"--duration {duration}: must be in [1, 600] seconds")
        if not 0 <= wait_quiet <= 3600:
            raise ValueError(f"--wait-quiet {wait_quiet}: must be in [0, 3600] seconds")
    except ValueError as exc:
        fail(str(exc))
    if os.geteuid() != 0:
        fail("calibrate measure needs root (the testbed: network namespaces, veth, NAPI knobs)")
    from vcoal.experiments.calibrate_measure import measure

    doc = measure(spec, points, reps=reps, measure_s=duration, seed=seed, log=_progress, wait_quiet_s=wait_quiet)
    write_atomic(out, json.dumps(doc, indent=1) + "\n")
    typer.echo(f"grid: {len(points)} points x {reps} reps -> {out}")


@app.command("fit", epilog=EPILOG)
def fit_cmd(
    grid_path: Path = typer.Argument(..., help="grid JSON from 'vcoal calibrate measure'"),
    out: Path = typer.Option(..., "--out", "-o", help="cost-model TOML to write"),
    params: str = typer.Option("nic_pkt_us,stack_pkt_us,ctx_switch_us,poll_us", "--params", help="comma-separated cost parameters to fit"),
    w_net_rx: float = typer.Option(1.0, "--net-rx-weight", help="weight of the NET_RX error against the latency error"),
    rounds: int = typer.Option(6, "--rounds", help="coordinate-search rounds (step x4, x2, x1.4, x1.2, x1.1, x1.05)"),
) -> None:
    """Fit cost parameters to a measured grid (no root) and write a cost-model file."""
    from vcoal.experiments import calibrate as cal

    output_path(out, "--out")
    grid = _load_grid(grid_path)
    names = [p.strip() for p in params.split(",") if p.strip()]
    try:
        if not names:
            raise ValueError("--params: name at least one cost parameter")
        if not 0 <= w_net_rx <= 100:
            raise ValueError(f"--net-rx-weight {w_net_rx}: must be in [0, 100]")
        if not 1 <= rounds <= 20:
            raise ValueError(f"--rounds {rounds}: must be in [1, 20]")
        res = cal.fit(grid, names, w_net_rx=w_net_rx, rounds=rounds, log=_progress)
    except ValueError as exc:
        fail(str(exc))
    write_atomic(out, cal.cost_toml(res, grid, str(grid_path)))
    typer.echo(cal.fidelity_table(res.rows))
    typer.echo("fitted: " + ", ".join(f"{k} = {v:.3g} µs" for k, v in res.cost.items())
               + f"; NET_RX/s = {res.mapping[0]:.3g} x interrupts/s + {res.mapping[1]:.3g} x polls/s"
               + f" ({res.evaluations} grid simulations) -> {out}")


@app.command("report", epilog=EPILOG)
def report_cmd(
    grid_path: Path = typer.Argument(..., help="grid JSON from 'vcoal calibrate measure'"),
    cost: Path = typer.Option(None, "--cost", help="cost-model TOML (default: the grid spec's own \\[cost])"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
) -> None:
    """Fidelity per grid point: simulated vs measured median RTT and NET_RX/s, relative errors."""
    from vcoal.experiments import calibrate as cal

    grid = _load_grid(grid_path)
    try:
        table, cal_map = cal.read_cost_model(cost) if cost is not None else ({}, None)
        rows, mapping = cal.fidelity(grid, table, cal_map)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        doc = {"cost": table, "net_rx_map": list(mapping), "points": [
            {"name": r.name, "measured_p50_us": r.meas_p50, "simulated_p50_us": r.sim_p50, "err_p50": r.err_p50,
             "measured_p99_us": r.meas_p99, "simulated_p99_us": r.sim_p99,
             "measured_net_rx_per_s": r.meas_net_rx, "simulated_net_rx_per_s": r.sim_net_rx, "err_net_rx": r.err_net_rx}
            for r in rows]}
        typer.echo(json.dumps(doc))
        return
    typer.echo(cal.fidelity_table(rows))
    if cal.TIMER_EXTRA in table:
        typer.echo(f"note: simulated with every active gro_flush_timeout + {table[cal.TIMER_EXTRA]:.3g} µs "
                   f"(calibration.{cal.TIMER_EXTRA}; the simulator itself does not read it)")
    src = "from the cost file" if cost is not None and cal_map is not None else "fitted here"
    typer.echo(f"NET_RX/s = {mapping[0]:.3g} x interrupts/s + {mapping[1]:.3g} x polls/s ({src})")
    sys.stdout.flush()


def _load_points(path: Path, scenario: str | None):
    from vcoal.experiments.calibrate_rank import load_points

    return _read_json(path, load_points, scenario)


@app.command("rank", epilog=EPILOG)
def rank_cmd(
    run_path: Path = typer.Argument(..., help="JSON of 'vcoal testbed compare ... --oracle --json FILE': the run to predict"),
    spec_path: Path = typer.Option(..., "--spec", help="the scenario TOML the run measured (give it host.profile = \"veth\")"),
    fit_on: Path = typer.Option(None, "--fit-on", help="another run's JSON: fit the scale k (NET_RX per simulated softirq run) there; default k = 1"),
    cost: Path = typer.Option(None, "--cost", help="cost-model TOML whose \\[cost] keys override the scenario's"),
    scenario: str = typer.Option(None, "--scenario", help="the scenario's rows to use when a file holds several"),
    duration: float = typer.Option(0.5, "--duration", help="simulated seconds per point"),
    json_out: Path = typer.Option(None, "--json", help="write the figures and rows as JSON"),
) -> None:
    """Does the simulator rank static settings like the kernel? Spearman and ±30 % per point."""
    from vcoal.experiments import calibrate_rank as cr
    from vcoal.spec import load_scenario

    if json_out is not None:
        output_path(json_out, "--json")
    try:
        if not 0.01 <= duration <= 60:
            raise ValueError(f"--duration {duration}: must be in [0.01, 60] simulated seconds")
        spec = load_scenario(spec_path)
        if cost is not None:
            from vcoal.spec.scenario import read_cost_file

            spec = spec.with_overrides({f"cost.{k}": v for k, v in read_cost_file(cost, "--cost").items()})
    except ValueError as exc:
        fail(str(exc))
    points = _load_points(run_path, scenario)
    fit_points = _load_points(fit_on, scenario) if fit_on is not None else None

    def progress(i: int, n: int) -> None:
        typer.echo(f"simulated {i}/{n}", err=True)

    scale = 1.0
    try:
        if fit_points is not None:
            scale = cr.fit_scale(cr.simulate_points(spec, fit_points, duration, progress))
            typer.echo(f"k = {scale:.4g} NET_RX per simulated softirq run, fitted on {fit_on}", err=True)
        f = cr.fidelity(cr.simulate_points(spec, points, duration, progress), scale)
    except ValueError as exc:
        fail(f"{spec_path}: {exc}")
    typer.echo(cr.fidelity_table(f))
    if json_out is not None:
        doc = {**cr.to_json(f), "run": str(run_path), "fit_on": str(fit_on) if fit_on else None, "spec": str(spec_path)}
        write_atomic(json_out, json.dumps(doc, indent=1) + "\n")


def register(root: typer.Typer) -> None:
    """Add the command group to the app."""
    root.add_typer(app, name="calibrate")


def _progress(msg: str) -> None:
    typer.echo(msg, err=True)
