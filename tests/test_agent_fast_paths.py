"""The agent's hot-path constructors and decoders give exactly what the plain code gives."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from vcoal.linux.netlink import decode_napi_reply, fast_decode_napi
from vcoal.model.params import CoalesceParams
from vcoal.model.stats import (
    CounterSample,
    DirStats,
    SiteStats,
    new_counter_sample,
    new_dir_stats,
    sites_from_samples,
)
from vcoal.model.units import Layer, Site

GOLDEN = Path(__file__).parent / "golden" / "linux"


def test_fast_constructors_build_equal_frozen_objects():
    d = new_dir_stats(1, 2, 3, 4, 5)
    assert d == DirStats(1, 2, 3, 4, 5) and type(d) is DirStats and hash(d) == hash(DirStats(1, 2, 3, 4, 5))
    c = new_counter_sample(9, d, d, 7)
    assert c == CounterSample(9, d, d, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.packets = 0  # type: ignore[misc]


def _samples(t_ns: int, base: int) -> dict[Site, CounterSample]:
    sites = [Site(Layer.BACKEND, f"vif{i}") for i in range(5)]
    return {
        s: CounterSample(t_ns, DirStats(base + i, 100 * i, base, base, 0), DirStats(i, i, 0, 3, i), base * 10)
        for i, s in enumerate(sites)
    }


@pytest.mark.parametrize("bits", [64, 32])
def test_sites_from_samples_equals_from_samples(bits):
    old, new = _samples(1_000, 50), _samples(101_000, 60)
    sites = list(new)
    new[sites[1]] = CounterSample(101_000, DirStats(1, 0, 0, 0, 0), old[sites[1]].tx, 0)  # wraps; same tx object
    params = {s: CoalesceParams(rx_usecs=i) for i, s in enumerate(sites)}

    def plain(order, a, b):
        return {s: SiteStats.from_samples(s, a[s], b[s], params[s], bits) for s in order if s in a and s in b}

    fast = sites_from_samples(sites, old, new, params.__getitem__, bits)
    assert fast == plain(sites, old, new) and list(fast) == sites
    assert fast[sites[1]].rx.packets == (1 - 51) % (1 << bits) and fast[sites[1]].tx == DirStats()
    assert fast[sites[0]].tx is fast[sites[2]].tx  # equal deltas share one object
    # not aligned (other order, a site missing, one extra): the hashed path, the same result
    shuffled = {s: old[s] for s in reversed(sites[1:])}
    order = [Site(Layer.NIC, "q0"), *sites]
    assert sites_from_samples(order, shuffled, new, params.get, bits) == plain(order, shuffled, new)
    assert list(sites_from_samples(order, shuffled, new, params.get, bits)) == sites[1:]


def test_fast_napi_decoder_on_a_captured_dump():
    """A real netdev napi-get dump (veth, Linux 6.18): one 8-byte gro_flush_timeout, one 4-byte."""
    raw = [bytes.fromhex(line) for line in (GOLDEN / "napi_dump_veth.hex").read_text().split()]
    got = [fast_decode_napi(r) for r in raw]
    assert got == [decode_napi_reply(r) for r in raw]
    assert [(n.ifindex, n.defer_hard_irqs, n.gro_flush_timeout_ns) for n in got if n] == [
        (2, 2, 5_000_000_000), (3, 3, 20_000)]
    body = raw[1][16:20] + struct.pack("=HHI", 8, 1, 3)  # genl header, IFINDEX only: no NAPI id
    assert fast_decode_napi(struct.pack("=IHHII", 16 + len(body), 20, 2, 4, 0) + body) is None
