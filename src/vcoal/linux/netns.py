"""Network namespaces: create, remove, list by prefix, run commands inside, find their processes.

Every namespace vcoal creates is named ``vcoal-<tag>-<role>`` so that ``vcoal testbed down`` can
find and remove what an earlier (possibly crashed) run left behind, and never touches anything
else. Creation and removal go through pyroute2 (``/run/netns`` bind mounts, like ``ip netns``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pyroute2 import netns as _pr_netns

PREFIX = "vcoal-"
NETNS_RUN_DIR = Path("/run/netns")
_TAG_RE = re.compile(r"^[a-z0-9]{1,12}$")


def check_tag(tag: str) -> str:
    """Validate a topology tag (1-12 lower-case letters/digits); returns it."""
    if not _TAG_RE.match(tag):
        raise ValueError(f"tag {tag!r}: use 1-12 lower-case letters or digits")
    return tag


def ns_name(tag: str, role: str) -> str:
    """The namespace name of one role (``wire``, ``dom0``, ``g-<guest>``) of topology ``tag``."""
    return f"{PREFIX}{check_tag(tag)}-{role}"


def tag_of(name: str) -> str | None:
    """The topology tag of a vcoal namespace name, None for any other namespace."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX) :]
    tag, sep, _role = rest.partition("-")
    return tag if sep and _TAG_RE.match(tag) else None


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of the namespaces in /run/netns starting with ``prefix``, sorted."""
    return sorted(n for n in _pr_netns.listnetns() if n.startswith(prefix))


def create(name: str) -> None:
    """Create namespace ``name`` (must carry the vcoal prefix) and bring its ``lo`` up."""
    if not name.startswith(PREFIX):
        raise ValueError(f"namespace {name!r}: vcoal only creates names starting with {PREFIX!r}")
    _pr_netns.create(name)
    from pyroute2 import IPRoute

    with IPRoute(netns=name) as ipr:
        idx = ipr.link_lookup(ifname="lo")
        if idx:
            ipr.link("set", index=idx[0], state="up")


def remove(name: str) -> None:
    """Remove namespace ``name`` (vcoal prefix only); a missing namespace is not an error."""
    if not name.startswith(PREFIX):
        raise ValueError(f"namespace {name!r}: refusing to remove a namespace vcoal did not name")
    with contextlib.suppress(FileNotFoundError):
        _pr_netns.remove(name)


def ns_inode(name: str) -> tuple[int, int] | None:
    """(device, inode) identifying the namespace's bind mount, None when it does not exist."""
    try:
        st = os.stat(NETNS_RUN_DIR / name)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in(name: str) -> list[int]:
    """PIDs of processes whose network namespace is ``name`` (like ``ip netns pids``)."""
    ident = ns_inode(name)
    if ident is None:
        return []
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == ident:
            out.append(int(entry.name))
    return sorted(out)


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """The argv running ``argv`` inside namespace ``name`` (``ip netns exec`` execs, same PID)."""
    return ["ip", "netns", "exec", name, *argv]


def run_in(name: str, argv: Sequence[str], timeout_s: float = 10.0, check: bool = True) -> str:
    """Run a short command inside a namespace and return its stdout.

    Raises RuntimeError with the command's stderr when it fails and ``check`` is set.
    """
    proc = subprocess.run(exec_argv(name, argv), capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        cmd = " ".join(argv)
        raise RuntimeError(f"in netns {name}: {cmd!r} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
