"""Per-device NAPI polls from the kernel's ``napi:napi_poll`` tracepoint (tracefs).

The host-wide NET_RX softirq count (/proc/softirqs) says how often ``net_rx_action`` ran, not which
NAPI it polled: one run drains every NAPI scheduled on its CPU. The ``napi_poll`` tracepoint fires
once per ``napi_poll()`` call with the device name and the packets it processed (``work``), so
counting its events per device attributes polls and packets per poll to each hop.

The NET_RX softirq runs themselves are traced too (``irq:softirq_entry`` with ``vec == 3``): their
count checks the trace against /proc/softirqs (nothing lost), and a run in which at least one
wanted device was polled is an *attributed* run, so "how much of the host's NET_RX these devices
explain" is measured, not assumed (one run can poll several NAPIs: the counts differ by design).

How: a private tracefs instance (``instances/vcoal-<name>``, so the global trace buffer and other
users are untouched) with only those two events enabled, filtered in the kernel to the wanted
devices and to NET_RX, a bounded per-CPU ring buffer (``BUFFER_KB_PER_CPU``), read without blocking
from ``trace_pipe`` whenever counts are asked for. Events lost to a full buffer are counted from the
per-CPU ``stats`` files and reported (``overrun``). tracefs is mounted at /sys/kernel/tracing when it
is not mounted yet. Device names are global to the trace, not per namespace: the caller names
devices that are unique on the host while the trace runs (the testbed gives each hop its own name).

``parse_lines`` takes ``trace_pipe`` text (tests feed captured real output).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
EVENT = "napi/napi_poll"
SOFTIRQ_EVENT = "irq/softirq_entry"
NET_RX_VEC = 3
BUFFER_KB_PER_CPU = 4096
READ_CHUNK_BYTES = 1 << 20
_LINE = re.compile(rb"\[(\d+)\][^:\n]*?\s\d+\.\d+: (?:napi_poll: napi poll on napi struct \S+ for device (\S+) "
                   rb"work (-?\d+) budget \d+|softirq_entry: vec=(\d+) )")
_OVERRUN = re.compile(rb"^overrun: (\d+)$", re.M)
_DEV_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


class TraceUnavailable(OSError):
    """tracefs or the ``napi:napi_poll`` event cannot be used here (not root, no tracefs, old kernel)."""


@dataclass(slots=True)
class DevPolls:
    """Cumulative NAPI polls of one device: calls, packets processed, and polls per CPU."""

    polls: int = 0
    packets: int = 0
    empty: int = 0  # polls that found no packet (work 0)

    def add(self, work: int) -> None:
        self.polls += 1
        self.packets += work
        if work == 0:
            self.empty += 1


@dataclass(slots=True)
class TraceCounts:
    """Everything counted from the trace so far (cumulative)."""

    devices: dict[str, DevPolls] = field(default_factory=dict)
    net_rx_runs: int = 0  # traced NET_RX softirq runs (all CPUs)
    attributed_runs: int = 0  # of those, runs that polled at least one traced device
    cpu_polls: dict[int, int] = field(default_factory=dict)
    _open: dict[int, bool] = field(default_factory=dict)  # CPU -> its current NET_RX run is unattributed

    def snapshot(self) -> TraceCounts:
        """A copy of the counts (not of the parser state)."""
        return TraceCounts({d: DevPolls(p.polls, p.packets, p.empty) for d, p in self.devices.items()},
                           self.net_rx_runs, self.attributed_runs, dict(self.cpu_polls))

    def minus(self, old: TraceCounts) -> TraceCounts:
        """The counts since ``old`` (a snapshot)."""
        zero = DevPolls()
        devices = {}
        for d, p in self.devices.items():
            o = old.devices.get(d, zero)
            devices[d] = DevPolls(p.polls - o.polls, p.packets - o.packets, p.empty - o.empty)
        cpus = {c: n - old.cpu_polls.get(c, 0) for c, n in self.cpu_polls.items()}
        return TraceCounts(devices, self.net_rx_runs - old.net_rx_runs, self.attributed_runs - old.attributed_runs, cpus)

    @property
    def polls(self) -> int:
        """Polls of every traced device."""
        return sum(p.polls for p in self.devices.values())


def parse_lines(data: bytes, counts: TraceCounts) -> bytes:
    """Add the ``napi_poll`` and NET_RX ``softirq_entry`` events of ``trace_pipe`` text (in the order
    the pipe gives them: by time across CPUs) to ``counts``; returns the incomplete last line (to
    prepend to the next chunk)."""
    head, sep, tail = data.rpartition(b"\n")
    if not sep:
        return data
    devices, cpu_polls, open_run = counts.devices, counts.cpu_polls, counts._open
    for m in _LINE.finditer(head):
        cpu = int(m.group(1))
        if m.group(4) is not None:
            if int(m.group(4)) == NET_RX_VEC:
                counts.net_rx_runs += 1
                open_run[cpu] = True
            continue
        dev = m.group(2).decode()
        entry = devices.get(dev)
        if entry is None:
            entry = devices[dev] = DevPolls()
        entry.add(int(m.group(3)))
        cpu_polls[cpu] = cpu_polls.get(cpu, 0) + 1
        if open_run.get(cpu):
            counts.attributed_runs += 1
            open_run[cpu] = False
    return tail


def filter_expression(devices: list[str] | tuple[str, ...]) -> str:
    """The tracefs event filter that keeps only ``devices`` (names checked: no quoting games)."""
    for d in devices:
        if not _DEV_RE.match(d):
            raise ValueError(f"device name {d!r}: not a network device name")
    return " || ".join(f'dev_name == "{d}"' for d in devices)


def ensure_tracefs(root: Path = TRACEFS) -> Path:
    """Mount tracefs at ``root`` if it is not mounted; TraceUnavailable when that is impossible."""
    if (root / "instances").is_dir():
        return root
    if os.geteuid() != 0:
        raise TraceUnavailable(errno.EPERM, "tracefs is not mounted and mounting it needs root")
    proc = subprocess.run(["mount", "-t", "tracefs", "nodev", str(root)], capture_output=True, text=True)
    if proc.returncode or not (root / "instances").is_dir():
        raise TraceUnavailable(errno.ENODEV, f"cannot mount tracefs at {root}: {proc.stderr.strip() or 'no instances/'}")
    return root


class NapiTrace:
    """Count ``napi_poll`` events of some devices, and NET_RX runs, in a private tracefs instance
    until ``close()``.

    ``read()`` drains what the kernel traced so far and returns a snapshot of the cumulative counts
    (every wanted device present); call it at each window boundary. Use as a context manager, or call ``close()``: the instance
    is removed either way.
    """

    def __init__(self, name: str, devices: list[str] | tuple[str, ...], root: Path = TRACEFS,
                 buffer_kb_per_cpu: int = BUFFER_KB_PER_CPU) -> None:
        self.devices = tuple(devices)
        expr = filter_expression(self.devices)
        base = ensure_tracefs(root)
        if not (base / "events" / EVENT).is_dir():
            raise TraceUnavailable(errno.ENOENT, f"this kernel has no {EVENT.replace('/', ':')} tracepoint")
        self.dir = base / "instances" / f"vcoal-{name}"
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise TraceUnavailable(errno.EEXIST, f"tracefs instance {self.dir} exists (another trace running?)") from None
        except OSError as exc:
            raise TraceUnavailable(exc.errno, f"cannot create tracefs instance {self.dir}: {exc.strerror}") from None
        self.counts = TraceCounts({d: DevPolls() for d in self.devices})
        self._rest = b""
        self._fd: int | None = None
        try:
            (self.dir / "buffer_size_kb").write_text(str(buffer_kb_per_cpu))
            (self.dir / "trace_clock").write_text("mono")
            for event, condition in ((EVENT, expr), (SOFTIRQ_EVENT, f"vec == {NET_RX_VEC}")):
                (self.dir / "events" / event / "filter").write_text(condition)
                (self.dir / "events" / event / "enable").write_text("1")
            self._fd = os.open(self.dir / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except BaseException:
            self.close()
            raise

    def read(self) -> TraceCounts:
        """Drain the buffer; a snapshot of the cumulative counts."""
        if self._fd is None:
            raise RuntimeError("napi trace is closed")
        while True:
            try:
                chunk = os.read(self._fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._rest = parse_lines(self._rest + chunk, self.counts)
        return self.counts.snapshot()

    def overrun(self) -> int:
        """Events lost so far because a CPU's buffer was full (sum over CPUs)."""
        total = 0
        for stats in (self.dir / "per_cpu").glob("cpu*/stats"):
            try:
                total += sum(int(x) for x in _OVERRUN.findall(stats.read_bytes()))
            except OSError:
                continue
        return total

    def close(self) -> None:
        """Stop tracing and remove the instance (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.dir.is_dir():
            for event in (EVENT, SOFTIRQ_EVENT):
                with contextlib.suppress(OSError):
                    (self.dir / "events" / event / "enable").write_text("0")
            with contextlib.suppress(OSError):
                self.dir.rmdir()

    def __enter__(self) -> NapiTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
