"""Facts about a valid scenario worth showing: open-loop load above the link, core placement.

``link_warning(spec)`` compares each direction's open-loop offered load with ``host.link_gbps``.
The simulator serialises every sender on the wire, open-loop arrivals (``poisson``, ``trace``)
included: an open-loop tenant offering more than the link carries queues at its sender and the
host sees the link rate (on a one-layer host, the reference queue of simulation.md B.1, arrivals
reach the NIC at their drawn times and are not link-limited). Either way the spec offers a load
no wire delivers: a warning naming the tenants, not a refusal.
``placement_line(spec)`` says which NIC queues and backends share each driver-domain core.
"""

from __future__ import annotations

from vcoal.spec.scenario import ScenarioSpec, WorkloadSpec

BITS_PER_BYTE = 8


def offered_bps(w: WorkloadSpec, direction: str) -> float:
    """Open-loop load of one workload in ``direction`` (bit/s): a poisson's peak rate (``rate_pps``
    or its highest step) x ``packet_bytes``; a trace's bytes over its time span; 0 otherwise."""
    if w.kind == "poisson":
        if w.direction != direction:
            return 0.0
        peak = max([w.rate_pps, *(rate for _, rate in w.steps)])
        return peak * w.mean_of("packet_bytes") * BITS_PER_BYTE
    if w.kind == "trace" and len(w.trace_rows) > 1:
        times = [row[0] for row in w.trace_rows]
        span_s = (max(times) - min(times)) / 1e6
        size = sum(row[1] for row in w.trace_rows if row[2] == direction)
        return size * BITS_PER_BYTE / span_s if span_s > 0 else 0.0
    return 0.0


def link_warning(spec: ScenarioSpec) -> str | None:
    """One line when a direction's open-loop offered load exceeds the link, else None: the
    direction's total and each open-loop tenant's share (bit/s), and the link's rate."""
    link_bps = spec.host.link_gbps * 1e9
    over = []
    for direction in ("rx", "tx"):
        share = {g.name: bps for g in spec.guests if (bps := offered_bps(g.workload, direction)) > 0}
        total = sum(share.values())
        if total > link_bps:
            who = ", ".join(f"{name} {bps / 1e9:.2f}" for name, bps in share.items())
            over.append(f"{direction} {total / 1e9:.2f} Gbit/s (tenants {who})")
    if not over:
        return None
    effect = ("a one-layer host's arrivals are not link-limited" if spec.host.layers == ("nic",) else
              "the link serialises open-loop arrivals, so the excess queues at the senders and the NIC sees the "
              "link rate")
    return (f"{spec.name}: open-loop offered load {'; '.join(over)} exceeds host.link_gbps = "
            f"{spec.host.link_gbps:g} Gbit/s (poisson peak rate x packet_bytes, trace average); {effect}")


def core_users(spec: ScenarioSpec) -> list[list[str]]:
    """Who runs on each driver-domain core: NIC queue sites (``nic:qN``) and guest backends
    (``backend:G``, on a host with backends), by core index; on the veth profile a guest's receive
    NAPI (``frontend:G``) runs on its queue's core and its backend on its own vCPU."""
    users: list[list[str]] = [[] for _ in range(spec.host.driver_domain_cores)]
    for q in range(spec.nic.queues):
        users[spec.irq_core_of(q)].append(f"nic:q{q}")
    if spec.host.profile == "veth":
        for i, g in enumerate(spec.guests):
            users[spec.irq_core_of(spec.queue_of(i))].append(f"frontend:{g.name}")
    elif spec.host.layers != ("nic",):
        for i, g in enumerate(spec.guests):
            users[spec.backend_core_of(i)].append(f"backend:{g.name}")
    return users


def placement_line(spec: ScenarioSpec) -> str:
    """One line: each driver-domain core's users, cores with several users marked shared."""
    parts = []
    for c, names in enumerate(core_users(spec)):
        mark = " (shared)" if len(names) > 1 else ""
        parts.append(f"dom0-c{c}: {' + '.join(names) if names else 'idle'}{mark}")
    return "placement: " + "; ".join(parts)
