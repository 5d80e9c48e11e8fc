"""``vcoal sim``: run one scenario in the simulator and print a summary (or JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from vcoal.cli.jsonout import strict_json
from vcoal.cli.main import fail, interrupted, output_path, warn

EPILOG = """Examples:

  vcoal sim examples/reference.toml

  vcoal sim examples/reference.toml --policy static --set nic.rx_usecs=64 --set nic.rx_frames=64

  vcoal sim examples/validation/base.toml --duration 2 --seed 7 --json > base.json

  vcoal sim examples/reference.toml --cost calibrated.toml
"""


def parse_set(items: list[str]) -> dict[str, dict]:
    """``layer.key=value`` items -> ``{layer: {key: value}}`` for the static policy."""
    out: dict[str, dict] = {}
    for item in items:
        lhs, sep, rhs = item.partition("=")
        layer, dot, key = lhs.partition(".")
        if not sep or not dot or layer not in ("nic", "backend", "frontend"):
            raise ValueError(f"--set {item!r}: expected LAYER.KEY=VALUE with LAYER in nic, backend, frontend")
        try:
            value: object = int(rhs)
        except ValueError:
            value = rhs
        out.setdefault(layer, {})[key] = value
    return out


def sim(
    spec_path: Path = typer.Argument(..., help="scenario TOML file", exists=False),
    policy: str = typer.Option(None, "--policy", "-p", help="registered policy (see 'vcoal policies')"),
    params_json: str = typer.Option(None, "--params", help="policy parameters as a JSON object"),
    set_: list[str] = typer.Option([], "--set", help="static coalescing LAYER.KEY=VALUE (implies --policy static)"),
    duration: float = typer.Option(None, "--duration", help="simulated seconds (overrides the spec)"),
    seed: int = typer.Option(None, "--seed", help="root seed (overrides the spec)"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as one JSON document"),
    out: Path = typer.Option(None, "--out", "-o", help="also write the versioned result file (as sweeps do)"),
    cost: Path = typer.Option(None, "--cost", help="cost-model TOML (\\[cost] table, e.g. from 'vcoal calibrate fit'); its keys override the scenario's \\[cost]"),
    force: bool = typer.Option(False, "--force", help="run even when the estimated simulator events exceed the budget"),
) -> None:
    """Simulate one scenario and print per-tenant latency vs SLO, per-layer interrupts, CPU use."""
    from vcoal.policies import make_policy
    from vcoal.sim import run_scenario
    from vcoal.sim.budget import estimate_events, over_budget
    from vcoal.spec import link_warning, load_scenario, placement_line

    output_path(out, "--out")
    try:
        spec = load_scenario(spec_path)
        if cost is not None:
            from vcoal.spec.scenario import read_cost_file

            table = read_cost_file(cost, "--cost")
            spec = spec.with_overrides({f"cost.{k}": v for k, v in table.items()})
        params = json.loads(params_json) if params_json else {}
        if not isinstance(params, dict):
            raise ValueError("--params: expected a JSON object")
        if set_:
            if policy not in (None, "static"):
                raise ValueError("--set applies to the static policy; drop --policy or use --policy static")
            policy = "static"
            for layer, table in parse_set(set_).items():
                params.setdefault(layer, {}).update(table)
        pol = make_policy(policy, params) if policy else None
        if duration is not None and not 0 < duration <= 3600:
            raise ValueError(f"--duration {duration}: must be in (0, 3600] seconds")
        if seed is not None and seed < 0:
            raise ValueError(f"--seed {seed}: must be >= 0")
        effective = spec if duration is None else spec.model_copy(update={"duration_s": duration})
        refusal = None if force else over_budget(effective)
        if refusal is not None:
            raise ValueError(refusal)
    except json.JSONDecodeError as exc:
        fail(f"--params: not valid JSON: {exc}")
    except ValueError as exc:
        fail(str(exc))
    if (note := link_warning(spec)) is not None:
        warn(note)

    from vcoal.experiments.runner import document_for
    from vcoal.experiments.sweep import expand, single_trial
    from vcoal.experiments.worker import cold_engine_note, execute_trial
    from vcoal.model.result import TrialResult
    from vcoal.results.files import write_trial

    if (note := cold_engine_note()) is not None:  # before anything imports the engine, which compiles it
        warn(note)

    # a single run is a sweep of one: same expansion, run key and trial execution as `vcoal sweep`
    trial = expand(single_trial(spec, pol.name if pol else "static", params, seed, duration))[0]
    label = f"{spec.name} (~{estimate_events(effective):.1e} events)"
    progress_cb, finish, done = _progress(label, quiet=as_json and not sys.stderr.isatty())

    def trial_fn(s, p, seed=None, duration_s=None):
        return run_scenario(s, p, seed=seed, duration_s=duration_s, progress=progress_cb)

    try:
        outcome = execute_trial(trial.payload(), trial_fn=trial_fn)
    except KeyboardInterrupt:
        finish()
        interrupted(f"simulation stopped at {done():.0%} of simulated time; nothing stored"
                    + (f" ({out} not written)" if out is not None else ""))
    finally:
        finish()
    if outcome["status"] != "ok":
        fail(f"{outcome['error']['type']}: {outcome['error']['message']}", code=1)
    result = TrialResult.from_dict(outcome["result"])
    doc = outcome["result"]
    if out is not None:
        write_trial(out, document_for(trial, outcome, "local"))
    if as_json:
        typer.echo(strict_json(doc))
        return
    from vcoal.cli.tables import print_summary

    print_summary(result)
    typer.echo(placement_line(spec))
    if out is not None:
        typer.echo(f"result file: {out}")


def _progress(name: str, quiet: bool):
    """A rich progress bar on stderr that appears only for runs longer than a second.

    Returns ``(update, finish, done)``: ``done()`` is the last fraction reported."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    state = {"bar": None, "task": None, "t0": time.monotonic(), "done": 0.0}
    console = Console(stderr=True)

    def update(fraction: float) -> None:
        state["done"] = fraction
        if quiet:
            return
        if state["bar"] is None:
            if time.monotonic() - state["t0"] < 1.0:
                return
            bar = Progress(TextColumn(f"simulating {name}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                           TimeRemainingColumn(), console=console, transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task(name, total=1.0)
        state["bar"].update(state["task"], completed=fraction)

    def finish() -> None:
        if state["bar"] is not None:
            state["bar"].stop()
            state["bar"] = None

    return update, finish, lambda: state["done"]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("sim", epilog=EPILOG)(sim)
