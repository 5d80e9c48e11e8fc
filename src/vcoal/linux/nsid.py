"""Which network namespace: its inode (``/proc/self/ns/net``) and its ``ip netns`` name, if any.

A journal entry records both, so that ``vcoal agent restore`` run from any namespace restores
inside the one the agent changed (the agent may run under ``ip netns exec``, where it sees its own
namespace as "its own", not by name). ``locate`` turns a recorded identity back into something the
knob layer can reach: the caller's own namespace (None), or a name bound under /run/netns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NETNS_RUN_DIR = Path("/run/netns")
OWN_NETNS = "/proc/self/ns/net"


@dataclass(frozen=True, slots=True)
class NetnsId:
    """A network namespace: its ``ip netns`` name (None: none binds it) and its nsfs inode."""

    name: str | None
    inode: int

    def __str__(self) -> str:
        return f"{self.name or '(unnamed)'} (net:[{self.inode}])"


class Unreachable(LookupError):
    """The namespace exists but has no name under /run/netns and is not the caller's own."""


class Gone(LookupError):
    """The namespace no longer exists (no name, process or mount holds it)."""


def _inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def name_of(inode: int) -> str | None:
    """The name under /run/netns bound to namespace ``inode`` (the first, sorted), or None."""
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return None
    return next((n for n in names if _inode(NETNS_RUN_DIR / n) == inode), None)


def netns_id(name: str | None = None) -> NetnsId:
    """The identity of namespace ``name`` (None: the caller's own, named if /run/netns binds it)."""
    if name is None:
        inode = _inode(OWN_NETNS) or 0
        return NetnsId(name_of(inode) if inode else None, inode)
    return NetnsId(name, _inode(NETNS_RUN_DIR / name) or 0)


def exists(inode: int) -> bool:
    """True while some process is in namespace ``inode`` or some nsfs mount holds it."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _inode(f"/proc/{entry.name}/ns/net") == inode:
            return True
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return f" net:[{inode}] " in mounts


def locate(recorded: NetnsId) -> str | None:
    """How to reach a recorded namespace from here: None (it is the caller's own) or its name.

    Raises ``Gone`` or ``Unreachable``. An identity without an inode (a journal of format 1)
    means the caller's own namespace when unnamed, else the namespace of that name.
    """
    own = netns_id()
    if not recorded.inode:
        if recorded.name is None or recorded.name == own.name:
            return None
        if (NETNS_RUN_DIR / recorded.name).exists():
            return recorded.name
        raise Gone(f"namespace {recorded.name} no longer exists")
    if recorded.inode == own.inode:
        return None
    if recorded.name is not None and _inode(NETNS_RUN_DIR / recorded.name) == recorded.inode:
        return recorded.name
    name = name_of(recorded.inode)
    if name is not None:
        return name
    if exists(recorded.inode):
        raise Unreachable(
            f"namespace {recorded} exists but has no name under {NETNS_RUN_DIR}: run `vcoal agent restore` "
            f"inside it (nsenter --net=/proc/PID/ns/net of a process in it), or name it with `ip netns attach`"
        )
    raise Gone(f"namespace {recorded} no longer exists")
