"""The virtual network path's shape as data: which hops a host profile has, one row each.

A *hop* is a ring whose interrupt a gate site raises and whose packets a NAPI site polls on a
consuming CPU. This table is the one description of the path: the simulator compiles it into its
hop table (``vcoal.sim.topology``, roles resolved to CPUs, ``then`` to the engine's delivery
kinds), and the ``qos`` controller builds its gate chains and charges its events from the same
rows (``vcoal.policies._qos_model``). A new host shape is a new profile here; a new kind of hop is
a new row (plus, if nothing existing fits, a delivery kind in the engine's ``loop.deliver``).

Profiles: ``xen`` (the Xen/KVM split-driver path: NIC, netback, netfront, with real and virtual
interrupts), ``veth`` (the testbed's namespaces: a guest's receive NAPI runs on its NIC queue's
core inside the NET_RX run that forwarded its packets, its transmit NAPI on its own vCPU, no NIC
tx completions) and ``nic`` (a one-layer host: the NIC delivers to the application).
"""

from __future__ import annotations

from typing import NamedTuple

from vcoal.model.units import Layer

# roles of the CPUs a hop uses, resolved per queue / guest by the simulator's topology
IRQ_CORE = "irq_core"  # the NIC queue's interrupt core (a guest's: its queue's)
BACKEND_CORE = "backend_core"  # the guest's backend core in the driver domain
FIRST_VCPU = "first_vcpu"  # the guest's first vCPU (takes its virtual interrupts)
APP_VCPU = "app_vcpu"  # the guest's last vCPU (runs its application)

# what an interrupt of a hop costs, by what a profile charges
INTERRUPTS = "interrupts"  # xen: the (virtual) interrupt, the sender's notification and a poll
SOFTIRQ_RUNS = "softirq_runs"  # veth: one NET_RX run per wake-up from outside softirq context


class HopKind(NamedTuple):
    """One kind of hop of a host profile (see the module docstring)."""

    chain: str  # name of the hop (and of qos's chain of its gates): nic_rx, nic_txc, guest_rx, guest_tx
    per: str  # "queue": one per NIC queue; "guest": one per guest
    gate: Layer  # the site whose {rx,tx}_usecs / frames / timer gate the interrupt
    napi: Layer  # the site whose NAPI budget and deferral apply (charged the CPU)
    direction: str  # "rx" | "tx": which counters and parameters of the two sites
    consumer: str  # role of the CPU that takes the interrupt and polls
    sender: str | None  # role of the CPU that pays ``evtchn_send_us`` per notification
    virtual_irq: bool  # the interrupt costs ``virq_us`` (else ``irq_us``)
    ring: str  # "nic": the NIC's rx ring; "guest": the guest's ring; "unbounded"
    cost: str  # the work per packet (a key of the simulator's ``cost_terms``)
    then: str  # what follows: after_nic_rx (netback copy), to_guest_rx, to_app, to_nic_tx, tx_cleaned
    delays: bool = True  # packets wait at the gate (tx completions delay no packet)
    napi_gate: bool = True  # the NAPI deferral is a gate of this chain (the NIC's is its rx chain's)


NIC_RX = HopKind("nic_rx", "queue", Layer.NIC, Layer.NIC, "rx", IRQ_CORE, None, False, "nic", "nic_rx", "after_nic_rx")
NIC_TXC = HopKind("nic_txc", "queue", Layer.NIC, Layer.NIC, "tx", IRQ_CORE, None, False, "unbounded", "tx_clean",
                  "tx_cleaned", delays=False, napi_gate=False)
GUEST_RX = HopKind("guest_rx", "guest", Layer.BACKEND, Layer.FRONTEND, "rx", FIRST_VCPU, BACKEND_CORE, True, "guest",
                   "frontend_rx", "to_app")
GUEST_TX = HopKind("guest_tx", "guest", Layer.FRONTEND, Layer.BACKEND, "tx", BACKEND_CORE, APP_VCPU, True, "guest",
                   "backend_tx", "to_nic_tx")


# deliveries that hand a packet straight to another hop's ring, in the same softirq run
HANDS_TO = {"to_guest_rx": "guest_rx"}


class Profile(NamedTuple):
    """A host shape: its hops in table order and what an interrupt costs there."""

    hops: tuple[HopKind, ...]
    charges: str


PROFILES: dict[str, Profile] = {
    "xen": Profile((NIC_RX, NIC_TXC, GUEST_RX, GUEST_TX), INTERRUPTS),
    "veth": Profile((NIC_RX._replace(then="to_guest_rx"), GUEST_RX._replace(consumer=IRQ_CORE, sender=None),
                     GUEST_TX._replace(consumer=APP_VCPU)), SOFTIRQ_RUNS),
    "nic": Profile((NIC_RX._replace(then="to_app"), NIC_TXC), INTERRUPTS),
}


def profile_of(name: str, one_layer: bool = False) -> Profile:
    """The profile of ``host.profile`` (a one-layer host is ``nic``); ValueError naming the known ones."""
    key = "nic" if one_layer else name
    if key not in PROFILES:
        raise ValueError(f"host profile {name!r}: must be one of {', '.join(sorted(PROFILES))}")
    return PROFILES[key]


def hop_kind(profile: str, chain: str) -> HopKind | None:
    """The hop named ``chain`` in ``profile`` (a three-layer one), or None when it has none."""
    return next((h for h in profile_of(profile).hops if h.chain == chain), None)


def fed_in_run(profile: str, hop: HopKind) -> HopKind | None:
    """The hop that hands its packets straight to ``hop`` on the same core (so ``hop``'s wake-up
    happens inside the softirq run that is already going), or None."""
    return next((h for h in profile_of(profile).hops
                 if HANDS_TO.get(h.then) == hop.chain and h.consumer == hop.consumer), None)
