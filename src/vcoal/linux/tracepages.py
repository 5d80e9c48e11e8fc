"""Counts from the kernel's binary ring-buffer pages (``per_cpu/cpuN/trace_pipe_raw``) of the
``napi:napi_poll`` and NET_RX ``irq:softirq_entry`` events (``vcoal.linux.napitrace`` reads them).

A page: u64 timestamp, u64 commit (bytes of data; bit 31 = events were lost before this page, bit 30 =
their count is stored after the data), then records of a u32 header (type_len: 5 bits, time delta: 27
bits): type_len 1..28 = 4 * type_len bytes of data; 0 = a u32 length (itself included) then the data;
29 = padding (u32 length; a 0 delta pads the rest of the page); 30/31 = time records of 8 bytes (the
layout ``events/header_event`` describes and libtraceevent's kbuffer reads). Records are 4-byte aligned.

The pages are walked by one numba-compiled function (cached on disk; ``NapiTrace`` compiles it before
tracing starts), a batch of pages at a time, without the GIL. (Walking them in Python with ``struct``
cost ~1.3 µs a record, ~150 µs a page: 0.90 s of CPU for the 5,575 pages of one 2 s settle trial on
the 2-vCPU VM, so the reader fell behind and a window's sample came up to 0.4 s late.)
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field

import numpy as np
from numba import njit

NET_RX_VEC = 3
PAGE_HEADER_BYTES = 16
NAME_BYTES = 16  # IFNAMSIZ: a device name and its NUL
_COMMIT_SIZE_MASK = (1 << 30) - 1
_MISSED_EVENTS = 1 << 31
_MISSED_STORED = 1 << 30
_PADDING = 29
_FIELD = re.compile(r"field:.*?\b(\w+)(?:\[\])?;\s*offset:(\d+);")
MAX_DEVICES = 256  # distinct device names in one batch of pages
_RUNS, _ATTRIBUTED, _LOST, _POLLS, _OPEN, _N_DEVICES, _N_OUT = range(7)  # parse_pages' counters


class TraceUnavailable(OSError):
    """tracefs or the ``napi:napi_poll`` event cannot be used here (not root, no tracefs, old kernel)."""


@dataclass(slots=True)
class DevPolls:
    """Cumulative NAPI polls of one device: calls, packets processed, and polls that found none."""

    polls: int = 0
    packets: int = 0
    empty: int = 0  # polls that found no packet (work 0)


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
    """Where the fields live in the binary records (from the events' ``format`` files), in bytes
    from the start of a record's data."""

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
            layout = EventLayout(napi["ID"], napi["dev_name"], napi["work"], soft["ID"], soft["vec"])
        except KeyError as exc:
            raise TraceUnavailable(errno.EPROTO, f"tracepoint format without field {exc}") from None
        for name in ("dev_name_offset", "work_offset", "vec_offset"):
            if getattr(layout, name) % 4:
                raise TraceUnavailable(errno.EPROTO, f"tracepoint format: {name} {getattr(layout, name)} "
                                                     "is not a multiple of 4 (a u32 field must be aligned)")
        return layout


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
    """Add the records of one page of one CPU to ``counts`` (``parse_pages`` of one page)."""
    parse_pages(page, len(page) + -len(page) % 4, counts, cpu, layout)


def parse_pages(buf: bytes, page_bytes: int, counts: TraceCounts, cpu: int, layout: EventLayout) -> None:
    """Add the ``napi_poll`` and NET_RX ``softirq_entry`` records of consecutive ring-buffer pages of
    one CPU (``buf``: pages of ``page_bytes`` each, in the order read; a short last page is padded) to
    ``counts``. One CPU's records are in time order, so a NET_RX run is attributed when a wanted
    device's poll follows its ``softirq_entry`` before the next one (across pages too)."""
    if page_bytes <= PAGE_HEADER_BYTES or page_bytes % 4:
        raise ValueError(f"page_bytes {page_bytes}: a ring-buffer page is a multiple of 4 bytes above {PAGE_HEADER_BYTES}")
    n_pages = -(-len(buf) // page_bytes)
    if not n_pages:
        return
    raw = np.zeros(n_pages * page_bytes + NAME_BYTES, np.uint8)
    raw[:len(buf)] = np.frombuffer(buf, np.uint8)
    keys = np.zeros((MAX_DEVICES, 2), np.int64)
    tallies = np.zeros((MAX_DEVICES, 3), np.int64)
    out = np.zeros(_N_OUT, np.int64)
    out[_OPEN] = counts._open.get(cpu, False)
    _walk(raw, page_bytes // 4, layout.napi_id, layout.softirq_id, layout.dev_name_offset // 4,
          layout.work_offset // 4, layout.vec_offset // 4, keys, tallies, out)
    if out[_N_DEVICES] > MAX_DEVICES:
        raise ValueError(f"more than {MAX_DEVICES} devices polled in one batch of pages (a trace filters to its devices)")
    for (k0, k1), (polls, packets, empty) in zip(keys[:out[_N_DEVICES]].tolist(), tallies[:out[_N_DEVICES]].tolist(),
                                                 strict=True):
        name = (k0.to_bytes(8, "little", signed=True) + k1.to_bytes(8, "little", signed=True)).rstrip(b"\0")
        dev = name.decode(errors="replace")
        entry = counts.devices.get(dev)
        if entry is None:
            entry = counts.devices[dev] = DevPolls()
        entry.polls += polls
        entry.packets += packets
        entry.empty += empty
    counts.net_rx_runs += int(out[_RUNS])
    counts.attributed_runs += int(out[_ATTRIBUTED])
    counts.lost += int(out[_LOST])
    counts._open[cpu] = bool(out[_OPEN])
    if out[_POLLS]:
        counts.cpu_polls[cpu] = counts.cpu_polls.get(cpu, 0) + int(out[_POLLS])


@njit(cache=True, nogil=True)
def _walk(raw, page_words, napi_id, softirq_id, dev_w, work_w, vec_w, keys, tallies, out):  # pragma: no cover
    """Walk every page's records in order (compiled); per-device polls, packets and empty polls go
    to ``keys`` (the name's 16 bytes as two int64) and ``tallies``, the rest to ``out``."""
    words = raw[:raw.shape[0] - NAME_BYTES].view(np.uint32)
    n_words = words.shape[0]
    napi_fields = max(dev_w, work_w)
    run_open = out[_OPEN] != 0
    n_dev = 0
    for base in range(0, n_words - page_words + 1, page_words):
        commit = np.int64(words[base + 2]) | (np.int64(words[base + 3]) << 32)
        size = commit & _COMMIT_SIZE_MASK
        end = base + min(PAGE_HEADER_BYTES + size, page_words * 4) // 4
        if commit & _MISSED_EVENTS:
            at = base + (PAGE_HEADER_BYTES + size) // 4
            if commit & _MISSED_STORED and at + 1 < base + page_words:
                out[_LOST] += np.int64(words[at]) | (np.int64(words[at + 1]) << 32)
            else:
                out[_LOST] += 1
        i = base + PAGE_HEADER_BYTES // 4
        while i < end:
            header = np.int64(words[i])
            type_len = header & 0x1F
            following = np.int64(words[i + 1]) if i + 1 < n_words else 0
            if type_len == _PADDING:
                if header >> 5 == 0:  # the rest of the page
                    break
                i += 1 + ((following + 3) >> 2)
                continue
            if type_len > _PADDING:  # time extend / time stamp
                i += 2
                continue
            if type_len:
                data = i + 1
                i = data + type_len
            else:
                data = i + 2
                i = data + ((following - 4 + 3) >> 2)
            if data >= n_words:
                break
            kind = np.int64(words[data]) & 0xFFFF
            if kind == napi_id and data + napi_fields < n_words:
                loc = np.int64(words[data + dev_w])
                at = data * 4 + (loc & 0xFFFF)
                length = min(max((loc >> 16) - 1, 0), NAME_BYTES, max(raw.shape[0] - at, 0))
                k0 = np.int64(0)
                k1 = np.int64(0)
                for j in range(length):
                    if j < 8:
                        k0 |= np.int64(raw[at + j]) << (8 * j)
                    else:
                        k1 |= np.int64(raw[at + j]) << (8 * (j - 8))
                d = 0
                while d < n_dev and (keys[d, 0] != k0 or keys[d, 1] != k1):
                    d += 1
                if d == n_dev:
                    if n_dev == MAX_DEVICES:
                        out[_N_DEVICES] = MAX_DEVICES + 1
                        return
                    keys[d, 0] = k0
                    keys[d, 1] = k1
                    n_dev += 1
                work = np.int64(np.int32(words[data + work_w]))
                tallies[d, 0] += 1
                tallies[d, 1] += work
                if work == 0:
                    tallies[d, 2] += 1
                out[_POLLS] += 1
                if run_open:
                    out[_ATTRIBUTED] += 1
                    run_open = False
            elif kind == softirq_id and data + vec_w < n_words and words[data + vec_w] == NET_RX_VEC:
                out[_RUNS] += 1
                run_open = True
    out[_OPEN] = run_open
    out[_N_DEVICES] = n_dev
