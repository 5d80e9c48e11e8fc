"""ethtool-netlink coalescing and netdev NAPI messages: recorded replies and the real kernel."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from vcoal.linux.features import set_features
from vcoal.linux.netlink import (
    EthtoolCoalesce,
    KnobUnsupported,
    Netdev,
    QueueInfo,
    decode_coalesce_reply,
    decode_napi_reply,
    decode_qstats_reply,
    decode_queue_reply,
    encode_coalesce_set,
    fast_decode_napi,
    uint_value,
)
from vct_netns import netns, root, sh, veth_pair

GOLDEN = Path(__file__).parent / "golden" / "linux"
_spec = importlib.util.spec_from_file_location("coalesce_replies", GOLDEN / "coalesce_replies.py")
replies = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replies)


def _hex(name: str) -> bytes:
    return bytes.fromhex((GOLDEN / name).read_text().strip())


def test_builder_reproduces_a_real_kernel_reply():
    assert replies.build_reply(21, 7, 0x28FF, 2, "tap0", {"RX_MAX_FRAMES": 8}) == _hex("tap_real.hex")


def test_golden_files_match_the_builder():
    for name, (ifindex, ifname, attrs) in replies.DRIVERS.items():
        assert replies.build_reply(27, 1, 4242, ifindex, ifname, attrs) == _hex(f"coalesce_{name}.hex")


def test_real_tap_reply_tells_rx_frames_only():
    r = decode_coalesce_reply(_hex("tap_real.hex"))
    assert (r.ifindex, r.ifname, r.attrs) == (2, "tap0", {"RX_MAX_FRAMES": 8})
    assert r.supported == {"rx_frames"}
    assert r.params == {"rx_frames": 8}


@pytest.mark.parametrize(
    "driver, supported, params, extra",
    [
        ("e1000e", {"rx_usecs"}, {"rx_usecs": 3}, {}),
        (
            "virtio_net",
            {"rx_usecs", "rx_frames", "tx_usecs", "tx_frames"},
            {"rx_usecs": 0, "rx_frames": 1, "tx_usecs": 0, "tx_frames": 1},
            {"USE_ADAPTIVE_RX": 0},
        ),
        (
            "mlx5",
            {"rx_usecs", "rx_frames", "tx_usecs", "tx_frames"},
            {"rx_usecs": 8, "rx_frames": 128, "tx_usecs": 16, "tx_frames": 32},
            {"USE_ADAPTIVE_RX": 1, "USE_ADAPTIVE_TX": 1, "USE_CQE_MODE_RX": 1, "USE_CQE_MODE_TX": 0},
        ),
    ],
)
def test_recorded_driver_replies(driver, supported, params, extra):
    r = decode_coalesce_reply(_hex(f"coalesce_{driver}.hex"))
    assert r.supported == supported
    assert r.params == params
    for k, v in extra.items():
        assert r.attrs[k] == v
    assert "TX_USECS_IRQ" not in r.attrs  # absent = unsupported, never reported as 0


def test_set_message_carries_only_given_fields():
    msg = encode_coalesce_set("eth0", {"rx_usecs": 8})
    names = [a[0] for a in msg["attrs"]]
    assert names == ["ETHTOOL_A_COALESCE_HEADER", "ETHTOOL_A_COALESCE_RX_USECS"]
    with pytest.raises(ValueError, match="rx_max"):
        encode_coalesce_set("eth0", {"rx_max": 1})
    with pytest.raises(ValueError, match="out of range"):
        encode_coalesce_set("eth0", {"rx_frames": -1})


def _napi_reply(gro_bytes: bytes) -> bytes:
    nla = replies.nla
    body = (
        nla(2, struct.pack("=I", 264)) + nla(1, struct.pack("=I", 4)) + nla(8, struct.pack("=I", 0))
        + nla(5, struct.pack("=I", 2)) + nla(7, struct.pack("=I", 0)) + nla(6, gro_bytes)
    )
    genl = struct.pack("=BBH", 11, 1, 0) + body
    return struct.pack("=IHHII", 16 + len(genl), 30, 2, 5, 99) + genl


def test_napi_uint_attributes_decoded_by_length():
    four = decode_napi_reply(_napi_reply(struct.pack("=I", 50_000)))
    assert (four.id, four.ifindex, four.defer_hard_irqs, four.gro_flush_timeout_ns) == (264, 4, 2, 50_000)
    eight = decode_napi_reply(_napi_reply(struct.pack("=Q", 5_000_000_000)))
    assert eight.gro_flush_timeout_ns == 5_000_000_000
    for raw in (struct.pack("=I", 50_000), struct.pack("=Q", 5_000_000_000)):  # the hot-path decoder agrees
        assert fast_decode_napi(_napi_reply(raw)) == decode_napi_reply(_napi_reply(raw))
    assert uint_value(7) == 7
    with pytest.raises(ValueError):
        uint_value(b"\0\0")


@root
def test_tap_rx_frames_over_ethtool_netlink():
    with netns() as ns:
        sh("ip", "-n", ns, "tuntap", "add", "dev", "vctap0", "mode", "tap")
        with EthtoolCoalesce(ns) as eth:
            before = eth.get("vctap0")
            assert before.supported == {"rx_frames"}  # the reply names the supported fields
            eth.set("vctap0", {"rx_frames": 8})
            assert eth.get("vctap0").params == {"rx_frames": 8}
            with pytest.raises(OSError):
                eth.set("vctap0", {"rx_usecs": 8})  # unsupported field refused by the kernel
            assert eth.get("vctap0").params == {"rx_frames": 8}


@root("ethtool")
def test_tap_rx_frames_set_over_netlink_is_what_the_ethtool_binary_reads():
    with netns() as ns:
        sh("ip", "-n", ns, "tuntap", "add", "dev", "vctap0", "mode", "tap")
        with EthtoolCoalesce(ns) as eth:
            eth.set("vctap0", {"rx_frames": 8})
        out = sh("ip", "netns", "exec", ns, "ethtool", "-c", "vctap0").stdout
        assert "rx-frames:\t8" in out or "rx-frames: 8" in out


@root
def test_veth_has_no_coalescing_but_napi_set_works():
    with netns() as ns:
        veth_pair(ns)
        with EthtoolCoalesce(ns) as eth, pytest.raises(KnobUnsupported):
            eth.get("vif1.0")
        with Netdev(ns) as nd:
            napis = nd.napi_get()
            assert len(napis) == 2
            nd.napi_set(napis[0].id, defer_hard_irqs=2, gro_flush_timeout_ns=50_000)
            got = {n.id: n for n in nd.napi_get()}[napis[0].id]
            assert (got.defer_hard_irqs, got.gro_flush_timeout_ns) == (2, 50_000)
            nd.napi_set(napis[0].id, gro_flush_timeout_ns=6_000_000_000)  # needs the 8-byte uint
            assert {n.id: n for n in nd.napi_get()}[napis[0].id].gro_flush_timeout_ns == 6_000_000_000


def _hex_lines(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (GOLDEN / name).read_text().split()]


def test_queue_dump_of_a_real_virtio_net_maps_rx_queue_to_its_napi():
    got = [decode_queue_reply(m) for m in _hex_lines("queue_dump_virtio_net.hex")]
    assert got == [QueueInfo(4, 0, "rx", 257), QueueInfo(4, 0, "tx", None)]


def test_queue_dump_of_a_real_multiqueue_veth_names_no_napi():
    """veth (Linux 6.18) lists its queues but links none of them to a NAPI."""
    got = [decode_queue_reply(m) for m in _hex_lines("queue_dump_veth4.hex")]
    assert [(q.id, q.type) for q in got] == [(i, t) for t in ("rx", "tx") for i in range(4)]
    assert {q.napi_id for q in got} == {None} and {q.ifindex for q in got} == {3}


def test_qstats_dump_of_a_real_virtio_net():
    got = [decode_qstats_reply(m) for m in _hex_lines("qstats_dump_virtio_net.hex")]
    assert [(q.ifindex, q.id, q.type) for q in got] == [(4, 0, "rx"), (4, 0, "tx")]
    assert got[0].packets == 19392 and got[0].bytes == 723144967
    assert got[1].packets == 10716 and got[1].bytes == 979025


def test_queue_reply_decoded_by_attribute_length():
    head = struct.pack("=IHHII", 0, 0x18, 0, 1, 0) + struct.pack("=BBH", 10, 1, 0)
    body = struct.pack("=HHI", 8, 1, 2) + struct.pack("=HHI", 8, 2, 7) + struct.pack("=HHI", 8, 3, 0)
    body += struct.pack("=HHQ", 12, 4, 99) + struct.pack("=HH4s", 8, 0x8005, b"\0\0\0\0")  # 8-byte napi-id
    assert decode_queue_reply(head + body) == QueueInfo(7, 2, "rx", 99)
    assert decode_queue_reply(head + struct.pack("=HHI", 8, 1, 2)) is None  # no ifindex, no type


@root
def test_multiqueue_veth_queue_get_and_qstats():
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "vq0", "numrxqueues", "4", "numtxqueues", "4", "type", "veth",
           "peer", "vq1", "numrxqueues", "4", "numtxqueues", "4")
        for dev in ("vq0", "vq1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            set_features(ns, dev, {"gro": True})
        ifindex = int(sh("ip", "-n", ns, "-o", "link", "show", "vq0").stdout.split(":")[0])
        with Netdev(ns) as nd:
            assert len(nd.napi_get(ifindex)) == 4  # one NAPI per rx queue with GRO on
            queues = nd.queue_get(ifindex)
            assert sorted((q.type, q.id) for q in queues) == [(t, i) for t in ("rx", "tx") for i in range(4)]
            assert {q.napi_id for q in queues} == {None}  # ...but no queue names its NAPI
            with pytest.raises(KnobUnsupported):
                nd.qstats_get(ifindex)  # and veth has no per-queue statistics
