"""The testbed topology on the real kernel (root): build, inspect, remove, crash leftovers, NAPI use.

Every test works on a topology with a unique tag (namespaces ``vcoal-<tag>-*``) and removes it in a
``finally``, even on failure; nothing in the root namespace is touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from vcoal.linux import features, netns, procs, topology

pytestmark = pytest.mark.root


def _ethtool_k(ns: str, dev: str) -> dict[str, str]:
    out = netns.run_in(ns, ["ethtool", "-k", dev])
    return {k.strip(): v.split()[0] for k, _, v in (line.partition(":") for line in out.splitlines()[1:]) if v}


def _gro_tso(ns: str, dev: str) -> tuple[bool, bool]:
    active = features.get_features(ns, dev)
    tso = [name for name in active if name.startswith("tx-tcp") and name.endswith("-segmentation")]
    return active.get("rx-gro", False), bool(tso)


def _ethtool_s(ns: str, dev: str) -> dict[str, int]:
    out = netns.run_in(ns, ["ethtool", "-S", dev])
    stats = {}
    for line in out.splitlines()[1:]:
        k, _, v = line.partition(":")
        if v.strip().isdigit():
            stats[k.strip()] = int(v)
    return stats


def test_up_status_down(tag):
    p = topology.plan(tag, ["a", "b"])
    topology.up(p)
    assert set(netns.list_namespaces(f"{netns.PREFIX}{tag}-")) == set(p.namespaces)
    entries = {e["ns"]: e for e in topology.status() if e["tag"] == tag}
    dom0 = {link["ifname"]: link for link in entries[p.dom0_ns]["links"]}
    assert {"xenbr0", "peth0", "vif1.0", "vif2.0"} <= set(dom0)
    assert dom0["xenbr0"]["kind"] == "bridge" and dom0["peth0"]["state"] == "UP"
    guest = {link["ifname"]: link for link in entries[p.guest("b").ns]["links"]}
    assert guest["geth2"]["addrs"] == ["198.18.1.2/15"]
    for ns_a, dev_a, ns_b, dev_b in p.veths():
        for ns, dev in ((ns_a, dev_a), (ns_b, dev_b)):
            assert _gro_tso(ns, dev) == (True, False), (ns, dev)
    with pytest.raises(RuntimeError, match="already exists"):
        topology.up(p)
    removed = topology.down(tag)
    assert sorted(removed) == sorted(p.namespaces)
    assert not [e for e in topology.status() if e["tag"] == tag]


def test_down_removes_leftovers_of_a_crashed_run(tag, tracefs):
    """A process builds a topology, starts a server inside and dies without cleaning up."""
    script = textwrap.dedent(
        f"""
        import os
        from vcoal.linux import procs, topology
        p = topology.plan({tag!r}, ["g1"])
        topology.up(p)
        proc = procs.NsProcess(p.guest("g1").ns, ["sleep", "120"])
        print(proc.pid, flush=True)
        os._exit(3)   # crash: no down(), no stop()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out.stderr
    orphan = int(out.stdout.split()[0])
    assert tag in topology.tags_present()
    # `ip netns exec` may still be switching namespaces when the parent dies: poll
    ns = netns.ns_name(tag, "g-g1")
    assert procs.poll_until(lambda: netns.pids_in(ns) == [orphan], 5.0), netns.pids_in(ns)
    from vcoal.linux import napitrace

    leftover = napitrace.ensure_tracefs() / "instances" / f"vcoal-{tag}"  # a crashed trial's trace
    leftover.mkdir()
    removed = topology.down(tag)
    assert len(removed) == 3
    assert tag not in topology.tags_present()
    assert not leftover.exists()
    assert procs.poll_until(lambda: not os.path.exists(f"/proc/{orphan}"), 5.0), "orphan still alive"


def _rx_packets(ns: str, dev: str) -> int:
    return int(netns.run_in(ns, ["cat", f"/sys/class/net/{dev}/statistics/rx_packets"]))


@pytest.mark.root("ethtool")
def test_features_read_over_netlink_agree_with_the_ethtool_binary(tag):
    p = topology.plan(tag, ["g1"])
    topology.up(p)
    assert _gro_tso(p.dom0_ns, "peth0") == (True, False)
    k = _ethtool_k(p.dom0_ns, "peth0")
    assert (k["generic-receive-offload"], k["tcp-segmentation-offload"]) == ("on", "off")
    features.set_features(p.dom0_ns, "peth0", {"gro": False, "tso": True})
    assert _gro_tso(p.dom0_ns, "peth0") == (False, True)
    k = _ethtool_k(p.dom0_ns, "peth0")
    assert (k["generic-receive-offload"], k["tcp-segmentation-offload"]) == ("off", "on")


@pytest.mark.root("sockperf", "ethtool")
def test_every_hop_uses_napi(tag):
    """All packets of a UDP ping-pong take the veth NAPI path (rx_queue_0_xdp_packets) on every hop."""
    p = topology.plan(tag, ["g1"])
    topology.up(p)
    g = p.guest("g1")
    hops = [(p.dom0_ns, "peth0"), (g.ns, g.dev), (p.dom0_ns, g.vif), (p.wire_ns, "wire0")]
    before = {h: (_ethtool_s(*h)["rx_queue_0_xdp_packets"], _rx_packets(*h)) for h in hops}
    with procs.ProcessSet() as ps:
        ps.start(g.ns, ["sockperf", "sr", "-i", g.ip, "-p", "11111"]).wait_listening(11111, "udp")
        client = ps.start(p.wire_ns, ["sockperf", "pp", "-i", g.ip, "-p", "11111", "-t", "1", "-m", "64"])
        assert client.wait(15.0) == 0, client.stderr()
    for h in hops:
        napi = _ethtool_s(*h)["rx_queue_0_xdp_packets"] - before[h][0]
        rx = _rx_packets(*h) - before[h][1]
        # "all packets" is the NAPI-path share of what the hop received (1.0 in every run measured);
        # the packet count itself follows the round-trip rate: 12-57k idle, down to 5.5k with the
        # CPUs 2x oversubscribed. 1000 = one round trip per ms for 1 s, just proof that traffic ran.
        assert rx > 1000 and napi >= 0.99 * rx, (h, napi, rx)
    # the netlink counters the testbed samples (LinkCounters) agree with sysfs, read between two dumps
    links = topology.LinkCounters({ns for ns, _ in hops})
    try:
        first, sysfs, second = links.read(), {h: _rx_packets(*h) for h in hops}, links.read()
    finally:
        links.close()
    for ns, dev in hops:
        assert first[ns][dev]["rx_packets"] <= sysfs[(ns, dev)] <= second[ns][dev]["rx_packets"]
        assert second[ns][dev]["tx_packets"] > 1000
    # the same ping-pong with GRO off on the receiver: no NAPI on that hop
    features.set_features(p.dom0_ns, "peth0", {"gro": False})
    before = _ethtool_s(p.dom0_ns, "peth0")
    with procs.ProcessSet() as ps:
        ps.start(g.ns, ["sockperf", "sr", "-i", g.ip, "-p", "11112"]).wait_listening(11112, "udp")
        client = ps.start(p.wire_ns, ["sockperf", "pp", "-i", g.ip, "-p", "11112", "-t", "1", "-m", "64"])
        assert client.wait(15.0) == 0
    after = _ethtool_s(p.dom0_ns, "peth0")
    assert after["rx_queue_0_xdp_packets"] == before["rx_queue_0_xdp_packets"]


@pytest.mark.root("iperf3")
def test_processes_end_by_pid_and_readiness_is_polled(tag):
    p = topology.plan(tag, ["g1"])
    topology.up(p)
    g = p.guest("g1")
    with procs.ProcessSet() as ps:
        srv = ps.start(g.ns, ["iperf3", "-s", "-B", g.ip, "-p", "5201"])
        srv.wait_listening(5201, "tcp")
        assert srv.running() and netns.pids_in(g.ns) == [srv.pid]
        bad = ps.start(g.ns, ["sockperf", "sr", "-i", "198.19.9.9", "-p", "1"])  # address not on the host
        with pytest.raises(RuntimeError, match="did not listen"):
            bad.wait_listening(1, "udp", timeout_s=2.0)
    assert not srv.running()
    assert netns.pids_in(g.ns) == []
