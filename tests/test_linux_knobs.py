"""Journal and journaled knob appliers (root parts in namespaces the test creates)."""

from __future__ import annotations

import json

import pytest

from vcoal.linux.journal import Journal, JournalEntry, atomic_write_json
from vcoal.linux.knobs import (
    KnobUnsupported,
    LinuxKnobs,
    apply_knobs,
    read_knobs,
    restore_journal,
)
from vct_netns import netns, read_sysfs, root, sh, veth_pair


def test_journal_first_original_wins_and_survives_reload(tmp_path):
    path = tmp_path / "j.json"
    j = Journal(path)
    j.record([JournalEntry("ns1", "eth0", "rx_usecs", "ethtool", 8)])
    j.record([JournalEntry("ns1", "eth0", "rx_usecs", "ethtool", 99)])  # never overwrites
    again = Journal(path)
    assert [e.original for e in again.entries.values()] == [8]
    assert json.loads(path.read_text())["format_version"] == 1
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
