"""``vcoal agent run|restore|status``: the coalescing agent for real Linux hosts."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import typer

agent_app = typer.Typer(
    help="Run a coalescing policy on this host's interfaces, safely (see docs/agent.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_CONFIG = "/etc/vcoal/agent.toml"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"vcoal: error: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path):
    from vcoal.agent.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        _fail(str(exc))


@agent_app.command("run", epilog="Example: vcoal agent run --config examples/agent/kvm-guest.toml --dry-run")
def run_cmd(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", "-c", help="agent TOML config"),
    dry_run: bool = typer.Option(False, "--dry-run", help="observe and decide, apply nothing; print decisions"),
    log_level: str = typer.Option("", "--log-level", help="debug|info|warning|error (default: config)"),
) -> None:
    """Run the agent until SIGTERM/SIGINT; every changed knob is restored on exit."""
    cfg = _load(config)
    logging.basicConfig(
        level=(log_level or cfg.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from vcoal.agent.daemon import Agent, AgentError
    from vcoal.linux.knobs import InterfaceGone

    on_window = _print_decision if dry_run else None
    try:
        Agent(cfg, dry_run=dry_run, on_window=on_window, config_path=str(config)).run()
    except AgentError as exc:
        _fail(str(exc), 1)
    except PermissionError as exc:
        _fail(f"{exc} (knobs restored where possible)", 1)
    except (InterfaceGone, OSError, ValueError) as exc:
        _fail(f"{exc} (knobs restored where possible; the log has details)", 1)


def _print_decision(report) -> None:
    applied = {a.site: a for a in report.applied}
    for rec in report.records:
        a = applied.get(rec.site)
        what = "keep" if not rec.changed else "would set"
        params = " ".join(f"{k}={v}" for k, v in rec.params.to_dict().items() if k not in ("timer", "napi_budget"))
        note = f" [{a.skipped}]" if a is not None and a.skipped and a.skipped != "dry run" else ""
        typer.echo(f"window {rec.window} {rec.site}: {what} {params}{note}: {rec.reason}")


@agent_app.command("restore", epilog="Example: vcoal agent restore --config /etc/vcoal/agent.toml")
def restore_cmd(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", "-c", help="agent TOML config (for its journal path)"),
    journal: Path | None = typer.Option(None, "--journal", help="journal file (overrides the config)"),
) -> None:
    """Restore every knob recorded in the journal (after a crash or kill -9) and delete the journal."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    path = journal or Path(_load(config).journal_path)
    if not path.exists():
        typer.echo(f"nothing to restore: no journal at {path}")
        return
    from vcoal.agent.daemon import AgentError, restore_leftovers
    from vcoal.linux.hostinfo import has_cap_net_admin

    if not has_cap_net_admin():
        _fail("restoring knobs needs CAP_NET_ADMIN (run as root)", 1)
    try:
        n = restore_leftovers(path)
    except (AgentError, ValueError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"restored {n} knob(s) from {path}")


@agent_app.command("status", epilog="Example: vcoal agent status --config /etc/vcoal/agent.toml")
def status_cmd(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", "-c", help="agent TOML config (for its status path)"),
    status_file: Path | None = typer.Option(None, "--status-file", help="status file (overrides the config)"),
    as_json: bool = typer.Option(False, "--json", help="print the raw status JSON"),
) -> None:
    """Show the interfaces under control, the parameters in force and the last decisions."""
    path = status_file or Path(_load(config).status_path)
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _fail(f"no agent status at {path} ({exc.__class__.__name__}); is the agent running?", 1)
    if as_json:
        typer.echo(json.dumps(status, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    from vcoal.agent.daemon import describe_state

    age_s = time.time() - status.get("updated_unix_s", 0)
    state = describe_state(status)
    console = Console()
    console.print(
        f"agent pid {status['pid']} {state}{' (dry run)' if status.get('dry_run') else ''}, policy "
        f"{status['policy']}, {status['windows']} windows, {status['overruns']} overruns, updated {age_s:.1f} s ago"
    )
    if "costs" in status:
        console.print(f"policy costs: {status['costs']}, host profile {status.get('host_profile', 'xen')}")
    if state == "stopped":
        left = status.get("journal_entries", 0)
        console.print(f"no knobs in force: restored {status.get('restored', 0)} knob(s) at exit"
                      + (f"; {left} left in the journal: run `vcoal agent restore`" if left else ""))
    elif state == "not running":
        console.print("the agent died without restoring: the knobs below may still be set; run `vcoal agent restore`")
    if state != "stopped":
        in_force = "knobs in force" if state == "running" else "knobs last set"
        table = Table("interface", "site", "driver", in_force, "backed off (s)", "note")
        for name, i in status.get("interfaces", {}).items():
            knobs = " ".join(f"{k}={v}" for k, v in i["knobs"].items())
            table.add_row(name, i["site"], i.get("driver", ""), knobs, str(i["backed_off_s"] or ""), i.get("note", ""))
        console.print(table)
    decisions = Table("window", "site", "changed", "applied", "reason")
    for d in status.get("last_decisions", [])[-10:]:
        decisions.add_row(str(d["window"]), d["site"], str(d["changed"]), d.get("applied", ""), d["reason"])
    console.print(decisions)


def register(app: typer.Typer) -> None:
    """Add ``vcoal agent`` to the app."""
    app.add_typer(agent_app, name="agent")
