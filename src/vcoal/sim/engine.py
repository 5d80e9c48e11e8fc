"""The virtual network path, assembled from a ScenarioSpec.

Topology (Xen names; KVM maps backend = vhost, frontend = virtio-net, event channel = irqfd):

RX  wire -> NIC rx ring [hop, gate+NAPI: nic:qN] -> driver + bridge on driver-domain core
    -> netback copy on the guest's backend core -> shared rx ring [hop, gate: backend:G (virtual
    interrupt), NAPI: frontend:G] -> netfront + stack on the guest vCPU -> application.
TX  application -> shared tx ring [hop, gate: frontend:G (notification), NAPI: backend:G]
    -> netback + bridge + driver on the backend core -> NIC tx ring -> link -> wire; TX completions
    [hop, gate+NAPI: nic:qN, tx_*] clean the NIC tx ring.

The veth profile (``host.profile = "veth"``, the real-kernel testbed): a guest's receive NAPI
(frontend) runs on the CPU of its NIC queue, right after the NIC hop (no netback copy, no event
channel), its transmit NAPI (backend) on its own vCPU, and the NIC has no tx completions: the same
sites and knobs, with the softirq runs (``Cpu.runs``) counted the way the kernel counts NET_RX.

A one-layer host (``host.layers = ["nic"]``) delivers to the application right after the NIC hop,
with per-packet cost ``nic_pkt_us + byte_copy_ns * size``: the NAPI Min(N,T) model of B.1.
"""

from __future__ import annotations

from collections import deque

from vcoal.model.units import Layer, Site
from vcoal.sim.coalescer import Hop, SiteState
from vcoal.sim.cpu import SOFTIRQ, Cpu
from vcoal.sim.kernel import PRIO_ARRIVAL, Kernel
from vcoal.sim.rng import ExpDraws, stream
from vcoal.spec.scenario import ScenarioSpec


def cost_terms(spec: ScenarioSpec) -> dict[str, tuple[int, float, bool]]:
    """The per-packet CPU cost of each kind of hop work: (fixed ns, ns per byte, exponential?).

    ``nic_rx``: NIC driver (+ bridge, or + the copy on a one-layer host); ``tx_clean``: NIC tx
    completion; ``netback_rx``: netback's copy into the guest; ``frontend_rx``: netfront + stack;
    ``backend_tx``: netback + bridge + NIC driver on transmit. Shared by both engines.
    """
    c = spec.cost
    ns = lambda us: round(us * 1000)  # noqa: E731
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


def _cost_fn(mean_ns: int, dist: str, draws: ExpDraws | None):
    if dist == "exp" and mean_ns > 0:
        return lambda: int(mean_ns * draws() + 0.5)
    return lambda: mean_ns


class Path:
    """CPUs, sites and hops of one scenario, with the per-packet forwarding functions."""

    def __init__(self, spec: ScenarioSpec, k: Kernel, seed: int) -> None:
        self.spec = spec
        self.k = k
        c = spec.cost
        ns = lambda us: round(us * 1000)  # noqa: E731
        self.one_layer = spec.host.layers == ("nic",)
        self.veth = spec.host.profile == "veth"
        self.ser_ps_per_byte = 8000.0 / spec.host.link_gbps  # picoseconds per byte on the link
        self.link_in_free = 0
        self.link_out_free = 0
        svc_draws = ExpDraws(stream(seed, "service")) if c.service_dist == "exp" else None
        irq_draws = ExpDraws(stream(seed, "irq")) if c.irq_dist == "exp" else None
        self.irq_cost = _cost_fn(ns(c.irq_us), c.irq_dist, irq_draws)
        self.virq_cost = _cost_fn(ns(c.virq_us), c.irq_dist, irq_draws)
        poll_ns = ns(c.poll_us)
        self.cost_terms = terms = cost_terms(spec)
        svc = {name: self._svc(*t, svc_draws) for name, t in terms.items()}

        self.cpus: list[Cpu] = [Cpu(k, f"dom0-c{i}") for i in range(spec.host.driver_domain_cores)]
        self.sites: dict[Site, SiteState] = {
            site: SiteState(str(site), p) for site, p in spec.site_params().items()
        }
        self.tenants = None  # set by the simulation (workload runtimes), indexed by pkt.tenant

        self.nic_rx: list[Hop] = []
        self.nic_txc: list[Hop] = []
        self.txq_used = [0] * spec.nic.queues
        self.qdisc: list[deque] = [deque() for _ in range(spec.nic.queues)]
        for q in range(spec.nic.queues):
            site = self.sites[Site(Layer.NIC, f"q{q}")]
            cpu = self.cpus[spec.irq_core_of(q)]
            self.nic_rx.append(
                Hop(k, direction="rx", gate=site, napi=site, consumer=cpu, capacity=spec.nic.rx_ring,
                    irq_cost=self.irq_cost, pkt_cost=svc["nic_rx"], poll_ns=poll_ns,
                    deliver=self._after_nic_rx, drop=self._drop)
            )
            self.nic_txc.append(
                Hop(k, direction="tx", gate=site, napi=site, consumer=cpu, capacity=1 << 62,
                    irq_cost=self.irq_cost, pkt_cost=svc["tx_clean"],
                    poll_ns=poll_ns, deliver=self._tx_cleaned, drop=self._drop)
            )

        self.guest_vcpus: list[list[Cpu]] = []
        self.backend_cpu: list[Cpu] = []
        self.fe_rx: list[Hop | None] = []
        self.fe_tx: list[Hop | None] = []
        self.queue_of = [spec.queue_of(i) for i in range(len(spec.guests))]
        self.netback_rx_cost = svc["netback_rx"]
        self.send_cost_ns = ns(c.frontend_pkt_us) + ns(c.stack_pkt_us)
        self.ctx_switch_ns = ns(c.ctx_switch_us)
        evt_ns = ns(c.evtchn_send_us)
        for i, g in enumerate(spec.guests):
            vcpus = [Cpu(k, f"{g.name}-v{j}") for j in range(g.vcpus)]
            self.guest_vcpus.append(vcpus)
            bcpu = self.cpus[spec.backend_core_of(i)]
            self.backend_cpu.append(bcpu)
            if self.one_layer:
                self.fe_rx.append(None)
                self.fe_tx.append(None)
                continue
            be = self.sites[Site(Layer.BACKEND, g.name)]
            fe = self.sites[Site(Layer.FRONTEND, g.name)]
            rx_cpu, rx_sender = (self.cpus[spec.irq_core_of(self.queue_of[i])], None) if self.veth else (vcpus[0], bcpu)
            self.fe_rx.append(
                Hop(k, direction="rx", gate=be, napi=fe, consumer=rx_cpu, capacity=g.ring,
                    irq_cost=self.virq_cost, pkt_cost=svc["frontend_rx"], poll_ns=poll_ns,
                    deliver=self._to_app, drop=self._drop, sender=rx_sender, sender_cost_ns=evt_ns)
            )
            self.fe_tx.append(
                Hop(k, direction="tx", gate=fe, napi=be, consumer=vcpus[-1] if self.veth else bcpu, capacity=g.ring,
                    irq_cost=self.virq_cost, pkt_cost=svc["backend_tx"], poll_ns=poll_ns,
                    deliver=self._to_nic_tx, drop=self._drop, sender=vcpus[-1], sender_cost_ns=evt_ns)
            )

    @staticmethod
    def _svc(fixed_ns: int, byte_ns: float, exp: bool, draws: ExpDraws | None):
        if exp:
            return lambda pkt: int((fixed_ns + byte_ns * pkt.size) * draws() + 0.5)
        if byte_ns == 0.0:
            return lambda pkt: fixed_ns
        return lambda pkt: fixed_ns + int(byte_ns * pkt.size + 0.5)

    # --- RX --------------------------------------------------------------------------------------

    def wire_rx(self, pkt) -> None:
        """A packet from the wire reaches its NIC queue now."""
        self.nic_rx[self.queue_of[pkt.tenant]].push(pkt)

    def wire_send(self, pkt) -> None:
        """A closed-loop wire sender transmits now; arrival after the inbound link serialises it."""
        k = self.k
        t = max(k.now, self.link_in_free) + int(pkt.size * self.ser_ps_per_byte / 1000 + 0.5)
        self.link_in_free = t
        k.at(t, PRIO_ARRIVAL, self.wire_rx, pkt)

    def _after_nic_rx(self, pkt) -> None:
        if self.one_layer:
            self._to_app(pkt)
            return
        i = pkt.tenant
        hop = self.fe_rx[i]
        if self.veth:
            hop.push(pkt)
            return
        self.backend_cpu[i].submit(SOFTIRQ, self.netback_rx_cost(pkt), hop.push, pkt, hop.gate)

    def _to_app(self, pkt) -> None:
        self.tenants[pkt.tenant].on_rx(pkt)

    # --- TX --------------------------------------------------------------------------------------

    def app_send(self, pkt) -> None:
        """The application hands a packet to netfront now (send cost already paid by the caller)."""
        self.fe_tx[pkt.tenant].push(pkt)

    def _to_nic_tx(self, pkt) -> None:
        q = self.queue_of[pkt.tenant]
        if self.txq_used[q] >= self.spec.nic.tx_ring:
            if len(self.qdisc[q]) >= self.spec.nic.txqueuelen:
                self.nic_txc[q].gate.tx.drops += 1
                self._drop(pkt)
            else:
                self.qdisc[q].append(pkt)  # the driver stopped the queue; the qdisc holds it
            return
        self._transmit(q, pkt)

    def _transmit(self, q: int, pkt) -> None:
        self.txq_used[q] += 1
        k = self.k
        t = max(k.now, self.link_out_free) + int(pkt.size * self.ser_ps_per_byte / 1000 + 0.5)
        self.link_out_free = t
        k.at(t, PRIO_ARRIVAL, self._wire_out, pkt)

    def _wire_out(self, pkt) -> None:
        if self.veth:  # veth frees the skb at transmit: no completion to clean
            self.tenants[pkt.tenant].on_wire(pkt)
            self._tx_cleaned(pkt)
            return
        self.nic_txc[self.queue_of[pkt.tenant]].push(pkt)
        self.tenants[pkt.tenant].on_wire(pkt)

    def _tx_cleaned(self, pkt) -> None:
        q = self.queue_of[pkt.tenant]
        self.txq_used[q] -= 1
        if self.qdisc[q]:
            self._transmit(q, self.qdisc[q].popleft())

    def _drop(self, pkt) -> None:
        self.tenants[pkt.tenant].on_drop(pkt)
