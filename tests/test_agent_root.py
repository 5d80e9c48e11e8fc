"""The agent as a real process on veth in namespaces: apply, restore on SIGTERM, kill -9, churn, back-off."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from vcoal.linux.knobs import read_knobs
from vct_netns import netns, read_sysfs, root, sh, veth_pair

VCOAL = str(Path(sys.executable).with_name("vcoal"))
ORIGINAL = {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}
SET = {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}


def _config(tmp: Path, policy: str = "static", verify: int = 1, port: int = 0) -> Path:
    params = (
        'params = { backend = { napi_defer_hard_irqs = 2, gro_flush_timeout_ns = 50000 } }'
        if policy == "static" else ""
    )
    cfg = tmp / f"agent-{policy}.toml"
    cfg.write_text(f"""
window_ms = 50
rescan_every_windows = 4
journal_path = "{tmp}/journal.json"
status_path = "{tmp}/status.json"
[policy]
name = "{policy}"
{params}
[safety]
verify_every_windows = {verify}
backoff_s = 600
[metrics]
enabled = {"true" if port else "false"}
port = {port}
[[interfaces]]
match = ["vif*"]
layer = "backend"
""")
    return cfg


class Agent:
    """``vcoal agent run`` inside a namespace; ended only by its own PID."""

    def __init__(self, ns: str, cfg: Path, log: Path) -> None:
        self.log = log
        self.f = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", ns, VCOAL, "agent", "run", "-c", str(cfg)],
            stdout=self.f, stderr=self.f, stdin=subprocess.DEVNULL,
        )

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
        try:
            return self.p.wait(timeout_s)
        finally:
            if self.p.poll() is None:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
            self.f.close()


def _until(cond, timeout_s: float = 15.0, what: str = "") -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _knobs(ns: str, dev: str) -> dict:
    try:
        return read_knobs(dev, ns)
    except OSError:
        return {}


@root
def test_applies_as_policy_decides_and_restores_on_sigterm(tmp_path):
    port = random.randint(20000, 40000)
    with netns() as ns:
        veth_pair(ns, "vif1.0", "geth0", gro=True)  # NAPI: netdev napi-set
        sh("ip", "-n", ns, "link", "add", "vif2.0", "type", "veth", "peer", "name", "geth1")  # no NAPI: sysfs
        agent = Agent(ns, _config(tmp_path, port=port), tmp_path / "agent.log")
        try:
            _until(lambda: _knobs(ns, "vif1.0") == SET and _knobs(ns, "vif2.0") == SET, what="knobs set")
            assert _knobs(ns, "geth0") == ORIGINAL  # not configured: never touched
            assert (tmp_path / "journal.json").exists()
            metrics = sh("ip", "netns", "exec", ns, sys.executable, "-c",
                         f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())").stdout
            assert 'vcoal_agent_napi_defer_hard_irqs{interface="vif1.0",layer="backend"} 2.0' in metrics
            assert 'vcoal_agent_napi_gro_flush_timeout_seconds{interface="vif2.0",layer="backend"} 5e-05' in metrics
            assert "vcoal_agent_windows_total" in metrics
            _until(lambda: (tmp_path / "status.json").exists(), what="status file")
            status = subprocess.run([VCOAL, "agent", "status", "--status-file", str(tmp_path / "status.json")],
                                    capture_output=True, text=True, timeout=30)
            assert status.returncode == 0 and "vif1.0" in status.stdout
        finally:
            rc = agent.stop()
        assert rc == 0, agent.text()
        assert _knobs(ns, "vif1.0") == ORIGINAL and _knobs(ns, "vif2.0") == ORIGINAL
        assert not (tmp_path / "journal.json").exists()
        assert "restored 4 knob(s)" in agent.text()


@root
def test_kill9_then_restart_or_restore_command_restores(tmp_path):
    with netns() as ns:
        veth_pair(ns, "vif1.0", "geth0", gro=True)
        cfg = _config(tmp_path)
        agent = Agent(ns, cfg, tmp_path / "a1.log")
        _until(lambda: _knobs(ns, "vif1.0") == SET, what="knobs set")
        agent.stop(signal.SIGKILL)
        assert _knobs(ns, "vif1.0") == SET and (tmp_path / "journal.json").exists()
        # a restart (here with a policy that changes nothing) restores first
        again = Agent(ns, _config(tmp_path, policy="off"), tmp_path / "a2.log")
        try:
            _until(lambda: "from leftover journal" in again.text(), what="leftover restore")
            assert _knobs(ns, "vif1.0") == ORIGINAL
        finally:
            assert again.stop() == 0
        # and by hand: vcoal agent restore
        third = Agent(ns, cfg, tmp_path / "a3.log")
        _until(lambda: _knobs(ns, "vif1.0") == SET, what="knobs set again")
        third.stop(signal.SIGKILL)
        out = sh("ip", "netns", "exec", ns, VCOAL, "agent", "restore", "-c", str(cfg))
        assert "restored 2 knob(s)" in out.stdout
        assert _knobs(ns, "vif1.0") == ORIGINAL and not (tmp_path / "journal.json").exists()


@root
def test_interfaces_vanishing_and_appearing(tmp_path):
    with netns() as ns:
        veth_pair(ns, "vif1.0", "geth0", gro=True)
        sh("ip", "-n", ns, "link", "add", "vif2.0", "type", "veth", "peer", "name", "geth1")
        agent = Agent(ns, _config(tmp_path), tmp_path / "agent.log")
        try:
            _until(lambda: _knobs(ns, "vif2.0") == SET, what="knobs set")
            sh("ip", "-n", ns, "link", "del", "vif2.0")  # a guest shut down
            _until(lambda: "vif2.0: vanished" in agent.text(), what="vanish noticed")
            sh("ip", "-n", ns, "link", "add", "vif3.0", "type", "veth", "peer", "name", "geth2")  # a guest started
            _until(lambda: _knobs(ns, "vif3.0") == SET, what="new interface picked up")
            assert agent.p.poll() is None
        finally:
            rc = agent.stop()
        assert rc == 0, agent.text()
        assert "Traceback" not in agent.text()
        assert _knobs(ns, "vif1.0") == ORIGINAL and _knobs(ns, "vif3.0") == ORIGINAL


@root
def test_external_change_makes_it_back_off(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vif1.0", "type", "veth", "peer", "name", "geth0")  # sysfs backend
        agent = Agent(ns, _config(tmp_path), tmp_path / "agent.log")
        try:
            _until(lambda: _knobs(ns, "vif1.0") == SET, what="knobs set")
            sh("ip", "netns", "exec", ns, "sh", "-c", "echo 77777 > /sys/class/net/vif1.0/gro_flush_timeout")
            _until(lambda: "changed by someone else" in agent.text(), what="back-off")
            time.sleep(0.3)
            assert read_sysfs(ns, "vif1.0", "gro_flush_timeout") == 77777  # not fought over
        finally:
            rc = agent.stop()
        assert rc == 0
        assert read_sysfs(ns, "vif1.0", "gro_flush_timeout") == 77777  # the administrator's value stays
        assert read_sysfs(ns, "vif1.0", "napi_defer_hard_irqs") == 0  # the knob only the agent moved is restored
        assert "backing off" in agent.text()


def _drop_net_admin() -> None:  # root without CAP_NET_ADMIN, like a container or a bad unit file
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(24, 12, 0, 0, 0) == 0  # PR_CAPBSET_DROP, CAP_NET_ADMIN


@root
def test_dry_run_prints_decisions_and_changes_nothing_without_privilege(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vif1.0", "type", "veth", "peer", "name", "geth0")
        p = subprocess.Popen(["ip", "netns", "exec", ns, VCOAL, "agent", "run", "--dry-run", "-c", str(_config(tmp_path))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_drop_net_admin)
        try:
            _until(lambda: (tmp_path / "status.json").exists(), what="dry run started")
        finally:
            os.kill(p.pid, signal.SIGTERM)
            out, _ = p.communicate(timeout=15)
        assert p.returncode == 0
        assert "backend:vif1.0: would set" in out and "napi_defer_hard_irqs=2" in out
        assert _knobs(ns, "vif1.0") == ORIGINAL and not (tmp_path / "journal.json").exists()


@root
def test_without_privilege_it_stops_with_a_clear_message(tmp_path):
    cfg = _config(tmp_path)
    out = subprocess.run([VCOAL, "agent", "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                         preexec_fn=_drop_net_admin)
    assert out.returncode == 1
    line = out.stderr.strip()
    assert "\n" not in line and "CAP_NET_ADMIN" in line


_BOOM = """
import logging
import sys
logging.basicConfig(level=logging.INFO)
import vcoal.agent.daemon as daemon
from vcoal.agent.config import load_config
from vcoal.policies import make_policy

class Boom:
    name = "boom"
    def __init__(self):
        self.inner, self.n = make_policy("static", {"backend": {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50000}}), 0
    def reset(self, context, rng):
        self.inner.reset(context, rng)
    def observe(self, stats):
        self.n += 1
        if self.n == 8:
            raise RuntimeError("policy bug")
        self.inner.observe(stats)
    def decide(self):
        return self.inner.decide()

daemon.make_policy = lambda name, params: Boom()
daemon.Agent(load_config(sys.argv[1])).run()
"""


@root
def test_an_exception_restores_every_knob(tmp_path):
    with netns() as ns:
        veth_pair(ns, "vif1.0", "geth0", gro=True)
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _BOOM, str(_config(tmp_path))],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "policy bug" in out.stderr
        assert "vif1.0: set" in out.stderr and "restored 2 knob(s)" in out.stderr
        assert _knobs(ns, "vif1.0") == ORIGINAL and not (tmp_path / "journal.json").exists()
