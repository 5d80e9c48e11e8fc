"""Test helpers for root tests: uniquely named namespaces that are always removed.

Only namespaces and devices created here are touched; addresses come from 198.18.0.0/15.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid

import pytest

from vcoal.linux.features import set_features

#: a root test (``-m root``); conftest skips it unless running as root
root = pytest.mark.root


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (no shell)."""
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@contextlib.contextmanager
def netns():
    """A fresh namespace named vct-<6 hex>, with lo up; removed on exit even after failures."""
    name = "vct-" + uuid.uuid4().hex[:6]
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def veth_pair(ns: str, a: str = "vif1.0", b: str = "geth0", gro: bool = True) -> None:
    """A veth pair inside ``ns`` with addresses from 198.18.0.0/15; GRO on gives each a NAPI."""
    sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "-n", ns, "addr", "add", "198.18.0.1/24", "dev", a)
    sh("ip", "-n", ns, "addr", "add", "198.18.0.2/24", "dev", b)
    for dev in (a, b):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        if gro:
            set_features(ns, dev, {"gro": True})


def read_sysfs(ns: str, dev: str, knob: str) -> int:
    """A sysfs NAPI knob of a device inside ``ns``."""
    return int(sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/{knob}").stdout)
