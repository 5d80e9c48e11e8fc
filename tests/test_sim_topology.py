"""The hop table compiled from a spec: which ring, gate, NAPI site, CPU and next hop each hop has."""

from vcoal.model.units import Layer, Site
from vcoal.sim.engine import layout as L
from vcoal.sim.topology import UNBOUNDED, Topology
from vcoal.spec import parse_scenario

TWO = {
    "host": {"driver_domain_cores": 2}, "nic": {"queues": 1, "rx_ring": 64, "irq_cores": [1]},
    "cost": {"evtchn_send_us": 0.5},
    "guests": [{"name": "a", "vcpus": 2, "ring": 32, "backend_core": 0, "workload": {"kind": "poisson", "rate_pps": 1e4}}],
}  # fmt: skip


def test_three_layer_hops_are_wired_gate_to_napi_and_cpu_to_cpu():
    topo = Topology(parse_scenario(TWO))
    assert topo.cpus == ["dom0-c0", "dom0-c1", "a-v0", "a-v1"]
    site = {s: k for k, s in enumerate(topo.sites)}
    nic, be, fe = (site[Site(layer, n)] for layer, n in ((Layer.NIC, "q0"), (Layer.BACKEND, "a"), (Layer.FRONTEND, "a")))
    rx, txc = topo.queues[0]
    assert topo.hops[rx][:8] == (nic, nic, 0, 1, 64, False, "nic_rx", L.D_AFTER_NIC_RX)  # on irq_cores[0]
    assert topo.hops[txc][:8] == (nic, nic, 1, 1, UNBOUNDED, False, "tx_clean", L.D_TX_CLEANED)
    wire = topo.tenants[0]
    assert (wire.queue, wire.backend_cpu, wire.app_cpu) == (0, 0, 3)
    # RX: the backend raises the guest's virtual interrupt and pays the notification; the first vCPU polls
    assert topo.hops[wire.rx_hop] == (be, fe, 0, 2, 32, True, "frontend_rx", L.D_TO_APP, 0, 500)
    # TX: the frontend notifies from the application's vCPU; the backend core polls
    assert topo.hops[wire.tx_hop] == (fe, be, 1, 0, 32, True, "backend_tx", L.D_TO_NIC_TX, 3, 500)


def test_one_layer_host_has_only_nic_hops():
    topo = Topology(parse_scenario({**TWO, "host": {"layers": ["nic"], "driver_domain_cores": 2}}))
    assert [h.cost for h in topo.hops] == ["nic_rx", "tx_clean"]
    assert (topo.tenants[0].rx_hop, topo.tenants[0].tx_hop) == (-1, -1)
