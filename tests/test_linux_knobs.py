"""Journal and journaled knob appliers (root parts in namespaces the test creates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vcoal.linux.features import set_features
from vcoal.linux.journal import FORMAT_VERSION, Journal, JournalEntry, atomic_write_json
from vcoal.linux.knobs import (
    KnobUnsupported,
    LinuxKnobs,
    apply_knobs,
    queue_unit,
    read_knobs,
    restore_journal,
    split_unit,
)
from vcoal.linux.netlink import NapiInfo, QueueInfo
from vct_netns import netns, read_sysfs, root, sh, veth_pair


def test_journal_first_original_wins_and_survives_reload(tmp_path):
    path = tmp_path / "j.json"
    j = Journal(path)
    j.record([JournalEntry("ns1", "eth0", "rx_usecs", "ethtool", 8)])
    j.record([JournalEntry("ns1", "eth0", "rx_usecs", "ethtool", 99)])  # never overwrites
    again = Journal(path)
    assert [e.original for e in again.entries.values()] == [8]
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    j.release()  # one owner at a time
    again.forget(list(again.entries))
    assert not path.exists()  # an empty journal is no journal


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}


def test_corrupt_journal_is_refused(tmp_path):
    (tmp_path / "j.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        Journal(tmp_path / "j.json")


def test_bad_interface_name_rejected():
    with pytest.raises(ValueError, match="interface name"):
        LinuxKnobs().read("../../etc")


@root
def test_napi_knobs_set_read_back_and_restore_in_a_namespace(tmp_path):
    journal = tmp_path / "j.json"
    with netns() as ns:
        veth_pair(ns, "vctA", "vctB", gro=True)  # NAPIs exist: netdev napi-set
        sh("ip", "-n", ns, "link", "add", "vctC", "type", "veth", "peer", "name", "vctD")  # no NAPI: sysfs
        assert read_knobs("vctA", ns) == {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}
        got = apply_knobs("vctA", {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}, ns, str(journal))
        assert got == {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}
        assert read_sysfs(ns, "vctA", "gro_flush_timeout") == 0  # per-NAPI only, device default untouched
        apply_knobs("vctC", {"gro_flush_timeout_ns": 20_000}, ns, str(journal))
        assert read_sysfs(ns, "vctC", "gro_flush_timeout") == 20_000
        backends = {e.ifname: e.backend for e in Journal(journal).entries.values()}
        assert backends == {"vctA": "netlink", "vctC": "sysfs"}
        assert restore_journal(journal) == 3
        assert not journal.exists()
        assert read_knobs("vctA", ns) == {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}
        assert read_sysfs(ns, "vctC", "gro_flush_timeout") == 0


@root
def test_context_manager_restores_and_dry_run_writes_nothing(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "tuntap", "add", "dev", "vctap0", "mode", "tap")
        with LinuxKnobs(ns, Journal(tmp_path / "j.json"), dry_run=True) as k:
            assert k.set("vctap0", {"rx_frames": 4}) == {"rx_frames": 4}
            assert k.read("vctap0")["rx_frames"] == 0
        assert not (tmp_path / "j.json").exists()
        with LinuxKnobs(ns, Journal(tmp_path / "j.json")) as k:
            assert k.supported("vctap0") == {"rx_frames", "napi_defer_hard_irqs", "gro_flush_timeout_ns"}
            assert k.set("vctap0", {"rx_frames": 4}) == {"rx_frames": 4}
            assert k.set("vctap0", {"rx_frames": 4}) == {"rx_frames": 4}  # no write when already set
            with pytest.raises(KnobUnsupported):
                k.set("vctap0", {"rx_usecs": 10})
        assert read_knobs("vctap0", ns)["rx_frames"] == 0
        assert not (tmp_path / "j.json").exists()


class _FakeNetdev:
    """netdev with 4 rx queues on 4 NAPIs (as a multi-queue NIC reports them), recording writes."""

    def __init__(self):
        self.napi = {100 + q: [0, 0] for q in range(4)}
        self.sets = []
        self.queue_gets = 0

    def napi_get(self, ifindex=None):
        return [NapiInfo(i, 7, v[0], v[1]) for i, v in self.napi.items()]

    def queue_get(self, ifindex):
        self.queue_gets += 1
        return [QueueInfo(7, q, "rx", 100 + q) for q in range(4)] + [QueueInfo(7, q, "tx") for q in range(4)]

    def napi_set(self, napi_id, defer_hard_irqs=None, gro_flush_timeout_ns=None):
        self.sets.append(napi_id)
        if defer_hard_irqs is not None:
            self.napi[napi_id][0] = defer_hard_irqs
        if gro_flush_timeout_ns is not None:
            self.napi[napi_id][1] = gro_flush_timeout_ns

    def close(self):
        pass


def test_queue_unit_names():
    assert queue_unit("vif1.0", 2) == "vif1.0:q2"
    assert split_unit("vif1.0:q2") == ("vif1.0", 2) and split_unit("eth0") == ("eth0", None)
    assert split_unit("abcdefghijklmno:q3") == ("abcdefghijklmno", 3)  # a 15-character name and a queue


def test_queue_knobs_go_to_that_queues_napi_only_and_restore(tmp_path):
    k = LinuxKnobs(journal=Journal(tmp_path / "j.json"))
    nd = k._netdev = _FakeNetdev()
    k.ifindex = lambda name: 7
    assert k.supported("eth9:q2") == {"napi_defer_hard_irqs", "gro_flush_timeout_ns"}  # no per-queue ethtool
    got = k.set("eth9:q2", {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000})
    assert got == {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}
    assert nd.sets == [102] and nd.napi == {100: [0, 0], 101: [0, 0], 102: [2, 50_000], 103: [0, 0]}
    gets = nd.queue_gets
    assert k.read_many({"eth9:q2": ("gro_flush_timeout_ns",), "eth9:q1": ("gro_flush_timeout_ns",)}) == {
        "eth9:q2": {"gro_flush_timeout_ns": 50_000}, "eth9:q1": {"gro_flush_timeout_ns": 0}}
    assert nd.queue_gets == gets + 1  # one queue-get per interface, not per queue
    assert {e.ifname for e in k.journal.entries.values()} == {"eth9:q2"}
    assert k.restore() == 2
    assert nd.napi[102] == [0, 0] and set(nd.sets) == {102}
    with pytest.raises(KnobUnsupported, match="no queue 9"):
        k.read("eth9:q9")


def test_queue_counters_from_per_queue_stats():
    from vcoal.linux.counters import InterfaceCounters

    c = InterfaceCounters(queue_stats=lambda ifname: {("rx", 1): (10, 1000), ("tx", 1): (4, 400)})
    got = c.sample(["lo:q1", "lo:q5"], ["a", "b"])
    assert list(got) == ["a"]  # lo has no queue 5 in these statistics
    assert (got["a"].rx.packets, got["a"].rx.bytes, got["a"].tx.packets, got["a"].tx.bytes) == (10, 1000, 4, 400)
    c.close()


def _ctx_switches(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)


@root
def test_multiqueue_veth_queue_knobs_change_only_that_queues_napi(tmp_path):
    """Queue 2 of a 4-queue veth: only its NAPI changes, restore puts it back; the NAPI is the one
    that really serves rx queue 2 (traffic steered to peer tx queue 2 with XPS wakes only its thread);
    the agent refuses veth queues anyway: no per-queue statistics."""
    import sys

    from vcoal.agent.config import ConfigError, parse_config
    from vcoal.agent.linux_io import KnobApplier

    with netns() as ns, netns() as peer:
        sh("ip", "-n", ns, "link", "add", "vq0", "numrxqueues", "4", "numtxqueues", "4", "type", "veth",
           "peer", "vq1", "numrxqueues", "4", "numtxqueues", "4")
        sh("ip", "-n", ns, "link", "set", "vq1", "netns", peer)
        set_features(ns, "vq0", {"gro": True})
        set_features(peer, "vq1", {"gro": True, "tso": False})  # NAPI path for UDP
        sh("ip", "-n", ns, "addr", "add", "198.18.9.1/24", "dev", "vq0")
        sh("ip", "-n", peer, "addr", "add", "198.18.9.2/24", "dev", "vq1")
        sh("ip", "-n", ns, "link", "set", "vq0", "up")
        sh("ip", "-n", peer, "link", "set", "vq1", "up")
        journal = tmp_path / "j.json"
        k = LinuxKnobs(ns, Journal(journal))
        try:
            before = {n.id: (n.defer_hard_irqs, n.gro_flush_timeout_ns) for n in k.napis("vq0")}
            assert len(before) == 4 and set(before.values()) == {(0, 0)}
            [q2] = k.napis("vq0:q2")
            got = k.set("vq0:q2", {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000})
            assert got == {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}
            after = {n.id: (n.defer_hard_irqs, n.gro_flush_timeout_ns) for n in k.napis("vq0")}
            assert after == {**before, q2.id: (2, 50_000)}
            assert k.read("vq0:q1") == {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}
            assert read_sysfs(ns, "vq0", "gro_flush_timeout") == 0

            sh("ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /sys/class/net/vq0/threaded")
            for q in range(4):
                sh("ip", "netns", "exec", peer, "sh", "-c",
                   f"echo {3 if q == 2 else 0} > /sys/class/net/vq1/queues/tx-{q}/xps_cpus")
            threads = {n.id: n.pid for n in k.napis("vq0")}
            assert all(threads.values())
            start = {i: _ctx_switches(pid) for i, pid in threads.items()}
            sh("ip", "netns", "exec", peer, sys.executable, "-c",
               "import socket; s = socket.socket(2, 2)\n"
               "for _ in range(3000): s.sendto(bytes(100), ('198.18.9.1', 9))")
            ran = {i for i, pid in threads.items() if _ctx_switches(pid) > start[i]}
            assert ran == {q2.id}
            sh("ip", "netns", "exec", ns, "sh", "-c", "echo 0 > /sys/class/net/vq0/threaded")

            assert k.restore() == 2
            assert {n.id: (n.defer_hard_irqs, n.gro_flush_timeout_ns) for n in k.napis("vq0")} == before
            cfg = parse_config({"interfaces": [{"match": ["vq*"], "layer": "backend", "queues": [2]}]})
            with pytest.raises(ConfigError, match=r"^interfaces\.0\.queues: netdev qstats-get \d+: no per-queue"):
                KnobApplier(cfg, k).adopt("vq0:q2", cfg.interfaces[0])
            assert not journal.exists() or not Journal(journal).entries
        finally:
            k.close()


@root
def test_veth_queue_without_napi_is_refused(tmp_path):
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vq0", "numrxqueues", "4", "numtxqueues", "4", "type", "veth",
           "peer", "vq1", "numrxqueues", "4", "numtxqueues", "4")
        for dev in ("vq0", "vq1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")  # GRO off: no NAPI at all
        k = LinuxKnobs(ns, Journal(tmp_path / "j.json"))
        try:
            with pytest.raises(KnobUnsupported, match="no NAPI of its own"):
                k.set("vq0:q2", {"gro_flush_timeout_ns": 50_000})
            with pytest.raises(KnobUnsupported, match="no queue 7"):
                k.read("vq0:q7")
        finally:
            k.close()
