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
as trace-cmd does) every ``DRAIN_INTERVAL_S`` and counts their records (``vcoal.linux.tracepages``); ``read``
does the same at once, so counts lag by at most the page each CPU is still filling; ``stop``
disables the events and counts those last pages too. (Reading the text ``trace_pipe`` instead
cost ~5 µs an event on the 2-vCPU VM, fell behind under load and lost events; reading a page the
writer is still filling gave counts off by up to ±40 % against /proc/softirqs.) ``reader_cpu_ns``
is what draining and counting cost this process (the reader thread's and ``read``'s). Events the ring buffer dropped are counted from the pages
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
import subprocess
import threading
import time
from pathlib import Path

from vcoal.linux.tracepages import (
    NET_RX_VEC,
    DevPolls,
    EventLayout,
    TraceCounts,
    TraceUnavailable,
    parse_pages,
)

__all__ = ["NapiTrace", "TraceCounts", "TraceUnavailable", "ensure_tracefs", "filter_expression", "remove_instance"]

TRACEFS = Path("/sys/kernel/tracing")
EVENT = "napi/napi_poll"
SOFTIRQ_EVENT = "irq/softirq_entry"
BUFFER_KB_PER_CPU = 4096
DRAIN_INTERVAL_S = 0.05
PAGE_BYTES = 4096  # a ring-buffer sub-buffer when the kernel does not say (buffer_subbuf_size_kb)
_SPLICE_F_NONBLOCK = 2
_OVERRUN = re.compile(rb"^overrun: (\d+)$", re.M)
_DEV_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


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


def _padded(data: bytes, page_bytes: int) -> bytes:
    """Whole pages: a short read padded with zeros (a page says how much of it is data)."""
    return data + bytes(-len(data) % page_bytes)


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
        self._failed: BaseException | None = None  # what ended the reader thread
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
            parse_pages(bytes(self.page_bytes), self.page_bytes, TraceCounts(), 0, self.layout)  # compiled now, not in a window
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
            t0 = time.thread_time_ns()
            try:
                self._drain_locked(partial)
            except Exception as exc:  # the pages it held are gone: every later read must fail, not undercount
                self._failed = exc
                raise
            finally:
                self.reader_cpu_ns += time.thread_time_ns() - t0

    def _drain_locked(self, partial: bool) -> None:
        """``_drain``'s work, under its lock."""
        pipe_r, pipe_w = self._pipe
        for cpu, fd in self._fds.items():
            pages = []
            while True:
                try:
                    moved = os.splice(fd, pipe_w, self.page_bytes, flags=_SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    break
                if not moved:
                    break
                pages.append(_padded(os.read(pipe_r, moved), self.page_bytes))
            while partial:
                try:
                    page = os.read(fd, self.page_bytes)
                except BlockingIOError:
                    break
                if not page:
                    break
                pages.append(_padded(page, self.page_bytes))
            if pages:
                parse_pages(b"".join(pages), self.page_bytes, self.counts, cpu, self.layout)

    def _drain_loop(self) -> None:
        with contextlib.suppress(Exception):  # a failure is kept in _failed; read() raises it
            while not self._stop.wait(DRAIN_INTERVAL_S):
                self._drain()

    def read(self) -> TraceCounts:
        """Drain the full pages; a snapshot of the cumulative counts (up to a page per CPU behind
        while tracing; complete after ``stop``)."""
        if not self._fds:
            raise RuntimeError("napi trace is closed")
        self._drain(partial=self.stopped)
        with self._lock:
            if self._failed is not None:
                raise RuntimeError(f"napi trace: a drain failed, counts are incomplete: {self._failed}") from self._failed
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
