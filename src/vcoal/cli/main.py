"""The ``vcoal`` command line: argument parsing and calls into the library, no logic.

Sub-commands register here; heavy modules are imported inside each command so ``vcoal --help``
stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="vcoal",
    help="QoS-aware interrupt coalescing for virtualized cloud networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print one error line on stderr and exit."""
    typer.echo(f"vcoal: error: {message}", err=True)
    raise typer.Exit(code)


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as a shell reports it."""


def interrupted(kept: str) -> None:
    """After Ctrl-C: one line on stderr saying what was kept, no traceback; exit 130."""
    typer.echo(f"vcoal: interrupted: {kept}", err=True)
    raise typer.Exit(INTERRUPTED)


def output_path(path: Path | None, option: str, *, directory: bool = False) -> Path | None:
    """Check an output target before any work runs (``vcoal.results.outpath``); one error line
    and exit 2 when it cannot be written safely. ``None`` (option not given) passes through."""
    if path is None:
        return None
    from vcoal.results.outpath import OutputPathError, check_output_path

    try:
        return check_output_path(path, option, directory=directory)
    except OutputPathError as exc:
        fail(str(exc))
    return None  # unreachable: fail() exits


def warn(message: str) -> None:
    """Print one warning line on stderr."""
    typer.echo(f"vcoal: warning: {message}", err=True)


@app.command("policies", epilog="Example: vcoal policies")
def policies_cmd() -> None:
    """List every registered policy with its parameters, defaults and a one-line description."""
    import dataclasses

    from vcoal.policies import POLICIES

    for name, cls in sorted(POLICIES.items()):
        typer.echo(f"{name:12s} {cls.description}")
        for f in dataclasses.fields(cls.Params):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            typer.echo(f"{'':12s}   {f.name} = {default!r}")


def _register() -> None:
    from vcoal.cli import sim_cmd

    sim_cmd.register(app)
    __import__("vcoal.cli.agent_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.testbed_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.sweep_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.results_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.report_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.demo_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.compare_cmd", fromlist=["register"]).register(app)
    __import__("vcoal.cli.calibrate_cmd", fromlist=["register"]).register(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("vcoal: interrupted", err=True)
        sys.exit(130)
