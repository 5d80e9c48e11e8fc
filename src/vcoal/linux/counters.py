"""Kernel counters a coalescing controller observes, parsed from /proc, turned into CounterSamples.

Parsers take the file text (tests feed captured real output from ``tests/golden/linux/``); the
``read_*`` helpers read the live files of the caller's network namespace (/proc/net is per
namespace; /proc/softirqs, /proc/stat and /proc/interrupts are host-wide).

What a site's ``CounterSample`` holds (``InterfaceCounters.sample``):

- ``rx``/``tx`` packets, bytes, drops: /proc/net/dev of the interface;
- ``interrupts``: the IRQ vectors of the interface in /proc/interrupts (names containing the
  interface name, e.g. ``eth0-TxRx-0``, or the virtio device's ``virtioN-input.Q``/``-output.Q``);
  an interface without vectors of its own (veth, tap) gets the host-wide NET_RX softirq count for
  rx (its ``napi_schedule`` raises NET_RX), which is shared by all such interfaces;
- ``polls``: host-wide NET_RX softirqs (rx), NET_TX (tx);
- ``cpu_ns``: host-wide softirq CPU time from /proc/stat.

A queue ``IF:qN`` (see ``vcoal.linux.knobs.split_unit``) takes its rx/tx packets and bytes from
netdev ``qstats-get`` of rx and tx queue N (``queue_stats``, a callable ifname ->
{(type, queue): (packets, bytes)}, e.g. ``LinuxKnobs.queue_stats``); drops are 0 (not per queue);
interrupts and polls are the interface's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vcoal.model.stats import CounterSample, DirStats, new_counter_sample, new_dir_stats

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NS_PER_TICK = 1_000_000_000 // USER_HZ


def parse_softirqs(text: str) -> dict[str, list[int]]:
    """/proc/softirqs -> {"NET_RX": [per-CPU counts], ...}."""
    out: dict[str, list[int]] = {}
    for line in text.splitlines()[1:]:
        name, sep, rest = line.partition(":")
        if sep:
            out[name.strip()] = [int(x) for x in rest.split()]
    return out


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Aggregate CPU times from the ``cpu`` line of /proc/stat, in nanoseconds."""

    user_ns: int
    system_ns: int
    idle_ns: int
    irq_ns: int
    softirq_ns: int
    total_ns: int


def parse_proc_stat(text: str) -> dict[str, CpuTimes]:
    """/proc/stat -> {"cpu": CpuTimes, "cpu0": ..., ...} (jiffies converted to ns)."""
    out: dict[str, CpuTimes] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *vals = line.split()
        v = [int(x) for x in vals] + [0] * (10 - len(vals))
        user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
        out[name] = CpuTimes(
            (user + nice) * NS_PER_TICK,
            system * NS_PER_TICK,
            (idle + iowait) * NS_PER_TICK,
            irq * NS_PER_TICK,
            softirq * NS_PER_TICK,
            (user + nice + system + idle + iowait + irq + softirq + steal) * NS_PER_TICK,
        )
    return out


@dataclass(frozen=True, slots=True)
class SoftnetStat:
    """One CPU's row of /proc/net/softnet_stat."""

    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    received_rps: int
    flow_limit_count: int
    backlog_len: int


def parse_softnet_stat(text: str) -> list[SoftnetStat]:
    """/proc/net/softnet_stat (hex columns) -> one row per CPU (CPU from column 13 when present)."""
    rows = []
    for i, line in enumerate(text.splitlines()):
        cols = [int(x, 16) for x in line.split()]
        if not cols:
            continue
        cols += [0] * (15 - len(cols))
        cpu = cols[12] if len(line.split()) >= 13 else i
        rows.append(SoftnetStat(cpu, cols[0], cols[1], cols[2], cols[9], cols[10], cols[11]))
    return rows


@dataclass(frozen=True, slots=True)
class IrqLine:
    """One numbered line of /proc/interrupts."""

    irq: str
    per_cpu: tuple[int, ...]
    chip: str
    name: str

    @property
    def total(self) -> int:
        return sum(self.per_cpu)


def parse_interrupts(text: str) -> list[IrqLine]:
    """/proc/interrupts -> numbered IRQ lines (the NMI/LOC/... summary rows are skipped)."""
    lines = text.splitlines()
    if not lines:
        return []
    ncpu = len(lines[0].split())
    out = []
    for line in lines[1:]:
        irq, sep, rest = line.partition(":")
        irq = irq.strip()
        if not sep or not irq.isdigit():
            continue
        parts = rest.split()
        counts = tuple(int(x) for x in parts[:ncpu])
        tail = parts[ncpu:]
        chip = " ".join(tail[:-1]) if len(tail) > 1 else ""
        name = tail[-1] if tail else ""
        out.append(IrqLine(irq, counts, chip, name))
    return out


@dataclass(frozen=True, slots=True)
class NetDevStats:
    """One interface's row of /proc/net/dev."""

    rx_bytes: int
    rx_packets: int
    rx_drops: int
    tx_bytes: int
    tx_packets: int
    tx_drops: int


def parse_net_dev(text: str, wanted: frozenset[str] | set[str] | None = None) -> dict[str, NetDevStats]:
    """/proc/net/dev -> {ifname: NetDevStats} (only the ``wanted`` interfaces when given)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        if wanted is not None and name not in wanted:
            continue
        c = rest.split()
        out[name] = NetDevStats(int(c[0]), int(c[1]), int(c[3]), int(c[8]), int(c[9]), int(c[11]))
    return out


def irq_direction(line: IrqLine, ifname: str, device: str | None = None) -> str | None:
    """'rx', 'tx', 'both' or None: whether an IRQ line belongs to an interface, and its direction."""
    name = line.name
    tokens = name.replace("@", "-").split("-")
    if device and name.startswith(device + "-"):
        kind = name[len(device) + 1:]
        if kind.startswith("input"):
            return "rx"
        if kind.startswith("output"):
            return "tx"
        return None
    if ifname in tokens or name == ifname:
        low = name.lower()
        if "-rx-" in low or low.endswith("-rx"):
            return "rx"
        if "-tx-" in low or low.endswith("-tx"):
            return "tx"
        return "both"
    return None


def net_dev_rows(text: str, wanted: frozenset[str] | set[str]) -> dict[str, str]:
    """/proc/net/dev -> {ifname: the text after its ``:``} for the ``wanted`` interfaces (unparsed)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if sep:
            name = name.strip()
            if name in wanted:
                out[name] = rest
    return out


def net_dev_names(text: str) -> set[str]:
    """The interface names listed in /proc/net/dev (every interface of the namespace)."""
    return {name.strip() for name, sep, _ in (line.partition(":") for line in text.splitlines()[2:]) if sep}


def softirq_total(text: str, name: str) -> int:
    """The count of one /proc/softirqs row (``NET_RX``...) summed over CPUs; 0 when absent."""
    i = text.find(name + ":")
    if i < 0 or (i and text[i - 1] not in " \n"):
        return 0
    end = text.find("\n", i)
    return sum(map(int, text[i + len(name) + 1:end if end >= 0 else len(text)].split()))


def irq_totals(text: str, wanted: frozenset[str] | set[str]) -> dict[str, int]:
    """/proc/interrupts -> {irq: count summed over CPUs} for the ``wanted`` numbered IRQs."""
    lines = text.splitlines()
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out = {}
    for line in lines[1:]:
        irq, sep, rest = line.partition(":")
        irq = irq.strip()
        if sep and irq in wanted:
            out[irq] = sum(map(int, rest.split()[:ncpu]))
    return out


class ProcFile:
    """A /proc file kept open and re-read from its start with pread (no open and close per read).

    /proc/net files stay bound to the network namespace of the opener.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self, first: int | None = None) -> str:
        """The file's text; with ``first``, one read of at most that many bytes from the start (the
        first line(s), for a caller that needs nothing else)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        if first is not None:
            return os.pread(self._fd, first, 0).decode()
        chunks = []
        offset = 0
        while chunk := os.pread(self._fd, 1 << 16, offset):  # seq files return a page or so per read
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def interface_device(ifname: str) -> str | None:
    """The bus device name behind an interface (``virtio2``, ``0000:03:00.0``), None for virtual ones."""
    try:
        return Path(os.readlink(f"/sys/class/net/{ifname}/device")).name
    except OSError:
        return None


class InterfaceCounters:
    """Samples counters of many interfaces at once, reading each /proc file once per sample.

    The files stay open between samples; /proc/net/dev rows equal to the previous sample's are not
    parsed again; of /proc/softirqs and /proc/stat only the NET_RX/NET_TX rows and the ``cpu`` line
    are parsed; /proc/interrupts is read only when an interface has IRQ vectors of its own.
    """

    def __init__(self, clock_ns=time.monotonic_ns, queue_stats=None) -> None:
        self.clock_ns = clock_ns
        self.queue_stats = queue_stats
        self._units: tuple[tuple[str, int | None], ...] = ()
        self._names: tuple[str, ...] | None = None
        self._vectors: dict[str, list[tuple[str, str]]] = {}
        self._plan: tuple[list[tuple[str, str]], ...] = ()  # the vectors of each of _names
        self._irqs: frozenset[str] = frozenset()
        self._wanted: frozenset[str] = frozenset()
        self._last: dict[str, tuple[str, int, int, int, DirStats]] = {}
        self._files = {path: ProcFile(path) for path in ("/proc/net/dev", "/proc/softirqs", "/proc/stat",
                                                          "/proc/interrupts")}

    def _map_vectors(self, names: tuple[str, ...]) -> None:
        """Which IRQ vectors belong to which interface; redone when the set of interfaces changes."""
        irqs = parse_interrupts(self._files["/proc/interrupts"].read())
        from vcoal.linux.knobs import split_unit

        self._vectors = {}
        self._units = tuple(split_unit(name) for name in names)
        for ifname in {unit for unit, _ in self._units}:
            device = interface_device(ifname)
            self._vectors[ifname] = [
                (line.irq, direction) for line in irqs
                if (direction := irq_direction(line, ifname, device)) is not None
            ]
        self._irqs = frozenset(irq for vectors in self._vectors.values() for irq, _ in vectors)
        self._names = names
        self._plan = tuple(self._vectors[ifname] for ifname, _ in self._units)
        self._wanted = frozenset(ifname for ifname, _ in self._units)
        self._last = {}

    def present(self) -> set[str]:
        """Every interface of the namespace now (from /proc/net/dev)."""
        return net_dev_names(self._files["/proc/net/dev"].read())

    def sample(
        self, ifnames: Iterable[str], keys: Sequence[Hashable] | None = None
    ) -> dict[Hashable, CounterSample]:
        """One CounterSample per interface present in /proc/net/dev (missing ones are left out),
        keyed by name, or by ``keys`` (one per name, in the same order) when given."""
        t_ns = self.clock_ns()
        names = tuple(ifnames)
        if names != self._names:
            self._map_vectors(names)
        rows = net_dev_rows(self._files["/proc/net/dev"].read(), self._wanted)
        soft = self._files["/proc/softirqs"].read(first=1 << 16)  # all of it in one read (one record)
        if len(soft) == 1 << 16 or "NET_RX:" not in soft:
            soft = self._files["/proc/softirqs"].read()
        net_rx = softirq_total(soft, "NET_RX")
        net_tx = softirq_total(soft, "NET_TX")
        stat_text = self._files["/proc/stat"].read(4096)
        stat = parse_proc_stat(stat_text[:stat_text.find("\n") + 1]).get("cpu")
        cpu_ns = stat.softirq_ns if stat else 0
        totals = irq_totals(self._files["/proc/interrupts"].read(), self._irqs) if self._irqs else {}
        last = self._last
        out = {}
        qstats: dict[str, dict] = {}
        for key, (ifname, queue), vectors in zip(names if keys is None else keys, self._units, self._plan, strict=True):
            row = rows.get(ifname)
            if row is None:
                continue
            if vectors:
                rx_irq = sum(totals.get(irq, 0) for irq, direction in vectors if direction != "tx")
                tx_irq = sum(totals.get(irq, 0) for irq, direction in vectors if direction == "tx")
            else:
                rx_irq, tx_irq = net_rx, 0
            if queue is not None:
                if ifname not in qstats:
                    try:
                        qstats[ifname] = self.queue_stats(ifname) if self.queue_stats else {}
                    except OSError:
                        qstats[ifname] = {}
                per = qstats[ifname]
                if ("rx", queue) not in per and ("tx", queue) not in per:
                    continue
                rxp, rxb = per.get(("rx", queue), (0, 0))
                txp, txb = per.get(("tx", queue), (0, 0))
                out[key] = new_counter_sample(
                    t_ns, new_dir_stats(rxp, rxb, rx_irq, net_rx, 0), new_dir_stats(txp, txb, tx_irq, net_tx, 0), cpu_ns
                )
                continue
            # (row, rx packets, bytes, drops, tx DirStats): parsed again only when the row changed
            e = last.get(ifname)
            if e is None or e[0] != row or e[4].interrupts != tx_irq or e[4].polls != net_tx:
                c = row.split()
                e = last[ifname] = (
                    row, int(c[1]), int(c[0]), int(c[3]), new_dir_stats(int(c[9]), int(c[8]), tx_irq, net_tx, int(c[11]))
                )
            out[key] = new_counter_sample(t_ns, new_dir_stats(e[1], e[2], rx_irq, net_rx, e[3]), e[4], cpu_ns)
        return out

    def close(self) -> None:
        """Close the /proc files (they are reopened by the next sample)."""
        for f in self._files.values():
            f.close()
