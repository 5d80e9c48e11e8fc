"""Builds ETHTOOL_MSG_COALESCE_GET replies byte for byte as the kernel does (net/ethtool/coalesce.c).

``coalesce_fill_reply`` emits, after the request header nest (DEV_INDEX u32, DEV_NAME string,
NLA_F_NESTED), only the attributes in the driver's ``supported_coalesce_params``, in attribute
order; u8 for the USE_* booleans, u32 otherwise; the DIM profile nests when the driver registered
an irq_moder. ``tap_real.hex`` is a real reply captured from Linux 6.18 (tap0, rx-frames 8) that
``build_reply`` must reproduce exactly, which checks the construction. Run this file to rewrite
the ``*.hex`` files of the richer drivers (values: their default ``ethtool -c`` output).
"""

from __future__ import annotations

import struct
from pathlib import Path

NLA_F_NESTED = 0x8000
ATTR = {
    "RX_USECS": 2, "RX_MAX_FRAMES": 3, "TX_USECS": 6, "TX_MAX_FRAMES": 7,
    "USE_ADAPTIVE_RX": 11, "USE_ADAPTIVE_TX": 12, "USE_CQE_MODE_TX": 24, "USE_CQE_MODE_RX": 25,
    "RX_PROFILE": 29, "TX_PROFILE": 30,
}
U8 = {"USE_ADAPTIVE_RX", "USE_ADAPTIVE_TX", "USE_CQE_MODE_TX", "USE_CQE_MODE_RX"}


def nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def profile(entries: list[tuple[int, int]]) -> bytes:
    """A DIM profile nest: PROFILE_IRQ_MODERATION (1) nests of USEC (1) and PKTS (2)."""
    return b"".join(
        nla(NLA_F_NESTED | 1, nla(1, struct.pack("=I", usec)) + nla(2, struct.pack("=I", pkts)))
        for usec, pkts in entries
    )


def build_reply(family: int, seq: int, pid: int, ifindex: int, ifname: str, attrs: dict) -> bytes:
    """One reply message; ``attrs`` maps attribute names to ints (or bytes for profile nests)."""
    header = nla(NLA_F_NESTED | 1, nla(1, struct.pack("=I", ifindex)) + nla(2, ifname.encode() + b"\0"))
    body = header
    for name in sorted(attrs, key=ATTR.__getitem__):
        value = attrs[name]
        if isinstance(value, bytes):
            body += nla(NLA_F_NESTED | ATTR[name], value)
        else:
            body += nla(ATTR[name], struct.pack("=B" if name in U8 else "=I", value))
    genl = struct.pack("=BBH", 20, 1, 0) + body  # ETHTOOL_MSG_COALESCE_GET_REPLY, version 1
    return struct.pack("=IHHII", 16 + len(genl), family, 0, seq, pid) + genl


DRIVERS = {
    # e1000e: supported_coalesce_params = ETHTOOL_COALESCE_RX_USECS; default InterruptThrottleRate mode 3
    "e1000e": (3, "enp0s25", {"RX_USECS": 3}),
    # virtio_net with VIRTIO_NET_F_NOTF_COAL: MAX_FRAMES | USECS | USE_ADAPTIVE_RX (values as measured)
    "virtio_net": (2, "ens3", {"RX_USECS": 0, "RX_MAX_FRAMES": 1, "TX_USECS": 0, "TX_MAX_FRAMES": 1, "USE_ADAPTIVE_RX": 0}),
    # mlx5 (ConnectX-5 defaults): USECS | MAX_FRAMES | USE_ADAPTIVE | USE_CQE, DIM profiles
    "mlx5": (
        4, "enp65s0f0np0",
        {
            "RX_USECS": 8, "RX_MAX_FRAMES": 128, "TX_USECS": 16, "TX_MAX_FRAMES": 32,
            "USE_ADAPTIVE_RX": 1, "USE_ADAPTIVE_TX": 1, "USE_CQE_MODE_TX": 0, "USE_CQE_MODE_RX": 1,
            "RX_PROFILE": profile([(2, 256), (8, 128), (16, 64), (32, 64), (64, 64)]),
            "TX_PROFILE": profile([(5, 128), (8, 64), (16, 32), (32, 32), (64, 32)]),
        },
    ),
}


def main() -> None:
    here = Path(__file__).parent
    for name, (ifindex, ifname, attrs) in DRIVERS.items():
        data = build_reply(27, 1, 4242, ifindex, ifname, attrs)
        (here / f"coalesce_{name}.hex").write_text(data.hex() + "\n")


if __name__ == "__main__":
    main()
