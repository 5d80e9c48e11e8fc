"""The agent's journal is the source of truth: validated on load, one owner, private, never lost."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcoal.agent.config import parse_config
from vcoal.agent.daemon import Agent, AgentError, restore_leftovers
from vcoal.linux.journal import FORMAT_VERSION, Journal, JournalEntry
from vcoal.linux.knobs import restore_journal
from vct_netns import root

VCOAL = str(Path(sys.executable).with_name("vcoal"))
GOOD = {"netns": None, "ifname": "vct0", "knob": "gro_flush_timeout_ns", "backend": "sysfs", "original": 0,
        "per_napi": {}}


def _write(path: Path, **changes) -> Path:
    entry = {**GOOD, **changes}
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, "pid": 1, "entries": {"k": entry}}))
    return path


@pytest.mark.parametrize(
    "change, field",
    [
        ({"ifname": "../../x"}, "ifname"),
        ({"ifname": ".."}, "ifname"),
        ({"ifname": "a b"}, "ifname"),
        ({"ifname": "x" * 16}, "ifname"),
        ({"ifname": ""}, "ifname"),
        ({"knob": "mtu"}, "knob"),
        ({"original": -1}, "original"),
        ({"original": 2**40}, "original"),
        ({"original": "0"}, "original"),
        ({"per_napi": {"1": 10**12}}, "per_napi"),
        ({"per_napi": {"../1": 0}}, "per_napi"),
        ({"netns": "../../proc/1/ns/net"}, "netns"),
        ({"netns": "a b"}, "netns"),
        ({"backend": "shell"}, "backend"),
        ({"netns_inode": -5}, "netns_inode"),
        ({"extra": 1}, "not an entry"),
    ],
)
def test_a_tampered_journal_is_refused_with_one_line(tmp_path, change, field):
    path = _write(tmp_path / "j.json", **change)
    with pytest.raises(ValueError) as err:
        Journal(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and field in text
    assert path.exists()  # refused, not deleted


def test_a_tampered_interface_name_is_never_followed(tmp_path):
    target = tmp_path / "outside"
    target.mkdir()
    path = _write(tmp_path / "j.json", ifname=f"../../../../../..{target}")
    with pytest.raises(ValueError, match="not an interface name"):
        restore_journal(path)
    assert list(target.iterdir()) == []  # no gro_flush_timeout file created outside /sys
    assert path.exists()


def test_format_1_journals_are_still_read(tmp_path):
    path = tmp_path / "j.json"
    path.write_text(json.dumps({"format_version": 1, "pid": 1, "entries": {"|vct0|gro_flush_timeout_ns": GOOD}}))
    [e] = Journal(path).entries.values()
    assert (e.netns, e.netns_inode, e.ifname) == (None, 0, "vct0")


def test_one_journal_one_owner(tmp_path):
    path = tmp_path / "j.json"
    first = Journal(path)
    first.record([JournalEntry(None, "vct0", "gro_flush_timeout_ns", "sysfs", 7)])
    second = Journal(path)  # another agent, on the same journal
    with pytest.raises(OSError) as err:
        second.record([JournalEntry(None, "vct1", "gro_flush_timeout_ns", "sysfs", 50_000)])
    assert str(err.value).startswith(f"journal {path} is in use by agent pid {os.getpid()} ")
    assert "\n" not in str(err.value)
    first.record([JournalEntry(None, "vct2", "gro_flush_timeout_ns", "sysfs", 3)])  # the owner goes on
    assert {e.ifname: e.original for e in Journal(path).entries.values()} == {"vct0": 7, "vct2": 3}
    first.release()
    second.record([JournalEntry(None, "vct1", "gro_flush_timeout_ns", "sysfs", 1)])  # the owner is gone: fine
    assert {e.ifname for e in Journal(path).entries.values()} == {"vct0", "vct1", "vct2"}


def test_journal_directory_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        Journal(tmp_path / "a" / "b" / "j.json").record([JournalEntry(None, "vct0", "gro_flush_timeout_ns", "sysfs", 1)])
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


_HOLD = """
import sys
from vcoal.linux.journal import Journal, JournalEntry
j = Journal(sys.argv[1])
j.record([JournalEntry(None, "vct0", "gro_flush_timeout_ns", "sysfs", 0)])
print("locked", flush=True)
sys.stdin.read()
"""


@root
def test_restore_refuses_a_journal_whose_owner_runs_naming_its_pid(tmp_path):
    path = tmp_path / "j.json"
    owner = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline() == "locked\n"
        out = subprocess.run([VCOAL, "agent", "restore", "--journal", str(path)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 1
        assert out.stderr.strip().count("\n") == 0 and f"pid {owner.pid}" in out.stderr
        assert path.exists()
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)


def _agent_config(tmp_path: Path, **top) -> object:
    return parse_config({
        "journal_path": str(tmp_path / "state" / "journal.json"),
        "status_path": str(tmp_path / "status.json"),
        "window_ms": 1,
        "metrics": {"enabled": False},
        "interfaces": [{"match": ["vct-none-*"], "layer": "backend"}],  # matches nothing: applies nothing
        **top,
    })


def _run_one_window(agent: Agent) -> None:
    agent.user_on_window = lambda report: agent.stop.set()
    agent.run()


def test_an_unwritable_journal_path_is_one_line_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr("vcoal.agent.daemon.has_cap_net_admin", lambda: True)
    (tmp_path / "file").write_text("")
    cfg = _agent_config(tmp_path, journal_path=str(tmp_path / "file" / "journal.json"))
    agent = Agent(cfg)
    agent.user_on_window = lambda report: agent.stop.set()
    with pytest.raises(AgentError) as err:
        agent.run()
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"journal_path {tmp_path}/file/journal.json: ")
    assert agent.knobs is None  # stopped before any knob layer existed


def test_entries_of_a_namespace_that_no_longer_exists_are_dropped(tmp_path):
    path = tmp_path / "j.json"
    # recorded in a namespace (inode 1) that no process, mount or name holds any more
    writer = Journal(path)
    writer.record([JournalEntry("vct-gone0", "vct0", "gro_flush_timeout_ns", "sysfs", 0, {}, 1)])
    writer.release()  # (killed)
    assert restore_leftovers(path) == 0  # gone with its namespace: dropped with a warning
    assert not path.exists()


def test_status_after_stop_says_stopped_not_knobs_in_force(tmp_path, monkeypatch):
    from vcoal.cli.agent_cmd import agent_app

    monkeypatch.setattr("vcoal.agent.daemon.has_cap_net_admin", lambda: True)
    cfg = _agent_config(tmp_path)
    agent = Agent(cfg)
    _run_one_window(agent)
    out = CliRunner().invoke(agent_app, ["status", "--status-file", str(tmp_path / "status.json")])
    text = " ".join(out.output.split())  # (rich wraps lines)
    assert out.exit_code == 0 and f"agent pid {os.getpid()} stopped" in text
    assert "no knobs in force" in text and "knobs in force" not in text.replace("no knobs in force", "")
    assert "knobs last set" not in text  # no table of knobs once they are restored
    assert "policy costs: built-in defaults" in text


def test_status_of_a_killed_agent_says_not_running(tmp_path):
    from vcoal.cli.agent_cmd import agent_app

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = {"pid": dead.pid, "running": True, "dry_run": False, "policy": "static", "windows": 3, "overruns": 0,
              "updated_unix_s": 0, "interfaces": {"vif1.0": {"site": "backend:vif1.0", "knobs": {"napi_defer_hard_irqs": 2},
                                                             "backed_off_s": 0, "note": ""}}}
    (tmp_path / "status.json").write_text(json.dumps(status))
    out = CliRunner().invoke(agent_app, ["status", "--status-file", str(tmp_path / "status.json")])
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and f"agent pid {dead.pid} not running" in text
    assert "vcoal agent restore" in text and "knobs in force" not in text
