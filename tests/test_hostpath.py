"""One description of the virtual path: the simulator's hop table (``sim.topology``) and the
``qos`` controller's gate chains and event costs are both read from ``vcoal.model.hostpath``.
They agree on every profile, and a change to one row reaches both.

Expected costs are written out from the cost table given here, not computed by the code under test.
"""

from __future__ import annotations

import typing

import pytest

from vcoal.agent.config import AgentConfig
from vcoal.model import hostpath
from vcoal.model.units import Layer, Site
from vcoal.policies._qos_evidence import chain_sites
from vcoal.policies._qos_model import Costs, chain_event_cost, chain_gates
from vcoal.policies.qos import Qos
from vcoal.sim.topology import Topology
from vcoal.spec import parse_scenario
from vcoal.spec.context import context_from_spec
from vcoal.spec.scenario import HostSpec

COST = {"irq_us": 2.0, "virq_us": 3.0, "evtchn_send_us": 0.7, "poll_us": 0.5}
GUEST = {"vcpus": 2, "ring": 32, "backend_core": 0, "workload": {"kind": "poisson", "rate_pps": 1e4}}


def spec_of(profile: str):
    return parse_scenario({
        "host": {"driver_domain_cores": 2, "profile": profile}, "nic": {"queues": 1, "irq_cores": [1]},
        "cost": COST, "guests": [{"name": "a", **GUEST}, {"name": "b", **GUEST}],
    })  # fmt: skip


def chains_of(spec) -> dict[tuple[Site, str, Site], float]:
    """qos's chains: (wake-up site, direction, poll site) -> CPU µs per wake-up."""
    ctx = context_from_spec(spec)
    costs = Costs.from_mapping(ctx.cost, ctx.profile)
    out = {}
    for kind, nic, guest in Qos._chain_specs(ctx):
        ev, d, poll, _ = chain_sites(kind, chain_gates(kind, nic, guest, ctx.profile), ctx.profile)
        out[(ev, d, poll)] = chain_event_cost(kind, costs)
    return out


def hops_of(spec) -> dict[tuple[Site, str, Site], tuple]:
    topo = Topology(spec)
    return {(topo.sites[h.gate], "rx" if h.direction == 0 else "tx", topo.sites[h.napi]): h for h in topo.hops}


@pytest.mark.parametrize("profile", ["xen", "veth"])
def test_qos_has_one_chain_per_simulated_hop(profile):
    spec = spec_of(profile)
    assert set(chains_of(spec)) == set(hops_of(spec))


def test_xen_chains_charge_what_the_simulator_charges_per_interrupt():
    spec = spec_of("xen")
    chains, hops = chains_of(spec), hops_of(spec)
    nic, be, fe = Site(Layer.NIC, "q0"), Site(Layer.BACKEND, "a"), Site(Layer.FRONTEND, "a")
    assert chains[(nic, "rx", nic)] == pytest.approx(2.0 + 0.5)  # irq + poll
    assert chains[(nic, "tx", nic)] == pytest.approx(2.0 + 0.5)
    assert chains[(be, "rx", fe)] == pytest.approx(0.7 + 3.0 + 0.5)  # netback notifies: send + virq + poll
    assert chains[(fe, "tx", be)] == pytest.approx(0.7 + 3.0 + 0.5)  # netfront notifies from the vCPU
    for key, h in hops.items():  # the simulator's rows charge the same at every interrupt
        sim_us = h.sender_ns / 1000 * (h.sender >= 0) + COST["virq_us" if h.virtual_irq else "irq_us"] + COST["poll_us"]
        assert chains[key] == pytest.approx(sim_us), key


def test_veth_chains_charge_softirq_runs_and_have_no_tx_completions():
    chains = chains_of(spec_of("veth"))
    nic, be, fe = Site(Layer.NIC, "q0"), Site(Layer.BACKEND, "b"), Site(Layer.FRONTEND, "b")
    assert chains == {
        (nic, "rx", nic): pytest.approx(2.5),  # the wire's wake-up starts a run
        (be, "rx", fe): pytest.approx(0.5), (Site(Layer.BACKEND, "a"), "rx", Site(Layer.FRONTEND, "a")): pytest.approx(0.5),
        (fe, "tx", be): pytest.approx(2.5), (Site(Layer.FRONTEND, "a"), "tx", Site(Layer.BACKEND, "a")): pytest.approx(2.5),
    }  # fmt: skip


def test_a_changed_row_reaches_the_simulator_and_the_controller(monkeypatch):
    # a host whose backend signals the guest without an event-channel send (e.g. posted interrupts):
    # one row of the table changes, and both the simulated hop and qos's charge follow
    xen = hostpath.PROFILES["xen"]
    rows = tuple(h._replace(sender=None) if h.chain == "guest_rx" else h for h in xen.hops)
    monkeypatch.setitem(hostpath.PROFILES, "xen", xen._replace(hops=rows))
    spec = spec_of("xen")
    key = (Site(Layer.BACKEND, "a"), "rx", Site(Layer.FRONTEND, "a"))
    assert hops_of(spec)[key].sender == -1
    assert chains_of(spec)[key] == pytest.approx(3.0 + 0.5)


def test_every_profile_a_spec_or_agent_accepts_is_in_the_table():
    for field in (HostSpec.model_fields["profile"], AgentConfig.model_fields["host_profile"]):
        assert set(typing.get_args(field.annotation)) <= set(hostpath.PROFILES)
    with pytest.raises(ValueError, match="must be one of nic, veth, xen"):
        hostpath.profile_of("sriov")
