"""Offload features over ethtool netlink (no ethtool binary): a captured reply and the real kernel.

``golden/linux/features_veth_real.hex`` is a captured FEATURES_GET reply (Linux 6.18, a veth named
peth0 after ``set_features(..., {"gro": True, "tso": False})``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from vcoal.linux.features import (
    EthtoolFeatures,
    decode_features,
    encode_features_set,
    expand,
    get_features,
    set_features,
)
from vcoal.linux.netlink import KnobUnsupported
from vct_netns import netns, root, sh

GOLDEN = Path(__file__).parent / "golden" / "linux" / "features_veth_real.hex"


def test_captured_reply_decodes_to_gro_on_tso_off():
    active, changeable = decode_features(bytes.fromhex(GOLDEN.read_text().strip()))
    assert active["rx-gro"] is True
    assert not [n for n in active if n.startswith("tx-tcp")]  # every TCP segmentation feature off
    assert {"tx-checksum-ip-generic", "tx-scatter-gather", "tx-generic-segmentation"} <= set(active)
    assert {"rx-gro", "tx-tcp-segmentation", "tx-tcp6-segmentation"} <= changeable
    assert "rx-vlan-filter" not in changeable  # veth cannot filter VLANs


def _walk(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off < len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out.append((kind, data[off + 4:off + length]))
        off += (length + 3) & ~3
    return out


def test_set_request_names_each_feature_with_its_value_flag_and_no_mask():
    header, wanted = _walk(encode_features_set("peth0", {"rx-gro": True, "tx-tcp-segmentation": False}))
    assert header[0] == 0x8001 and _walk(header[1]) == [(2, b"peth0\0")]
    assert wanted[0] == 0x8003  # ETHTOOL_A_FEATURES_WANTED, nested
    (bits_kind, bits), = _walk(wanted[1])  # no NOMASK: only the named bits change
    assert bits_kind == 0x8003
    bit_on, bit_off = (_walk(b) for _k, b in _walk(bits))
    assert bit_on == [(2, b"rx-gro\0"), (3, b"")]  # NAME, VALUE flag
    assert bit_off == [(2, b"tx-tcp-segmentation\0")]


def test_aliases_expand_over_the_device_features():
    known = {"rx-gro", "tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-udp-segmentation"}
    assert expand({"gro": True, "tso": False}, known) == {
        "rx-gro": True, "tx-tcp-segmentation": False, "tx-tcp6-segmentation": False}
    with pytest.raises(KnobUnsupported, match="'lro'"):
        expand({"lro": True}, known)


@root
def test_set_reads_back_and_a_fixed_feature_is_refused():
    with netns() as ns:
        sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        before = get_features(ns, "va")
        assert "rx-gro" not in before and "tx-tcp-segmentation" in before  # veth defaults
        now = set_features(ns, "va", {"gro": True, "tso": False})
        assert now["rx-gro"] is True and not any(v for k, v in now.items() if k.startswith("tx-tcp"))
        after = get_features(ns, "va")
        assert after["rx-gro"] and not [n for n in after if n.startswith("tx-tcp")]
        assert "rx-gro" not in get_features(ns, "vb")  # the peer is untouched
        with pytest.raises(KnobUnsupported, match="rx-vlan-filter"):
            set_features(ns, "va", {"rx-vlan-filter": True})
        with EthtoolFeatures(ns) as client, pytest.raises(OSError, match="No such device"):
            client.get("nosuchdev")
