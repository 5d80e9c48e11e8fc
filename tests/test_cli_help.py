"""Every command's ``--help`` renders: nothing a help text says in square brackets (``[cost]``, a TOML
table) is eaten as rich markup, and every command has a help text."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from vcoal.cli.main import _register, app

_register()
runner = CliRunner()


def _commands(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():  # a group (typer vendors its own click)
        yield from _commands(sub, (*path, name))


def test_help_keeps_bracketed_words():
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root):
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
        assert out.exit_code == 0, (path, out.output)
        if path:
            assert (cmd.help or "").strip(), f"vcoal {' '.join(path)} has no help text"
        texts = [cmd.help, cmd.epilog, *(getattr(p, "help", None) for p in cmd.params)]
        for text in texts:
            for word in re.findall(r"\\?\[[a-z_.]+\]", text or ""):
                assert word.lstrip("\\") in out.output, (path, word)
                checked += 1
    assert checked >= 3  # sim --cost (twice) and calibrate report --cost
