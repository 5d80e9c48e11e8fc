"""Sites of a scenario on the testbed: which device's NAPI knobs and counters stand for which site.

=================  =================  ============  ==========================================
site               device             namespace     its NAPI moderates (model direction)
=================  =================  ============  ==========================================
``nic:q0``         ``peth0``          dom0          wire → host (``rx``)
``backend:<g>``    ``vifN.0``         dom0          guest transmit (``tx``)
``frontend:<g>``   ``gethN``          guest         guest receive (``rx``)
=================  =================  ============  ==========================================

peth0 has one rx queue, so with ``nic.queues > 1`` every ``nic:qN`` site maps to it: the knobs
applied there are the least deferring of the nic sites' parameters (``merge_nic``) and every
nic site reports peth0's counters.

Counters per site come from the device's statistics, turned into the model's directions
(``rx`` = towards the guest): for the vif, what it transmits goes to the guest (model ``rx``) and
what it receives comes from the guest (model ``tx``).

A veth has no interrupt line of its own: its "interrupt" is the ``napi_schedule`` of the receiving
end, raised by the sender's ``veth_xmit``, and every wake-up is one NAPI poll (a deferred NAPI stays
scheduled and is re-polled by its timer, not by a new schedule). So per site and direction
(``SitePolls``, cumulative counts):

* the direction the device's own NAPI moderates: ``polls`` = ``interrupts`` = the polls of that NAPI;
* the direction it transmits to the next hop: ``interrupts`` = the polls of the peer's NAPI — the
  testbed's counterpart of the model's virtual interrupt to the guest (``backend`` rx, geth's NAPI)
  and notification to netback (``frontend`` tx, the vif's NAPI); ``polls`` 0;
* the NIC's ``tx`` has none (a veth has no TX completions) and stays 0.

The polls come per device from the kernel's ``napi:napi_poll`` tracepoint (``vcoal.linux.napitrace``).
Where tracing is unavailable every site gets the host-wide NET_RX softirq count in both places
(``SitePolls.host_wide``): one NET_RX run drains every NAPI scheduled on its CPU, so that count is
shared by every site and attributes nothing; the result's ``meta.attribution`` says which was used.
Reporting 0 interrupts on a transmit direction would claim that thousands of packets arrived without
a single wake-up of their consumer, which the ``qos`` controller's exact-model inversion reads as a
consumer that never goes idle (a busy CPU) and so marks the tenant capacity-bound.
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
    peer_dev: str = ""  # the device whose NAPI this device's transmit wakes


@dataclass(frozen=True, slots=True)
class SitePolls:
    """Cumulative NAPI polls of a site's own device (``own``) and of its transmit peer (``peer``)."""

    own: int
    peer: int

    @staticmethod
    def host_wide(net_rx: int) -> SitePolls:
        """The fallback without per-device tracing: the host-wide NET_RX count in both places."""
        return SitePolls(net_rx, net_rx)


def site_devices(spec: ScenarioSpec, topo: TopologyPlan) -> dict[Site, SiteDevice]:
    """Map every site of the scenario to a testbed device (pure)."""
    out: dict[Site, SiteDevice] = {}
    for site in spec.site_params():
        if site.layer is Layer.NIC:
            out[site] = SiteDevice(site, topo.dom0_ns, topo.nic_dev, "rx", False, topo.wire_dev)
        elif site.layer is Layer.BACKEND:
            g = topo.guest(site.instance)
            out[site] = SiteDevice(site, topo.dom0_ns, g.vif, "tx", True, g.dev)
        else:
            g = topo.guest(site.instance)
            out[site] = SiteDevice(site, g.ns, g.dev, "rx", False, g.vif)
    return out


def counter_sample(sd: SiteDevice, stats: dict[str, int], t_ns: int, polls: SitePolls) -> CounterSample:
    """A site's CounterSample from its device statistics and NAPI polls (pure; see the module doc)."""
    dev_rx = (stats["rx_packets"], stats["rx_bytes"], stats["rx_dropped"])
    dev_tx = (stats["tx_packets"], stats["tx_bytes"], stats["tx_dropped"])
    m_rx, m_tx = (dev_tx, dev_rx) if sd.swap else (dev_rx, dev_tx)
    own_rx = sd.napi_direction == "rx"
    # the transmit direction wakes the peer's NAPI, except the NIC's transmit to the wire
    wake_peer = 0 if sd.site.layer is Layer.NIC else polls.peer
    irq_rx, irq_tx = (polls.own, wake_peer) if own_rx else (wake_peer, polls.own)
    poll_rx, poll_tx = (polls.own, 0) if own_rx else (0, polls.own)
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
