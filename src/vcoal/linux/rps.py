"""Receive packet steering of a device's rx queues (``/sys/class/net/DEV/queues/rx-N/rps_cpus``).

Used by the testbed's CPU placement: after a NAPI poll (GRO included) the rest of a packet's
receive path runs on the CPUs of the device's RPS mask, so the bridge and the vifs' work can be
kept on driver-domain CPUs and each guest's stack on its own. Writes go through a shell inside the
device's namespace (sysfs shows the devices of the writer's namespace) and are read back.
"""

from __future__ import annotations

from collections.abc import Iterable

from vcoal.linux import netns
from vcoal.linux.names import valid_ifname


def cpu_mask(cpus: Iterable[int]) -> str:
    """The hex bitmap sysfs takes for a CPU set, in comma-separated 32-bit groups (``ff,00000000``)."""
    bits = 0
    for c in cpus:
        if c < 0:
            raise ValueError(f"cpu {c}: must be >= 0")
        bits |= 1 << c
    groups = []
    while True:
        groups.append(f"{bits & 0xFFFFFFFF:08x}")
        bits >>= 32
        if not bits:
            break
    return ",".join(reversed(groups)).lstrip("0") or "0"


def parse_mask(text: str) -> frozenset[int]:
    """The CPU set of a sysfs hex bitmap (``0000000f``, ``ff,00000000``)."""
    bits = int(text.strip().replace(",", "") or "0", 16)
    return frozenset(i for i in range(bits.bit_length()) if bits >> i & 1)


def set_rps(ns: str, dev: str, cpus: Iterable[int]) -> frozenset[int]:
    """Steer every rx queue of ``dev`` in ``ns`` to ``cpus``; returns the set read back (RuntimeError
    when the kernel kept another)."""
    want = frozenset(cpus)
    if not valid_ifname(dev):
        raise ValueError(f"device name {dev!r}: not a network device name")
    script = f'for q in /sys/class/net/{dev}/queues/rx-*; do echo {cpu_mask(want)} > "$q/rps_cpus"; done; ' \
             f'cat /sys/class/net/{dev}/queues/rx-*/rps_cpus'
    got = {parse_mask(line) for line in netns.run_in(ns, ["sh", "-ec", script]).split()}
    if got != {want}:
        raise RuntimeError(f"netns {ns}: {dev} rps_cpus reads back {sorted(map(sorted, got))}, not {sorted(want)}")
    return want
