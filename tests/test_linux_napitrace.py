"""Per-device NAPI polls from the ``napi:napi_poll`` tracepoint: captured pages and the real kernel.

``golden/linux/napi_poll_raw_pages.json`` is captured (Linux 6.18, 2 vCPUs): the events' ``format``
files and the ring-buffer pages of ``per_cpu/cpuN/trace_pipe_raw`` that held ``napi_poll`` records
while 8 UDP round trips crossed a veth pair ntva/ntvb (GRO on, TSO off), among the NET_RX
``softirq_entry`` records of the whole (busy) host. The synthetic pages below are built from the
documented record layout (``events/header_page``, ``events/header_event``), independently of the
parser.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vcoal.linux import napitrace
from vcoal.linux.features import set_features
from vcoal.linux.napitrace import NapiTrace, filter_expression
from vcoal.linux.tracepages import (
    MAX_DEVICES,
    EventLayout,
    TraceCounts,
    TraceUnavailable,
    parse_page,
    parse_pages,
)
from vct_netns import netns, root, sh

CAPTURE = json.loads((Path(__file__).parent / "golden" / "linux" / "napi_poll_raw_pages.json").read_text())
LAYOUT = EventLayout.from_formats(CAPTURE["formats"]["napi_poll"], CAPTURE["formats"]["softirq_entry"])


def test_layout_read_from_the_captured_format_files():
    assert EventLayout(napi_id=2291, dev_name_offset=16, work_offset=20, softirq_id=223, vec_offset=8) == LAYOUT
    with pytest.raises(TraceUnavailable, match="work"):
        EventLayout.from_formats(CAPTURE["formats"]["napi_poll"].replace("work;", "done;"),
                                 CAPTURE["formats"]["softirq_entry"])


def test_captured_pages_count_every_poll_and_attribute_each_to_its_net_rx_run():
    c = TraceCounts()
    for cpu, page in CAPTURE["pages"]:
        parse_page(bytes.fromhex(page), c, cpu, LAYOUT)
    assert {d: (p.polls, p.packets, p.empty) for d, p in c.devices.items()} == {"ntva": (8, 8, 0), "ntvb": (8, 8, 0)}
    # each direction of a round trip ran in a NET_RX run of its own; the host's other runs polled neither
    assert c.attributed_runs == 16 and c.net_rx_runs > c.attributed_runs and c.lost == 0


def _record(kind: int, fields: bytes) -> bytes:
    """One ring-buffer record: a u32 header (type_len in the low 5 bits) and the event data."""
    data = struct.pack("=HBBi", kind, 0, 0, 77) + fields
    data += b"\0" * (-len(data) % 4)
    if len(data) <= 28 * 4:
        return struct.pack("=I", (5 << 5) | len(data) // 4) + data
    return struct.pack("=II", 5 << 5, len(data) + 4) + data  # type_len 0: the length, itself included


def _poll(dev: str, work: int, pad: int = 0) -> bytes:
    name = dev.encode() + b"\0"
    return _record(2291, struct.pack("=QIii", 0xFFFF, (len(name) << 16) | 28, work, 64) + name + b"\0" * pad)


def _softirq(vec: int) -> bytes:
    return _record(223, struct.pack("=I", vec))


def _page(*records: bytes, missed: int | None = None) -> bytes:
    body = b"".join(records)
    commit = len(body) | ((1 << 31) | (1 << 30) if missed else 0)
    page = struct.pack("=QQ", 123, commit) + body + (struct.pack("=Q", missed) if missed else b"")
    return page + b"\0" * (4096 - len(page))


def test_synthetic_pages_long_records_padding_time_records_and_lost_events():
    time_extend = struct.pack("=II", 30, 1)
    discarded = struct.pack("=II", (1 << 5) | 29, 12) + b"\0" * 8  # padding of a discarded event: 4 + 12 bytes
    c = TraceCounts()
    parse_page(_page(_softirq(3), time_extend, _poll("peth0", 2), _poll("geth1", 1), _softirq(7),
                     _softirq(3), discarded, _softirq(3)), c, 0, LAYOUT)
    # the last run of page 1 continues on page 2 of the same CPU: its poll attributes it
    parse_page(_page(_poll("vif1.0", 0, pad=120), _poll("vif1.0", 64), missed=5), c, 0, LAYOUT)
    parse_page(_page(_poll("peth0", 3), _softirq(3)), c, 1, LAYOUT)  # another CPU: no run open there
    assert {d: (p.polls, p.packets, p.empty) for d, p in c.devices.items()} == {
        "peth0": (2, 5, 0), "geth1": (1, 1, 0), "vif1.0": (2, 64, 1)}
    assert (c.net_rx_runs, c.attributed_runs, c.lost, c.cpu_polls) == (4, 2, 5, {0: 4, 1: 1})
    later = c.snapshot()
    parse_page(_page(_softirq(3), _poll("peth0", 1)), c, 1, LAYOUT)
    d = c.minus(later)
    assert (d.net_rx_runs, d.attributed_runs, d.devices["peth0"].packets, d.devices["geth1"].polls) == (1, 1, 1, 0)


def test_a_batch_of_pages_counts_as_its_pages_one_by_one():
    """The reader parses all pages a CPU has ready at once: the same counts as page by page, a NET_RX
    run that continues on the next page included."""
    pages = [_page(_softirq(3), _poll("peth0", 2), _softirq(3)), _page(_poll("geth1", 0, pad=120), _softirq(7)),
             _page(_softirq(3), missed=2), _page(_poll("peth0", 5), _poll("vif1.0", 1))]
    one, batch = TraceCounts(), TraceCounts()
    for page in pages:
        parse_page(page, one, 0, LAYOUT)
    parse_pages(b"".join(pages), 4096, batch, 0, LAYOUT)
    for c in (one, batch):
        assert {d: (p.polls, p.packets, p.empty) for d, p in c.devices.items()} == {
            "peth0": (2, 7, 0), "geth1": (1, 0, 1), "vif1.0": (1, 1, 0)}
        assert (c.net_rx_runs, c.attributed_runs, c.lost, c.cpu_polls, c._open) == (3, 3, 2, {0: 4}, {0: False})
    with pytest.raises(ValueError, match="page_bytes 4094"):
        parse_pages(pages[0], 4094, one, 0, LAYOUT)


def test_more_devices_than_a_batch_holds_is_an_error_not_a_wrong_count():
    n = MAX_DEVICES + 1
    polls = [_poll(f"d{k}", 1) for k in range(n)]
    pages = [_page(*polls[at:at + 80]) for at in range(0, n, 80)]
    with pytest.raises(ValueError, match=f"more than {n - 1} devices"):
        parse_pages(b"".join(pages), 4096, TraceCounts(), 0, LAYOUT)


def test_a_format_with_an_unaligned_field_is_refused():
    with pytest.raises(TraceUnavailable, match="work_offset 22 is not a multiple of 4"):
        EventLayout.from_formats(CAPTURE["formats"]["napi_poll"].replace("offset:20;", "offset:22;"),
                                 CAPTURE["formats"]["softirq_entry"])


def test_filter_refuses_names_that_are_not_device_names():
    assert filter_expression(["peth0", "vif1.0"]) == 'dev_name == "peth0" || dev_name == "vif1.0"'
    for bad in ('x" || 1', "", "a" * 16, "a b"):
        with pytest.raises(ValueError, match="device name"):
            filter_expression([bad])


def test_without_tracefs_it_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(napitrace.os, "geteuid", lambda: 1000)
    with pytest.raises(napitrace.TraceUnavailable, match="needs root"):
        NapiTrace("x", ["peth0"], root=tmp_path)


ECHO = textwrap.dedent("""\
    import socket, sys
    role, ip, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    if role == "server":
        s.bind((ip, 9999))
        print("ready", flush=True)
        for _ in range(n):
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
    else:
        for _ in range(n):
            s.sendto(b"x" * 64, (ip, 9999))
            s.recv(2048)
    """)


@contextlib.contextmanager
def _echo_pair(n: int):
    """A veth pair vtra/vtrb (GRO on, TSO off) across two new namespaces and a UDP echo server on
    vtrb for ``n`` round trips; yields (vtra's namespace, a function that runs the round trips)."""
    with netns() as a, netns() as b:
        sh("ip", "-n", a, "link", "add", "vtra", "type", "veth", "peer", "name", "vtrb", "netns", b)
        for ns, dev, ip in ((a, "vtra", "198.18.77.1"), (b, "vtrb", "198.18.77.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            set_features(ns, dev, {"gro": True, "tso": False})
        server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", ECHO, "server", "198.18.77.2", str(n)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "ready"
            yield a, lambda: sh("ip", "netns", "exec", a, sys.executable, "-c", ECHO, "client", "198.18.77.2", str(n))
        finally:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:  # the round trips did not all run: end the server we started
                server.kill()
                server.wait()


@root("ip")
def test_real_round_trips_are_one_poll_per_packet_on_each_end_and_explain_net_rx(tracefs):
    """N UDP round trips over a veth pair (GRO on, TSO off): each end's NAPI polls N times, one packet
    each; the trace saw every NET_RX run /proc/softirqs counted, and nearly all of them polled the pair
    (the rest is the host's own traffic during the run)."""
    n = 200
    with _echo_pair(n) as (a, round_trips):
        with NapiTrace("t" + a[-6:], ["vtra", "vtrb"]) as trace:
            net_rx0 = _net_rx()
            round_trips()
            net_rx1 = _net_rx()
            d = trace.stop()  # stopped: the pages still being written are counted too
            assert trace.overrun() == 0 and d.lost == 0
        assert not any(Path("/sys/kernel/tracing/instances").glob(f"vcoal-t{a[-6:]}"))  # instance removed
    for dev in ("vtra", "vtrb"):  # n, plus the ARP exchange and IPv6 neighbour packets of a fresh link
        assert n <= d.devices[dev].packets == d.devices[dev].polls <= n + 4, (dev, d.devices[dev])
    net_rx = net_rx1 - net_rx0
    assert 0.9 * net_rx <= d.net_rx_runs <= net_rx + 2  # runs between the last /proc read and the stop
    # a ping-pong polls one NAPI per NET_RX run: (nearly) every poll is an attributed run of its own;
    # the host's other traffic makes NET_RX runs that poll neither end, and those are not attributed
    assert 0.8 * d.polls <= d.attributed_runs <= min(d.polls, d.net_rx_runs), d


def _net_rx() -> int:
    line = next(x for x in Path("/proc/softirqs").read_text().splitlines() if x.strip().startswith("NET_RX:"))
    return sum(int(v) for v in line.split()[1:])


@root("ip")
def test_a_failure_in_the_reader_thread_fails_every_later_read(tracefs, monkeypatch):
    """Pages the reader thread took are gone when counting them fails; the next read must say so
    rather than return counts without them (here one batch fails, the next would count fine)."""
    real = napitrace.parse_pages
    failed = []

    def fails_once(*args):
        if not failed:
            failed.append(args[3])
            raise ValueError("a page the parser refuses")
        return real(*args)

    # 2000 round trips: enough records to fill pages (the reader thread takes only full ones)
    with _echo_pair(2000) as (a, round_trips), NapiTrace("f" + a[-6:], ["vtra", "vtrb"]) as trace:
        monkeypatch.setattr(napitrace, "parse_pages", fails_once)
        round_trips()
        trace._reader.join(5)  # the reader thread ends when a drain fails
        assert failed, "the reader thread never drained a page"
        for _ in range(2):  # every later read, not just the first
            with pytest.raises(RuntimeError, match=r"a drain failed.*a page the parser refuses"):
                trace.read()
