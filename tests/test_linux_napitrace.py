"""Per-device NAPI polls from the ``napi:napi_poll`` tracepoint: captured output and the real kernel.

``golden/linux/napi_poll_trace_pipe.txt`` is captured ``trace_pipe`` text (Linux 6.18, 2 vCPUs): a
tracefs instance with ``napi:napi_poll`` filtered to a veth pair ntva/ntvb (GRO on, TSO off) and
``irq:softirq_entry`` filtered to ``vec == 3``, during 5 UDP round trips of 64 B; then two lines
captured without the device filter while the veths had TSO on (their packets took the per-CPU
backlog, whose NAPI has no device: ``(no_device)``). /proc/softirqs rose by 10 NET_RX over the run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vcoal.linux import napitrace
from vcoal.linux.features import set_features
from vcoal.linux.napitrace import NapiTrace, TraceCounts, filter_expression, parse_lines
from vct_netns import netns, root, sh

CAPTURE = (Path(__file__).parent / "golden" / "linux" / "napi_poll_trace_pipe.txt").read_bytes()


def test_captured_trace_counts_polls_per_device_and_attributed_net_rx_runs():
    c = TraceCounts()
    assert parse_lines(CAPTURE, c) == b""
    assert {d: (p.polls, p.packets, p.empty) for d, p in c.devices.items()} == {
        "ntva": (5, 5, 0), "ntvb": (5, 5, 0), "(no_device)": (2, 2, 0)}
    # every NET_RX run polled one of the pair (each round trip: one run per direction and CPU)
    assert (c.net_rx_runs, c.attributed_runs) == (10, 10)
    assert c.cpu_polls == {0: 5 + 1, 1: 5 + 1}


def test_lines_split_anywhere_count_the_same():
    whole = TraceCounts()
    parse_lines(CAPTURE, whole)
    for cut in (1, 57, 200, len(CAPTURE) // 2, len(CAPTURE) - 3):
        parts = TraceCounts()
        rest = parse_lines(CAPTURE[:cut], parts)
        assert parse_lines(rest + CAPTURE[cut:], parts) == b""
        assert parts.snapshot() == whole.snapshot(), cut


def test_a_run_is_attributed_once_and_only_on_its_own_cpu():
    lines = textwrap.dedent("""\
        a-1 [000] ..s1. 1.000001: softirq_entry: vec=3 [action=NET_RX]
        a-1 [001] ..s1. 1.000002: softirq_entry: vec=3 [action=NET_RX]
        a-1 [000] ..s1. 1.000003: napi_poll: napi poll on napi struct 00 for device peth0 work 2 budget 64
        a-1 [000] ..s1. 1.000004: napi_poll: napi poll on napi struct 01 for device geth1 work 1 budget 64
        a-1 [000] ..s1. 1.000005: softirq_entry: vec=7 [action=SCHED]
        a-1 [001] ..s1. 1.000006: napi_poll: napi poll on napi struct 02 for device vif1.0 work 0 budget 64
        a-1 [001] ..s1. 1.000007: napi_poll: napi poll on napi struct 02 for device vif1.0 work 3 budget 64
        """).encode()
    c = TraceCounts()
    parse_lines(lines, c)
    assert (c.net_rx_runs, c.attributed_runs, c.polls) == (2, 2, 4)  # 2 NAPIs in one run: 1 attributed run
    assert (c.devices["vif1.0"].polls, c.devices["vif1.0"].packets, c.devices["vif1.0"].empty) == (2, 3, 1)
    later = c.snapshot()
    parse_lines(lines, c)
    d = c.minus(later)
    assert (d.net_rx_runs, d.attributed_runs, d.devices["peth0"].packets) == (2, 2, 2)


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


@root
def test_real_round_trips_are_one_poll_per_packet_on_each_end_and_explain_net_rx():
    """N UDP round trips over a veth pair (GRO on, TSO off): each end's NAPI polls N times, one packet
    each; the trace saw every NET_RX run /proc/softirqs counted, and nearly all of them polled the pair
    (the rest is the host's own traffic during the run)."""
    n = 200
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
            with NapiTrace("t" + a[-6:], ["vtra", "vtrb"]) as trace:
                before, net_rx0 = trace.read(), _net_rx()
                sh("ip", "netns", "exec", a, sys.executable, "-c", ECHO, "client", "198.18.77.2", str(n))
                after, net_rx1 = trace.read(), _net_rx()
                assert trace.overrun() == 0
            assert not any(Path("/sys/kernel/tracing/instances").glob(f"vcoal-t{a[-6:]}"))  # instance removed
        finally:
            server.wait(10)
    d = after.minus(before)
    for dev in ("vtra", "vtrb"):  # n, plus the ARP exchange and IPv6 neighbour packets of a fresh link
        assert n <= d.devices[dev].packets == d.devices[dev].polls <= n + 4, (dev, d.devices[dev])
    net_rx = net_rx1 - net_rx0
    assert 0.98 * net_rx <= d.net_rx_runs <= net_rx  # traced runs: read just before /proc, so never more
    assert d.attributed_runs >= 0.9 * net_rx, (d.attributed_runs, net_rx)


def _net_rx() -> int:
    line = next(x for x in Path("/proc/softirqs").read_text().splitlines() if x.strip().startswith("NET_RX:"))
    return sum(int(v) for v in line.split()[1:])
