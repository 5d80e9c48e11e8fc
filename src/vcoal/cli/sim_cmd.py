"""``vcoal sim``: run one scenario in the simulator (filled in with the simulator)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
