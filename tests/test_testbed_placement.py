"""CPU placement of testbed trials: the pure plan, the RPS masks on the real kernel."""

from __future__ import annotations

import os

import pytest

from vcoal.linux import topology
from vcoal.linux.rps import cpu_mask, parse_mask, set_rps
from vcoal.testbed.placement import DOM0, WIRE, needed_cpus, plan, shared_meta
from vct_netns import netns, root, sh


def test_sets_are_disjoint_cover_the_cpus_and_the_driver_domain_takes_the_rest():
    topo = topology.plan("pl1", ["lat", "bulk"])
    p = plan(topo, list(range(16)))
    assert p.sets == {WIRE: (0, 1, 2, 3), "guest:lat": (4, 5, 6, 7), "guest:bulk": (8, 9, 10, 11), DOM0: (12, 13, 14, 15)}
    p = plan(topo, [2, 3, 5, 7, 11])  # the CPUs this process may use, whatever their numbers
    assert p.sets == {WIRE: (2,), "guest:lat": (3,), "guest:bulk": (5,), DOM0: (7, 11)}
    assert p.devices == {(topo.wire_ns, "wire0"): WIRE, (topo.dom0_ns, "peth0"): DOM0, (topo.dom0_ns, "vif1.0"): DOM0,
                         (topo.guest("lat").ns, "geth1"): "guest:lat", (topo.dom0_ns, "vif2.0"): DOM0,
                         (topo.guest("bulk").ns, "geth2"): "guest:bulk"}
    assert needed_cpus(topo) == 4 and plan(topo, [0, 1, 2]) is None
    assert "3 CPUs, a placed trial needs 4" in shared_meta(topo, [0, 1, 2], "auto")["reason"]
    assert shared_meta(topo, list(range(16)), "shared")["reason"] == "shared by request"


def test_masks_round_trip_in_sysfs_notation():
    assert cpu_mask([0, 1, 2, 3]) == "f" and cpu_mask([33]) == "2,00000000" and cpu_mask([]) == "0"
    assert parse_mask("0000000f") == {0, 1, 2, 3} and parse_mask("ff,00000000") == set(range(32, 40))
    for cpus in ({0}, {5, 40}, set(range(64))):
        assert parse_mask(cpu_mask(cpus)) == cpus
    with pytest.raises(ValueError):
        cpu_mask([-1])


@root
def test_rps_mask_set_and_read_back_on_a_veth():
    cpu = max(os.sched_getaffinity(0))
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vpa", "numrxqueues", "2", "type", "veth", "peer", "name", "vpb")
        assert set_rps(ns, "vpa", {cpu}) == {cpu}
        for q in (0, 1):
            text = sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/vpa/queues/rx-{q}/rps_cpus").stdout
            assert parse_mask(text) == {cpu}
        assert parse_mask(sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/vpb/queues/rx-0/rps_cpus").stdout) == set()
        with pytest.raises(RuntimeError, match="rps_cpus"):
            set_rps(ns, "vpa", {4095})  # no such CPU: the kernel refuses it
