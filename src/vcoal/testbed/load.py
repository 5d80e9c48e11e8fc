"""Map a scenario's tenants to real tool processes on the testbed topology (pure).

* ``request_response`` → sockperf ping-pong (UDP, one request in flight, ``request_bytes``),
  client in the wire namespace, server in the guest: every round trip crosses peth0, xenbr0,
  vifN.0 and geth0 both ways. With ``think_us > 0`` or ``outstanding > 1`` it becomes sockperf
  under-load at the equivalent rate, every reply measured.
* A constant ``think_us`` or ``interarrival`` table maps like a number (the tools pace evenly); any
  other distribution, on/off bursts and rate steps are refused in one line (``workload_problem``).
* ``poisson`` → sockperf under-load at ``rate_pps`` (sockperf paces evenly, not Poisson, and spins
  to do it: a client keeps a CPU busy); the server answers one message in ``reply_every`` (default
  every one) and those replies are timed. ``reply_every = 0``: a one-way small-packet UDP stream,
  iperf3 ``-u`` at ``rate_pps`` messages of ``packet_bytes`` (paced by timers, no spinning; the
  simulator's poisson is one-way too).
* ``bulk`` → iperf3 TCP; direction ``rx`` = wire sends to the guest, ``tx`` = guest sends (``-R``);
  ``pace_gbps > 0`` → iperf3 ``-b`` (application pacing).
* ``trace`` → not supported on the testbed (ValueError).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from vcoal.linux.topology import TopologyPlan
from vcoal.spec import ScenarioSpec
from vcoal.testbed import iperf3, sockperf
from vcoal.testbed.sockperf import COOLDOWN_S, WARMUP_S

SOCKPERF_BASE_PORT = 11111
IPERF_BASE_PORT = 5201
#: workload kind -> the load tool that runs it on the testbed
TOOL_OF_KIND = {"request_response": "sockperf", "poisson": "sockperf", "bulk": "iperf3"}


def tool_of(workload) -> str | None:
    """The load tool that runs a workload on the testbed (None: not supported)."""
    if workload.kind == "poisson" and workload.reply_every == 0:
        return "iperf3"
    return TOOL_OF_KIND.get(workload.kind)
#: load tool -> the Debian package that installs it
TOOL_PACKAGES = {"sockperf": "sockperf", "iperf3": "iperf3"}


def check_tools(spec: ScenarioSpec) -> None:
    """Refuse (ValueError, one line) a spec whose tenants need a load tool that is not installed,
    or a workload the testbed cannot run, before anything is built."""
    missing: dict[str, list[str]] = {}
    for g in spec.guests:
        bad = workload_problem(g)
        if bad is not None:
            raise ValueError(bad)
        tool = tool_of(g.workload)
        if tool is None:
            raise ValueError(f"guests.{g.name}.workload.kind={g.workload.kind!r}: not supported on the testbed")
        if shutil.which(tool) is None:
            missing.setdefault(tool, []).append(g.name)
    if missing:
        needs = ", ".join(f"{tool} (tenants {', '.join(names)})" for tool, names in missing.items())
        packages = " ".join(TOOL_PACKAGES[t] for t in missing)
        raise ValueError(f"the testbed needs {needs}, not installed: apt-get install {packages}")


#: distribution fields the testbed maps when constant: its load tools pace evenly, so a fixed think
#: time or evenly spaced arrivals are what they do (a size table that is constant is a number already)
MAPPED_CONSTANT = ("think_us", "interarrival")


def workload_problem(g) -> str | None:
    """Why the testbed cannot run guest ``g``'s workload as specified (one line), or None: a
    distribution other than a constant think time or interarrival, on/off bursts, rate steps."""
    w = g.workload
    where = f"guests.{g.name}.workload"
    for field, d in w.dists().items():
        if not (d.dist == "constant" and field in MAPPED_CONSTANT):
            return (f"{where}.{field}: dist = {d.dist!r}: the testbed's load tools send fixed sizes and times, not "
                    "distributions (simulator only; give a number)")
    if w.bursty():
        return (f"{where}.on_us: on/off bursts: the testbed's load tools send at one steady rate (simulator only; "
                "on_us = off_us = 0)")
    if w.steps:
        return f"{where}.steps: rate steps: the testbed's load tools send at one steady rate (simulator only)"
    return None


@dataclass(frozen=True, slots=True)
class TenantLoad:
    """The processes of one tenant: a server in the guest, a client on the wire."""

    tenant: str
    kind: str
    tool: str  # "sockperf" | "iperf3"
    direction: str
    server_ns: str
    server_argv: tuple[str, ...]
    port: int
    proto: str  # transport the server listens on: "udp" | "tcp"
    client_ns: str
    client: sockperf.SockperfClient | iperf3.IperfClient
    msg_bytes: int


def plan_loads(spec: ScenarioSpec, topo: TopologyPlan, measure_s: float, log_dir: str) -> list[TenantLoad]:
    """One TenantLoad per guest; sockperf clients log every sample to ``log_dir/<tenant>.csv``.

    ``measure_s`` is the measured period; sockperf runs longer by its warm-up and cool-down so
    that its valid samples cover the period.
    """
    loads = []
    for i, g in enumerate(spec.guests):
        gp = topo.guest(g.name)
        w = g.workload
        if w.kind == "poisson" and w.reply_every == 0:
            port = IPERF_BASE_PORT + i
            client = iperf3.IperfClient(
                ip=gp.ip, port=port, duration_s=measure_s + 1, reverse=w.direction == "tx",
                rate_bps=w.rate_pps * w.packet_bytes * 8, udp=True, packet_bytes=w.packet_bytes,
            )
            loads.append(
                TenantLoad(
                    g.name, w.kind, "iperf3", w.direction, gp.ns,
                    tuple(iperf3.build_server_argv(gp.ip, port)), port, "tcp", topo.wire_ns, client,
                    w.packet_bytes,
                )
            )
        elif w.kind in ("request_response", "poisson"):
            port = SOCKPERF_BASE_PORT + i
            mode, mps, reply_every = "pp", None, 1
            if w.kind == "poisson":
                mode, mps, reply_every = "ul", max(1, round(w.rate_pps)), w.reply_every
            elif w.mean_of("think_us") > 0 or w.outstanding > 1:
                per_req_us = max(w.mean_of("think_us"), 1.0)
                mode, mps = "ul", max(1, round(w.outstanding * 1e6 / per_req_us))
            size = max(14, w.packet_bytes if w.kind == "poisson" else w.request_bytes)
            client = sockperf.SockperfClient(
                ip=gp.ip,
                port=port,
                duration_s=measure_s + WARMUP_S + COOLDOWN_S,
                mode=mode,
                msg_bytes=size,
                mps=mps,
                reply_every=reply_every if mode == "ul" else None,
                full_log=f"{log_dir}/{g.name}.csv",
            )
            loads.append(
                TenantLoad(
                    g.name, w.kind, "sockperf", w.direction, gp.ns,
                    tuple(sockperf.build_server_argv(gp.ip, port)), port, "udp", topo.wire_ns, client, size,
                )
            )
        elif w.kind == "bulk":
            port = IPERF_BASE_PORT + i
            # one extra second so the client is still running (and measurable) when the period ends
            client = iperf3.IperfClient(
                ip=gp.ip, port=port, duration_s=measure_s + 1, reverse=w.direction == "tx",
                rate_bps=w.pace_gbps * 1e9 if w.pace_gbps > 0 else None,
            )
            loads.append(
                TenantLoad(
                    g.name, w.kind, "iperf3", w.direction, gp.ns,
                    tuple(iperf3.build_server_argv(gp.ip, port)), port, "tcp", topo.wire_ns, client,
                    w.packet_bytes,
                )
            )
        else:
            raise ValueError(f"guests.{g.name}.workload.kind={w.kind!r}: not supported on the testbed")
    return loads


def client_argv(load: TenantLoad) -> list[str]:
    """The client's argv (pure)."""
    if isinstance(load.client, sockperf.SockperfClient):
        return sockperf.build_argv(load.client)
    return iperf3.build_argv(load.client)
