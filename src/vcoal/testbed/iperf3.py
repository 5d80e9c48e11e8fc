"""iperf3 driver: pure ``build_*_argv()`` and ``parse()`` over ``-J`` output; golden-tested.

Quirks (iperf 3.12): ``-1`` makes the server exit after one test, so a server per client run is
started and ended by PID; the client's JSON holds both ends' CPU (getrusage, % of one CPU over the
test) as ``end.cpu_utilization_percent.host_total`` / ``remote_total``; in reverse mode (``-R``)
the server sends and ``sum_received`` is measured at the client.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IperfClient:
    """An iperf3 client run: TCP (paced at ``rate_bps`` when set) or UDP at ``rate_bps`` (``udp``)."""

    ip: str
    port: int
    duration_s: float
    reverse: bool = False
    rate_bps: float | None = None
    udp: bool = False
    packet_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.duration_s < 1:
            raise ValueError(f"iperf3 duration_s={self.duration_s}: must be >= 1")


def build_server_argv(ip: str, port: int) -> list[str]:
    """Server for exactly one test (``-1``), bound to one address."""
    return ["iperf3", "-s", "-B", ip, "-p", str(port), "-1"]


def build_argv(c: IperfClient) -> list[str]:
    """Client argv with JSON output; ``-t`` takes whole seconds (rounded up)."""
    argv = ["iperf3", "-c", c.ip, "-p", str(c.port), "-t", str(max(1, math.ceil(c.duration_s))), "-J"]
    if c.reverse:
        argv.append("-R")
    if c.udp:
        argv.append("-u")
    if c.rate_bps is not None:
        argv += ["-b", str(int(c.rate_bps))]
    if c.packet_bytes is not None:
        argv += ["-l", str(c.packet_bytes)]
    return argv


@dataclass(frozen=True, slots=True)
class IperfResult:
    """Receiver-side throughput and both ends' CPU as iperf3 reports them."""

    seconds: float
    bytes_received: int
    bits_per_second: float
    retransmits: int
    cpu_sender_pct: float
    cpu_receiver_pct: float
    interval_bps: list[float] = field(default_factory=list)


def parse(text: str) -> IperfResult:
    """Parse a client's ``-J`` output; ValueError with iperf3's own error message on failure."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"iperf3 output: not JSON ({exc.msg})") from None
    if "error" in data:
        raise ValueError(f"iperf3: {data['error']}")
    end = data.get("end") or {}
    recv = end.get("sum_received") or end.get("sum")
    if not recv:
        raise ValueError("iperf3 output: no end.sum_received")
    sent = end.get("sum_sent") or {}
    cpu = end.get("cpu_utilization_percent") or {}
    reverse = bool(data.get("start", {}).get("test_start", {}).get("reverse", 0))
    host, remote = float(cpu.get("host_total", math.nan)), float(cpu.get("remote_total", math.nan))
    # the client ("host") sends unless reversed
    sender, receiver = (remote, host) if reverse else (host, remote)
    intervals = [float(i["sum"]["bits_per_second"]) for i in data.get("intervals", []) if "sum" in i]
    return IperfResult(
        seconds=float(recv.get("seconds", 0.0)),
        bytes_received=int(recv.get("bytes", 0)),
        bits_per_second=float(recv.get("bits_per_second", 0.0)),
        retransmits=int(sent.get("retransmits", 0) or 0),
        cpu_sender_pct=sender,
        cpu_receiver_pct=receiver,
        interval_bps=intervals,
    )
