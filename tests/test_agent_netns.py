"""The journal's namespaces, as real processes: restore from any namespace, one owner, metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from test_agent_root import ORIGINAL, SET, VCOAL, Agent, _config, _knobs, _until
from vct_netns import netns, root, sh


@root
def test_restore_from_the_root_namespace_after_kill9_under_ip_netns_exec(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vif1.0", "type", "veth", "peer", "name", "geth0")  # sysfs knobs
        cfg = _config(tmp_path)
        agent = Agent(ns, cfg, tmp_path / "a.log")
        try:
            _until(lambda: _knobs(ns, "vif1.0") == SET, what="knobs set")
        finally:
            agent.stop(signal.SIGKILL)
        entries = json.loads((tmp_path / "journal.json").read_text())["entries"].values()
        inode = os.stat(f"/run/netns/{ns}").st_ino
        assert {(e["netns"], e["netns_inode"]) for e in entries} == {(ns, inode)}  # named, though run as "own"
        out = sh(VCOAL, "agent", "restore", "-c", str(cfg))  # from the root namespace
        assert "restored 2 knob(s)" in out.stdout, out.stderr
        assert _knobs(ns, "vif1.0") == ORIGINAL and not (tmp_path / "journal.json").exists()


@root
def test_a_second_agent_on_the_same_journal_is_refused_naming_the_first(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vif1.0", "type", "veth", "peer", "name", "geth0")
        first = Agent(ns, _config(tmp_path, policy="off"), tmp_path / "a1.log")  # changes nothing: no journal yet
        try:
            _until(lambda: (tmp_path / "status.json").exists(), what="first agent running")
            second = subprocess.run(["ip", "netns", "exec", ns, VCOAL, "agent", "run", "-c", str(_config(tmp_path))],
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 1
            [error] = [line for line in second.stderr.splitlines() if "error" in line]
            assert error.startswith("vcoal: error: journal ") and f"agent pid {first.p.pid} " in error
            assert _knobs(ns, "vif1.0") == ORIGINAL  # the second one applied nothing
        finally:
            assert first.stop() == 0


@root
def test_a_journal_of_an_unreachable_namespace_is_kept(tmp_path):
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"])  # an unnamed namespace
    try:
        _until(lambda: os.stat(f"/proc/{holder.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino,
               what="namespace")
        inode = os.stat(f"/proc/{holder.pid}/ns/net").st_ino
        entry = {"netns": None, "netns_inode": inode, "ifname": "vct0", "knob": "gro_flush_timeout_ns",
                 "backend": "sysfs", "original": 0, "per_napi": {}}
        path = tmp_path / "journal.json"
        path.write_text(json.dumps({"format_version": 2, "pid": 1, "entries": {"e": entry}}))
        out = subprocess.run([VCOAL, "agent", "restore", "--journal", str(path)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 1
        [error] = [line for line in out.stderr.splitlines() if line.startswith("vcoal: error:")]
        assert f"net:[{inode}]" in error and "kept 1" in error and "ip netns attach" in error
        assert json.loads(path.read_text())["entries"]  # never deleted
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


@root
def test_metrics_off_loopback_warn_and_port_0_logs_the_port_bound(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vif1.0", "type", "veth", "peer", "name", "geth0")
        sh("ip", "-n", ns, "addr", "add", "198.18.7.1/24", "dev", "vif1.0")
        for dev in ("vif1.0", "geth0"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        cfg = _config(tmp_path, policy="off")
        cfg.write_text(cfg.read_text().replace("enabled = false\nport = 0", 'enabled = true\naddress = "198.18.7.1"\nport = 0'))
        agent = Agent(ns, cfg, tmp_path / "a.log")
        try:
            _until(lambda: "/metrics" in agent.text(), what="metrics served")
            text = agent.text()
            assert "WARNING" in text and "metrics on 198.18.7.1 are reachable from other hosts" in text
            port = int(re.search(r"metrics on http://198\.18\.7\.1:(\d+)/metrics", text).group(1))
            assert port != 0
            got = sh("ip", "netns", "exec", ns, sys.executable, "-c",
                     f"import urllib.request;print(urllib.request.urlopen('http://198.18.7.1:{port}/metrics').read().decode())")
            assert "vcoal_agent_windows_total" in got.stdout
        finally:
            assert agent.stop() == 0
        assert Path(tmp_path / "journal.json.lock").exists()
