"""Names the kernel accepts: interfaces (and vcoal's queue units ``IF:qN``), knobs, namespaces.

One definition of each rule, used wherever a name reaches a path or a netlink request: the knob
layer (``vcoal.linux.knobs``) and the journal loader (``vcoal.linux.journal``), which must never
follow a tampered entry such as ``../../x`` outside ``/sys/class/net``.
"""

from __future__ import annotations

import re

from vcoal.linux.netlink import PARAM_TO_ATTR

IFNAMSIZ = 16  # the kernel's buffer, NUL included: names are 1-15 bytes
NAME_MAX = 255  # a namespace name is a file name under /run/netns
NAPI_KNOBS = ("napi_defer_hard_irqs", "gro_flush_timeout_ns")
ETHTOOL_KNOBS = tuple(PARAM_TO_ATTR)
KNOBS = NAPI_KNOBS + ETHTOOL_KNOBS
IFNAME_RULE = "1-15 bytes, no '/', ':' or whitespace, not '.' or '..'"
NETNS_RULE = "1-255 bytes, no '/' or whitespace, not '.' or '..'"
_QUEUE_UNIT = re.compile(r"^(.+):q(\d{1,5})$")


def queue_unit(ifname: str, queue: int) -> str:
    """The name of queue ``queue`` of ``ifname`` (``eth0:q2``)."""
    return f"{ifname}:q{int(queue)}"


def split_unit(name: str) -> tuple[str, int | None]:
    """``eth0:q2`` -> ("eth0", 2); a plain interface name -> (name, None)."""
    m = _QUEUE_UNIT.match(name)
    return (m.group(1), int(m.group(2))) if m else (name, None)


def _plain_name(name: object, max_bytes: int, forbidden: str) -> bool:
    if not isinstance(name, str) or name in (".", "..") or "\0" in name:
        return False
    size = len(name.encode("utf-8", "surrogateescape"))
    return 0 < size <= max_bytes and not any(c in forbidden or c.isspace() for c in name)


def valid_ifname(name: object) -> bool:
    """True for a name the kernel accepts for a netdev (its ``dev_valid_name``), or such a name
    with a queue suffix ``:qN``."""
    if not isinstance(name, str):
        return False
    return _plain_name(split_unit(name)[0], IFNAMSIZ - 1, "/:")


def check_ifname(name: str) -> None:
    """Raise ValueError unless ``name`` is a valid interface name (or queue unit)."""
    if not valid_ifname(name):
        raise ValueError(f"interface name {name!r}: not a valid Linux interface name ({IFNAME_RULE})")


def valid_netns_name(name: object) -> bool:
    """True for a name ``ip netns`` can bind under /run/netns."""
    return _plain_name(name, NAME_MAX, "/")
