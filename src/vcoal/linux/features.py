"""Device offload features (``ethtool -k/-K``) over ethtool netlink, without the ethtool binary.

The testbed needs GRO on (so every veth hop has a NAPI) and TSO off (so packets stay MTU-sized) on
each veth it builds. ``ethtool -K dev gro on tso off`` sends ``ETHTOOL_MSG_FEATURES_SET`` with a
verbose (by name) bitset of the wanted features; this module sends the same message, built with
struct, and reads the result back with ``ETHTOOL_MSG_FEATURES_GET`` (uapi ``ethtool_netlink.h``).

Feature names are the kernel's (``rx-gro``, ``tx-tcp-segmentation``); ``ethtool``'s short aliases
are patterns over them (``tso`` is every ``tx-tcp*-segmentation``), see ``ALIASES``.
"""

from __future__ import annotations

import fnmatch
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError

from vcoal.linux.netlink import KnobUnsupported, _GenlClient, _translate

ETHTOOL_MSG_FEATURES_GET = 11
ETHTOOL_MSG_FEATURES_SET = 12
_A_FEATURES_HEADER = 1
_A_FEATURES_HW = 2
_A_FEATURES_WANTED = 3
_A_FEATURES_ACTIVE = 4
_A_HEADER_DEV_NAME = 2
_A_BITSET_NOMASK = 1
_A_BITSET_BITS = 3
_A_BITSETS_BIT = 1
_A_BIT_NAME = 2
_A_BIT_VALUE = 3
_NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF
_HH = struct.Struct("=HH")

#: ethtool's short names -> the pattern of kernel features they switch (ethtool's ``off_flag_def``).
ALIASES: dict[str, str] = {
    "gro": "rx-gro",
    "tso": "tx-tcp*-segmentation",
    "gso": "tx-generic-segmentation",
    "lro": "rx-lro",
}


def _nla(kind: int, payload: bytes) -> bytes:
    body = _HH.pack(4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _nest(kind: int, *children: bytes) -> bytes:
    return _nla(kind | _NLA_F_NESTED, b"".join(children))


def _header(ifname: str) -> bytes:
    return _nest(_A_FEATURES_HEADER, _nla(_A_HEADER_DEV_NAME, ifname.encode() + b"\0"))


def expand(features: dict[str, bool], known: set[str] | frozenset[str]) -> dict[str, bool]:
    """Kernel feature names for a mapping that may use ethtool's aliases (``gro``, ``tso``), matched
    against the names the device reports (``known``); KnobUnsupported for a name matching none."""
    out: dict[str, bool] = {}
    for name, on in features.items():
        matched = fnmatch.filter(sorted(known), ALIASES.get(name, name))
        if not matched:
            raise KnobUnsupported(0, f"feature {name!r}: no feature of the device by that name can change")
        out.update(dict.fromkeys(matched, bool(on)))
    return out


def encode_features_set(ifname: str, features: dict[str, bool]) -> bytes:
    """The attributes of a FEATURES_SET changing only ``features`` (kernel names) of ``ifname``."""
    bits = [
        _nest(_A_BITSETS_BIT, _nla(_A_BIT_NAME, name.encode() + b"\0"), *([_nla(_A_BIT_VALUE, b"")] if on else []))
        for name, on in features.items()
    ]
    return _header(ifname) + _nest(_A_FEATURES_WANTED, _nest(_A_BITSET_BITS, *bits))


def _attrs(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset + 4 <= len(data):
        length, kind = _HH.unpack_from(data, offset)
        if length < 4:
            break
        out.append((kind & _NLA_TYPE_MASK, data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return out


def _bitset(payload: bytes) -> dict[str, bool]:
    attrs = _attrs(payload)
    nomask = any(k == _A_BITSET_NOMASK for k, _ in attrs)
    out: dict[str, bool] = {}
    for k, bits in attrs:
        if k != _A_BITSET_BITS:
            continue
        for _bk, bit in _attrs(bits):
            fields = dict(_attrs(bit))
            name = fields.get(_A_BIT_NAME, b"").rstrip(b"\0").decode()
            if name:
                out[name] = nomask or _A_BIT_VALUE in fields
    return out


def decode_features(reply: bytes) -> tuple[dict[str, bool], frozenset[str]]:
    """(active features name -> True, names of the features the device lets change) of one raw
    FEATURES_GET reply (netlink header included)."""
    sets = {kind: _bitset(payload) for kind, payload in _attrs(reply[20:])
            if kind in (_A_FEATURES_HW, _A_FEATURES_ACTIVE)}
    if _A_FEATURES_ACTIVE not in sets:
        raise ValueError("FEATURES_GET reply without an active bitset")
    active = {name: True for name, on in sets[_A_FEATURES_ACTIVE].items() if on}
    return active, frozenset(n for n, on in sets.get(_A_FEATURES_HW, {}).items() if on)


class EthtoolFeatures(_GenlClient):
    """ethtool netlink features of the devices of one network namespace."""

    family = "ethtool"

    def get(self, ifname: str) -> dict[str, bool]:
        """Every feature of ``ifname`` the kernel reports as active (name -> True)."""
        return self._state(ifname)[0]

    def _state(self, ifname: str) -> tuple[dict[str, bool], frozenset[str]]:
        try:
            replies = self._request_raw(ETHTOOL_MSG_FEATURES_GET, _header(ifname), NLM_F_REQUEST)
        except NetlinkError as exc:
            raise _translate(exc, f"ethtool features get {ifname}") from None
        return decode_features(replies[0])

    def set(self, ifname: str, features: dict[str, bool]) -> dict[str, bool]:
        """Switch ``features`` (kernel names or ethtool aliases) and read them back.

        Returns the features as now in force; raises KnobUnsupported naming each feature the device
        left in the other state (a fixed feature, like ``ethtool -K`` reporting "Could not change").
        """
        active, changeable = self._state(ifname)
        wanted = expand(features, changeable | active.keys())
        try:
            self._request_raw(ETHTOOL_MSG_FEATURES_SET, encode_features_set(ifname, wanted), NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as exc:
            raise _translate(exc, f"ethtool features set {ifname}") from None
        active = self.get(ifname)
        now = {name: active.get(name, False) for name in wanted}
        stuck = sorted(n for n, on in wanted.items() if now[n] != on)
        if stuck:
            raise KnobUnsupported(0, f"ethtool features set {ifname}: the device kept {', '.join(stuck)} unchanged")
        return now


def set_features(netns: str | None, ifname: str, features: dict[str, bool]) -> dict[str, bool]:
    """``ethtool -K ifname ...`` inside ``netns`` (None: this namespace); see ``EthtoolFeatures.set``."""
    with EthtoolFeatures(netns) as client:
        return client.set(ifname, features)


def get_features(netns: str | None, ifname: str) -> dict[str, bool]:
    """``ethtool -k ifname`` inside ``netns``: the active features by kernel name."""
    with EthtoolFeatures(netns) as client:
        return client.get(ifname)
