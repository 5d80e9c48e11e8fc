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
devices and to NET_RX, and a bounded per-CPU ring buffer (``BUFFER_KB_PER_CPU``). A reader thread
moves the binary pages the kernel has finished (``per_cpu/cpuN/trace_pipe_raw``, with ``splice``
as trace-cmd does) every ``DRAIN_INTERVAL_S`` and counts their records (``parse_page``); ``read``
does the same at once, so counts lag by at most the page each CPU is still filling; ``stop``
disables the events and counts those last pages too. (Reading the text ``trace_pipe`` instead
cost ~5 µs an event on the 2-vCPU VM, fell behind under load and lost events; reading a page the
writer is still filling gave counts off by up to ±40 % against /proc/softirqs.) ``reader_cpu_ns``
is what the reading cost this process. Events the ring buffer dropped are counted from the pages
(``TraceCounts.lost``) and the per-CPU ``stats`` (``overrun``). tracefs is mounted at
/sys/kernel/tracing when it is not mounted yet. Device names are global to the trace, not per
namespace: the caller names devices that are unique on the host while the trace runs (the testbed
gives each hop its own name).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
EVENT = "napi/napi_poll"
SOFTIRQ_EVENT = "irq/softirq_entry"
NET_RX_VEC = 3
BUFFER_KB_PER_CPU = 4096
DRAIN_INTERVAL_S = 0.05
PAGE_BYTES = 4096  # a ring-buffer sub-buffer when the kernel does not say (buffer_subbuf_size_kb)
_FIELD = re.compile(r"field:.*?\b(\w+)(?:\[\])?;\s*offset:(\d+);")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_U64 = struct.Struct("=Q")
_PAGE_HEADER = 16
_COMMIT_SIZE_MASK = (1 << 30) - 1
_MISSED_EVENTS = 1 << 31
_MISSED_STORED = 1 << 30
_PADDING, _TIME_EXTEND = 29, 30
_SPLICE_F_NONBLOCK = 2
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
    lost: int = 0  # records the ring buffer dropped (its pages say so)
    _open: dict[int, bool] = field(default_factory=dict)  # CPU -> its current NET_RX run is unattributed

    def snapshot(self) -> TraceCounts:
        """A copy of the counts (not of the parser state)."""
        return TraceCounts({d: DevPolls(p.polls, p.packets, p.empty) for d, p in self.devices.items()},
                           self.net_rx_runs, self.attributed_runs, dict(self.cpu_polls), self.lost)

    def minus(self, old: TraceCounts) -> TraceCounts:
        """The counts since ``old`` (a snapshot)."""
        zero = DevPolls()
        devices = {}
        for d, p in self.devices.items():
            o = old.devices.get(d, zero)
            devices[d] = DevPolls(p.polls - o.polls, p.packets - o.packets, p.empty - o.empty)
        cpus = {c: n - old.cpu_polls.get(c, 0) for c, n in self.cpu_polls.items()}
        return TraceCounts(devices, self.net_rx_runs - old.net_rx_runs, self.attributed_runs - old.attributed_runs,
                           cpus, self.lost - old.lost)

    @property
    def polls(self) -> int:
        """Polls of every traced device."""
        return sum(p.polls for p in self.devices.values())


@dataclass(frozen=True, slots=True)
class EventLayout:
    """Where the fields live in the binary records (from the events' ``format`` files)."""

    napi_id: int
    dev_name_offset: int  # a __data_loc u32: offset (low 16 bits) and length (high 16 bits)
    work_offset: int
    softirq_id: int
    vec_offset: int

    @staticmethod
    def from_formats(napi_format: str, softirq_format: str) -> EventLayout:
        """Parse ``events/napi/napi_poll/format`` and ``events/irq/softirq_entry/format`` texts."""
        napi, soft = _format_fields(napi_format), _format_fields(softirq_format)
        try:
            return EventLayout(napi["ID"], napi["dev_name"], napi["work"], soft["ID"], soft["vec"])
        except KeyError as exc:
            raise TraceUnavailable(errno.EPROTO, f"tracepoint format without field {exc}") from None


def _format_fields(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("ID:"):
            out["ID"] = int(line.split()[1])
        m = _FIELD.search(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def parse_page(page: bytes, counts: TraceCounts, cpu: int, layout: EventLayout) -> None:
    """Add the ``napi_poll`` and NET_RX ``softirq_entry`` records of one ring-buffer page of one CPU
    (``per_cpu/cpuN/trace_pipe_raw``) to ``counts``.

    Page: u64 timestamp, u64 commit (bytes of data; bit 31 = events were lost before this page, bit 30
    = their count is stored after the data), then records of a u32 header (type_len: 5 bits, time
    delta: 27 bits): type_len 1..28 = 4 * type_len bytes of data; 0 = a u32 length (itself included)
    then the data; 29 = padding (u32 length; a 0 delta pads the rest of the page); 30/31 = time
    records of 8 bytes (the layout ``events/header_event`` describes and libtraceevent's kbuffer reads).
    One CPU's records are in time order, so a NET_RX run is attributed when a wanted device's poll
    follows its ``softirq_entry`` before the next one.
    """
    commit = _U64.unpack_from(page, 8)[0]
    size = commit & _COMMIT_SIZE_MASK
    if commit & _MISSED_EVENTS:
        counts.lost += _U64.unpack_from(page, _PAGE_HEADER + size)[0] if commit & _MISSED_STORED else 1
    end = min(_PAGE_HEADER + size, len(page))
    off = _PAGE_HEADER
    devices, open_run = counts.devices, counts._open
    napi_id, softirq_id = layout.napi_id, layout.softirq_id
    polls = 0
    while off + 4 <= end:
        header = _U32.unpack_from(page, off)[0]
        type_len = header & 0x1F
        if type_len == _PADDING:
            if header >> 5 == 0:
                break
            off += 8 + _U32.unpack_from(page, off + 4)[0] - 4
            continue
        if type_len >= _TIME_EXTEND:
            off += 8
            continue
        if type_len:
            data, length = off + 4, type_len * 4
        else:
            data, length = off + 8, (_U32.unpack_from(page, off + 4)[0] - 4 + 3) & ~3
        off = data + length
        kind = _U16.unpack_from(page, data)[0]
        if kind == napi_id:
            loc = _U32.unpack_from(page, data + layout.dev_name_offset)[0]
            name_at = data + (loc & 0xFFFF)
            dev = page[name_at:name_at + (loc >> 16) - 1].decode(errors="replace")
            work = _I32.unpack_from(page, data + layout.work_offset)[0]
            entry = devices.get(dev)
            if entry is None:
                entry = devices[dev] = DevPolls()
            entry.add(work)
            polls += 1
            if open_run.get(cpu):
                counts.attributed_runs += 1
                open_run[cpu] = False
        elif kind == softirq_id and _U32.unpack_from(page, data + layout.vec_offset)[0] == NET_RX_VEC:
            counts.net_rx_runs += 1
            open_run[cpu] = True
    if polls:
        counts.cpu_polls[cpu] = counts.cpu_polls.get(cpu, 0) + polls


def filter_expression(devices: list[str] | tuple[str, ...]) -> str:
    """The tracefs event filter that keeps only ``devices`` (names checked: no quoting games)."""
    for d in devices:
        if not _DEV_RE.match(d):
            raise ValueError(f"device name {d!r}: not a network device name")
    return " || ".join(f'dev_name == "{d}"' for d in devices)


def remove_instance(name: str, root: Path = TRACEFS) -> bool:
    """Remove the tracefs instance ``vcoal-<name>`` a crashed trial left (events off, then rmdir);
    True when there was one."""
    inst = root / "instances" / f"vcoal-{name}"
    try:
        if not inst.is_dir():
            return False
    except OSError:  # tracefs not readable (not root): nothing of ours can be there
        return False
    for event in (EVENT, SOFTIRQ_EVENT):
        with contextlib.suppress(OSError):
            (inst / "events" / event / "enable").write_text("0")
    with contextlib.suppress(OSError):
        inst.rmdir()
    return not inst.is_dir()


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
        self._fds: dict[int, int] = {}  # CPU -> its per-CPU trace_pipe_raw
        self._lock = threading.Lock()
        self._pipe: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self.reader_cpu_ns = 0
        self.stopped = False
        try:
            (self.dir / "buffer_size_kb").write_text(str(buffer_kb_per_cpu))
            (self.dir / "trace_clock").write_text("mono")
            for event, condition in ((EVENT, expr), (SOFTIRQ_EVENT, f"vec == {NET_RX_VEC}")):
                (self.dir / "events" / event / "filter").write_text(condition)
                (self.dir / "events" / event / "enable").write_text("1")
            events = self.dir / "events"
            self.layout = EventLayout.from_formats((events / EVENT / "format").read_text(),
                                                   (events / SOFTIRQ_EVENT / "format").read_text())
            subbuf = self.dir / "buffer_subbuf_size_kb"
            self.page_bytes = int(subbuf.read_text()) * 1024 if subbuf.exists() else PAGE_BYTES
            self._pipe = os.pipe()
            for pipe in sorted((self.dir / "per_cpu").glob("cpu*/trace_pipe_raw")):
                cpu = int(pipe.parent.name[3:])
                self._fds[cpu] = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
            self._reader = threading.Thread(target=self._drain_loop, name=f"napitrace-{name}", daemon=True)
            self._reader.start()
        except BaseException:
            self.close()
            raise

    def _drain(self, partial: bool = False) -> None:
        """Move every full page of every CPU through a pipe (``splice``, as trace-cmd reads: whole
        pages the writer is done with) and count it; ``partial`` also reads the page still being
        written (only once tracing is stopped: reading it while the writer fills it is not safe)."""
        with self._lock:
            if self._pipe is None:
                return
            pipe_r, pipe_w = self._pipe
            for cpu, fd in self._fds.items():
                while True:
                    try:
                        moved = os.splice(fd, pipe_w, self.page_bytes, flags=_SPLICE_F_NONBLOCK)
                    except BlockingIOError:
                        break
                    if not moved:
                        break
                    page = os.read(pipe_r, moved)
                    for at in range(0, len(page), self.page_bytes):
                        parse_page(page[at:at + self.page_bytes], self.counts, cpu, self.layout)
                while partial:
                    try:
                        page = os.read(fd, self.page_bytes)
                    except BlockingIOError:
                        break
                    if not page:
                        break
                    parse_page(page, self.counts, cpu, self.layout)

    def _drain_loop(self) -> None:
        t0 = time.thread_time_ns()
        while not self._stop.wait(DRAIN_INTERVAL_S):
            self._drain()
            self.reader_cpu_ns = time.thread_time_ns() - t0

    def read(self) -> TraceCounts:
        """Drain the full pages; a snapshot of the cumulative counts (up to a page per CPU behind
        while tracing; complete after ``stop``)."""
        if not self._fds:
            raise RuntimeError("napi trace is closed")
        self._drain(partial=self.stopped)
        with self._lock:
            return self.counts.snapshot()

    def stop(self) -> TraceCounts:
        """Stop tracing; the complete counts (the pages still being filled included)."""
        for event in (EVENT, SOFTIRQ_EVENT):
            (self.dir / "events" / event / "enable").write_text("0")
        self.stopped = True
        return self.read()

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
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        with self._lock:
            for fd in (*self._fds.values(), *(self._pipe or ())):
                os.close(fd)
            self._fds, self._pipe = {}, None
        remove_instance(self.dir.name.removeprefix("vcoal-"), self.dir.parent.parent)

    def __enter__(self) -> NapiTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
