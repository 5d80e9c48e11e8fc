"""``vcoal testbed`` command line: help without root, up/status/down as root."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcoal.cli.main import _register, app
from vcoal.linux import netns, topology

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "testbed" / "mixed.toml"
_register()
runner = CliRunner()


def test_help_lists_the_subcommands():
    out = runner.invoke(app, ["testbed", "--help"])
    assert out.exit_code == 0
    for cmd in ("up", "down", "status", "run"):
        assert cmd in out.output


def _path_with(tmp_path: Path, monkeypatch, tools: tuple[str, ...]) -> None:
    """PATH = a directory holding only stand-ins for ``tools`` (never run: the checks only look)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        stub = bin_dir / tool
        stub.write_text("#!/bin/sh\nexit 1\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.parametrize("present, message", [
    ((), "the testbed needs sockperf (tenants lat), iperf3 (tenants bulk), not installed: apt-get install sockperf iperf3"),
    (("sockperf",), "the testbed needs iperf3 (tenants bulk), not installed: apt-get install iperf3"),
])
@pytest.mark.parametrize("cmd", ["up", "run"])
def test_missing_load_tools_refused_in_one_line_before_anything_is_built(tmp_path, monkeypatch, cmd, present, message):
    before = netns.list_namespaces()
    _path_with(tmp_path, monkeypatch, present)
    out = runner.invoke(app, ["testbed", cmd, str(EXAMPLE)])
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [f"vcoal: error: {message}"]
    assert netns.list_namespaces() == before


def test_run_rejects_bad_arguments_before_touching_anything(tmp_path, monkeypatch):
    _path_with(tmp_path, monkeypatch, ("sockperf", "iperf3"))
    if os.geteuid() != 0:
        out = runner.invoke(app, ["testbed", "run", str(EXAMPLE)])
        assert out.exit_code == 2 and "root" in out.output
        return
    out = runner.invoke(app, ["testbed", "run", str(EXAMPLE), "--policy", "nope"])
    assert out.exit_code == 2 and "unknown" in out.output
    out = runner.invoke(app, ["testbed", "run", str(EXAMPLE), "--window", "0.01"])
    assert out.exit_code == 2 and "--window" in out.output


def test_compare_in_a_log_prints_a_line_per_finished_trial(tmp_path, monkeypatch):
    """No terminal, no progress bar: a long comparison still says how far it is, one line a trial."""
    from vcoal.cli import testbed_cmd
    from vcoal.experiments import testbed_compare
    from vcoal.testbed import load

    def stand_in(specs, names, *, on_done, **_):
        for done in (1, 2):
            on_done(done, 2, f"{specs[0].name} off rep {done}")
        return testbed_compare.CompareOutcome(rows=[], oracle={}, trials=2, failed=0)

    monkeypatch.setattr(testbed_cmd, "_need_root", lambda: None)
    monkeypatch.setattr(load, "check_tools", lambda spec: None)
    monkeypatch.setattr(testbed_compare, "run_testbed_compare", stand_in)
    out = runner.invoke(app, ["testbed", "compare", str(EXAMPLE), "--policies", "off", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    lines = [x for x in out.output.splitlines() if x.startswith("testbed compare:")]
    assert len(lines) == 2 and lines[1].startswith("testbed compare: 2/2 done (") and "off rep 2" in lines[1], lines


@pytest.mark.root("sockperf", "iperf3")
def test_up_status_down_cli(tmp_path):
    tag = "c" + uuid.uuid4().hex[:8]
    try:
        spec = tmp_path / "s.toml"
        spec.write_text(EXAMPLE.read_text().replace("[nic]\nqueues = 1", "[nic]\nqueues = 1\ncoalesce = "
                        "{ napi_defer_hard_irqs = 2, gro_flush_timeout_ns = 20000 }"))
        out = runner.invoke(app, ["testbed", "up", str(spec), "--tag", tag])
        assert out.exit_code == 0, out.output
        assert "guest lat" in out.output and "198.18.1.1" in out.output
        assert f"knobs vcoal-{tag}-dom0/peth0: defer 2 gro_flush 20000 ns" in out.output
        out = runner.invoke(app, ["testbed", "status"])
        assert out.exit_code == 0 and f"vcoal-{tag}-dom0" in out.output and "xenbr0" in out.output
        assert "defer 2 gro_flush 20000 ns" in out.output
        out = runner.invoke(app, ["testbed", "down", "--tag", tag])
        assert out.exit_code == 0 and "removed 4 namespaces" in out.output
        assert netns.list_namespaces(f"{netns.PREFIX}{tag}-") == []  # `down` removed them, not the fixture
    finally:
        topology.down(tag)
