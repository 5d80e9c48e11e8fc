"""Sites of a scenario on the testbed: which device's NAPI knobs and counters stand for which site.

=================  =================  ============  ==========================================
site               device             namespace     its NAPI moderates (model direction)
=================  =================  ============  ==========================================
``nic:q0``         ``peth0``          dom0          wire → host (``rx``)
``backend:<g>``    ``vifN.0``         dom0          guest transmit (``tx``)
``frontend:<g>``   ``geth0``          guest         guest receive (``rx``)
=================  =================  ============  ==========================================

peth0 has one rx queue, so with ``nic.queues > 1`` every ``nic:qN`` site maps to it: the knobs
applied there are the least deferring of the nic sites' parameters (``merge_nic``) and every
nic site reports peth0's counters.

Counters per site come from the device's statistics, turned into the model's directions
(``rx`` = towards the guest): for the vif, what it transmits goes to the guest (model ``rx``) and
what it receives comes from the guest (model ``tx``).

A veth has no interrupt line of its own and the kernel counts NAPI schedules per host only, so
``interrupts`` carry the host-wide NET_RX softirq count of the window (shared by every site, the
same convention as ``vcoal.linux.counters``) on every direction whose packets are handed to a NAPI:
the device's own NAPI direction (``polls`` too: those are its polls) **and** the direction it
transmits to the next hop, whose ``veth_xmit`` schedules the peer's NAPI — the testbed's
counterpart of the model's virtual interrupt to the guest (``backend`` rx) and notification to
netback (``frontend`` tx). Only the NIC's ``tx`` has none (a veth has no TX completions) and stays 0.
Reporting 0 there would claim that thousands of packets arrived without a single wake-up of their
consumer, which the ``qos`` controller's exact-model inversion reads as a consumer that never
goes idle (a busy CPU) and so marks the tenant capacity-bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcoal.linux.topology import TopologyPlan
from vcoal.model.stats import CounterSample, DirStats
from vcoal.model.units import Layer, Site
from vcoal.spec import ScenarioSpec

SUPPORTED_KNOBS = frozenset({"napi_defer_hard_irqs", "gro_flush_timeout_ns"})


@dataclass(frozen=True, slots=True)
class SiteDevice:
    """Where a site lives on the testbed."""

    site: Site
    ns: str
    dev: str
    napi_direction: str  # model direction the device's NAPI moderates
    swap: bool  # device rx is the model's tx (the vif)


def site_devices(spec: ScenarioSpec, topo: TopologyPlan) -> dict[Site, SiteDevice]:
    """Map every site of the scenario to a testbed device (pure)."""
    out: dict[Site, SiteDevice] = {}
    for site in spec.site_params():
        if site.layer is Layer.NIC:
            out[site] = SiteDevice(site, topo.dom0_ns, topo.nic_dev, "rx", False)
        elif site.layer is Layer.BACKEND:
            out[site] = SiteDevice(site, topo.dom0_ns, topo.guest(site.instance).vif, "tx", True)
        else:
            g = topo.guest(site.instance)
            out[site] = SiteDevice(site, g.ns, g.dev, "rx", False)
    return out


def counter_sample(sd: SiteDevice, stats: dict[str, int], t_ns: int, net_rx: int) -> CounterSample:
    """A site's CounterSample from its device statistics and the host-wide NET_RX count (pure)."""
    dev_rx = (stats["rx_packets"], stats["rx_bytes"], stats["rx_dropped"])
    dev_tx = (stats["tx_packets"], stats["tx_bytes"], stats["tx_dropped"])
    m_rx, m_tx = (dev_tx, dev_rx) if sd.swap else (dev_rx, dev_tx)
    # every direction wakes a NAPI (its own or the peer's), except the NIC's transmit to the wire
    irq_rx = net_rx
    irq_tx = 0 if sd.site.layer is Layer.NIC else net_rx
    poll_rx = net_rx if sd.napi_direction == "rx" else 0
    poll_tx = net_rx if sd.napi_direction == "tx" else 0
    return CounterSample(
        t_ns,
        DirStats(m_rx[0], m_rx[1], irq_rx, poll_rx, m_rx[2]),
        DirStats(m_tx[0], m_tx[1], irq_tx, poll_tx, m_tx[2]),
        0,
    )


def knob_values(params) -> dict[str, int]:
    """The NAPI knobs of a CoalesceParams (the only ones a veth site has)."""
    return {"napi_defer_hard_irqs": params.napi_defer_hard_irqs, "gro_flush_timeout_ns": params.gro_flush_timeout_ns}


def merge_nic(params: dict[Site, object]) -> object:
    """The parameters peth0 gets when several nic sites share it: the smallest deferral."""
    return min(params.values(), key=lambda p: (p.gro_flush_timeout_ns if p.napi_defer_hard_irqs else 0,
                                               p.napi_defer_hard_irqs))
