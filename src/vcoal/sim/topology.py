"""The virtual network path as data: CPUs, sites and the hop table, compiled from a ScenarioSpec.

Topology (Xen names; KVM maps backend = vhost, frontend = virtio-net, event channel = irqfd):

RX  wire -> NIC rx ring [hop, gate+NAPI: nic:qN] -> driver + bridge on driver-domain core
    -> netback copy on the guest's backend core -> shared rx ring [hop, gate: backend:G (virtual
    interrupt), NAPI: frontend:G] -> netfront + stack on the guest vCPU -> application.
TX  application -> shared tx ring [hop, gate: frontend:G (notification), NAPI: backend:G]
    -> netback + bridge + driver on the backend core -> NIC tx ring -> link -> wire; TX completions
    [hop, gate+NAPI: nic:qN, tx_*] clean the NIC tx ring.

The veth profile (``host.profile = "veth"``, the testbed's path) has the same rows with other CPUs:
a guest's rx hop is consumed on its NIC queue's core with no notifying CPU and the NIC hop hands
packets straight to it (``D_TO_GUEST_RX``: no netback copy), its tx hop on its own vCPU; a NIC
queue has no tx-completion hop (veth frees the skb at transmit).

A one-layer host (``host.layers = ["nic"]``) delivers to the application right after the NIC hop,
with per-packet cost ``nic_pkt_us + byte_copy_ns * size``: the NAPI Min(N,T) model of B.1.

Which hops a profile has is data shared with the ``qos`` controller: ``vcoal.model.hostpath``.
Every hop is one row of ``Topology.hops`` compiled from it: its ring, gate site, NAPI site,
consuming CPU, cost term, what follows it (``then``, a delivery kind of the engine's
``loop.deliver``) and the CPU that pays for notifying it. The engine reads these rows; a new host
shape is a new profile in ``hostpath``, and a new kind of next hop one delivery kind in
``loop.deliver``.
"""

from __future__ import annotations

from typing import NamedTuple

from vcoal.model.hostpath import APP_VCPU, BACKEND_CORE, FIRST_VCPU, IRQ_CORE, HopKind, profile_of
from vcoal.model.units import Site
from vcoal.sim.engine.layout import D_AFTER_NIC_RX, D_TO_APP, D_TO_GUEST_RX, D_TO_NIC_TX, D_TX_CLEANED
from vcoal.spec.scenario import ScenarioSpec

UNBOUNDED = 1 << 62


def ns(us: float) -> int:
    """Microseconds to integer nanoseconds, rounded."""
    return round(us * 1000)


def cost_terms(spec: ScenarioSpec) -> dict[str, tuple[int, float, bool]]:
    """The per-packet CPU cost of each kind of hop work: (fixed ns, ns per byte, exponential?).

    ``nic_rx``: NIC driver (+ bridge, or + the copy on a one-layer host); ``tx_clean``: NIC tx
    completion; ``netback_rx``: netback's copy into the guest; ``frontend_rx``: netfront + stack;
    ``backend_tx``: netback + bridge + NIC driver on transmit.
    """
    c = spec.cost
    exp = c.service_dist == "exp"
    nic_pkt = ns(c.nic_pkt_us)
    one_layer = spec.host.layers == ("nic",)
    return {
        "nic_rx": (nic_pkt, c.byte_copy_ns, exp) if one_layer else (nic_pkt + ns(c.bridge_pkt_us), 0.0, exp),
        "tx_clean": (ns(c.tx_clean_us), 0.0, False),
        "netback_rx": (ns(c.netback_pkt_us), c.byte_copy_ns, exp),
        "frontend_rx": (ns(c.frontend_pkt_us) + ns(c.stack_pkt_us), 0.0, exp),
        "backend_tx": (ns(c.netback_pkt_us) + ns(c.bridge_pkt_us) + nic_pkt, c.byte_copy_ns, exp),
    }


class HopRow(NamedTuple):
    """One hop: a ring gated by a coalescer and drained by NAPI on a consumer CPU."""

    gate: int  # site index whose {rx,tx}_usecs/frames/timer gate the interrupt
    napi: int  # site index whose NAPI budget and deferral apply (and that is charged the CPU)
    direction: int  # 0 rx, 1 tx: which counters and parameters of the sites
    consumer: int  # CPU index that takes the interrupt and polls
    capacity: int  # ring slots
    virtual_irq: bool  # the interrupt costs ``virq_us`` (else ``irq_us``)
    cost: str  # a key of ``cost_terms``: the work per packet
    then: int  # delivery kind: what happens to a packet after this hop
    sender: int = -1  # CPU index that pays ``evtchn_send_us`` per notification, or -1
    sender_ns: int = 0


class TenantWiring(NamedTuple):
    """Where a guest's packets go: NIC queue, backend CPU, application CPU, frontend hops (-1: none)."""

    queue: int
    backend_cpu: int
    app_cpu: int
    rx_hop: int
    tx_hop: int


DELIVERY = {"after_nic_rx": D_AFTER_NIC_RX, "to_guest_rx": D_TO_GUEST_RX, "to_app": D_TO_APP,
            "to_nic_tx": D_TO_NIC_TX, "tx_cleaned": D_TX_CLEANED}


class Topology:
    """CPUs (driver-domain cores, then every guest's vCPUs), sites, hops and their wiring: the host
    profile's rows (``vcoal.model.hostpath``) per NIC queue, then per guest, roles resolved to CPUs."""

    def __init__(self, spec: ScenarioSpec) -> None:
        self.one_layer = spec.host.layers == ("nic",)
        self.veth = spec.host.profile == "veth"
        profile = profile_of(spec.host.profile, self.one_layer)
        self.cpus = [f"dom0-c{i}" for i in range(spec.host.driver_domain_cores)]
        vcpus = []
        for g in spec.guests:
            vcpus.append(list(range(len(self.cpus), len(self.cpus) + g.vcpus)))
            self.cpus += [f"{g.name}-v{j}" for j in range(g.vcpus)]
        self.sites = list(spec.site_params())
        site = {s: k for k, s in enumerate(self.sites)}
        evt_ns = ns(spec.cost.evtchn_send_us)

        def row(kind: HopKind, instance: str, queue: int, guest: int = -1) -> int:
            role = {IRQ_CORE: spec.irq_core_of(queue)}
            if guest >= 0:
                role |= {BACKEND_CORE: spec.backend_core_of(guest), FIRST_VCPU: vcpus[guest][0],
                         APP_VCPU: vcpus[guest][-1]}
            ring = {"nic": spec.nic.rx_ring, "unbounded": UNBOUNDED, "guest": spec.guests[guest].ring if guest >= 0 else 0}
            sender = -1 if kind.sender is None else role[kind.sender]
            self.hops.append(HopRow(
                site[Site(kind.gate, instance)], site[Site(kind.napi, instance)], 0 if kind.direction == "rx" else 1,
                role[kind.consumer], ring[kind.ring], kind.virtual_irq, kind.cost, DELIVERY[kind.then], sender,
                evt_ns if sender >= 0 else 0))
            return len(self.hops) - 1

        self.hops: list[HopRow] = []
        self.queues: list[tuple[int, int]] = []  # per NIC queue: (rx hop, tx-completion hop or -1)
        for q in range(spec.nic.queues):
            made = {k.chain: row(k, f"q{q}", q) for k in profile.hops if k.per == "queue"}
            self.queues.append((made["nic_rx"], made.get("nic_txc", -1)))
        self.tenants: list[TenantWiring] = []
        for i, g in enumerate(spec.guests):
            made = {k.chain: row(k, g.name, spec.queue_of(i), i) for k in profile.hops if k.per == "guest"}
            self.tenants.append(TenantWiring(spec.queue_of(i), spec.backend_core_of(i), vcpus[i][-1],
                                             made.get("guest_rx", -1), made.get("guest_tx", -1)))
