"""intel_itr: e1000e classes and ramps, ixgbe bands and size formula, with hand-computed numbers."""

from __future__ import annotations

import random

import pytest

from test_policy_support import FRONTEND, MS_NS, NIC, context, site_stats, window
from vcoal.model import CoalesceParams, TimerMode
from vcoal.policies.intel_itr import (
    BULK,
    ITR_LATENCY,
    LOW,
    LOWEST,
    IntelItr,
    e1000e_gap_us,
    e1000e_update_class,
    itr_cycle_s,
    ixgbe_update_container,
)


class Loop:
    """One IntelItr over one NIC site, decisions applied at the window boundary."""

    def __init__(self, **params):
        self.policy = IntelItr(IntelItr.Params(**params))
        self.policy.reset(context(NIC, FRONTEND), random.Random(0))
        self.current = CoalesceParams()
        self.last = self._apply(self.policy.decide())
        self.index = 0

    def _apply(self, d):
        if d is not None and NIC in d.params:
            self.current = d.params[NIC]
        return d

    def window(self, rx=(0, 0, 0), tx=(0, 0, 0), interval_ns=MS_NS):
        s = site_stats(NIC, self.current, interval_ns=interval_ns, rx=rx, tx=tx)
        self.policy.observe(window(self.index, s))
        self.index += 1
        return self._apply(self.policy.decide())

    @property
    def engine(self):
        return self.policy._engines[NIC]


@pytest.mark.parametrize(
    ("cls", "packets", "bytes_", "expected"),
    [
        (LOWEST, 0, 0, LOWEST),
        (LOWEST, 1, 9_000, BULK),  # TSO/jumbo
        (LOWEST, 3, 600, LOW),
        (LOWEST, 3, 500, LOWEST),
        (LOWEST, 20, 30_000, LOWEST),
        (LOW, 20, 30_000, BULK),  # > 1200 B per packet
        (LOW, 9, 10_800, BULK),  # fewer than 10 packets
        (LOW, 40, 40_000, LOWEST),  # many small-ish packets
        (LOW, 20, 12_000, LOW),
        (LOW, 2, 5_000, BULK),  # > 2000 B per packet
        (LOW, 2, 400, LOWEST),
        (BULK, 40, 30_000, LOW),
        (BULK, 20, 30_000, BULK),
        (BULK, 3, 5_000, LOW),
        (BULK, 5, 8_000, BULK),
    ],
)
def test_e1000e_class_transitions(cls, packets, bytes_, expected):
    assert e1000e_update_class(cls, packets, bytes_) == expected


def test_e1000e_register_gaps():
    # 10**9 // (rate * 256) in 256 ns units, then to whole microseconds
    assert [e1000e_gap_us(r) for r in (70_000, 20_000, 4_000, 9_000, 14_000, 19_000)] == [14, 50, 250, 111, 71, 52]


def test_e1000e_initial_setting_is_20000_irq_per_s_as_itr_gap():
    loop = Loop()
    p = loop.last.params[NIC]
    assert (p.rx_usecs, p.tx_usecs, p.timer, p.rx_frames) == (50, 50, TimerMode.ITR, 1)
    assert FRONTEND not in loop.last.params


def test_e1000e_conservative_goes_bulk_then_ramps_up_by_quarters():
    loop = Loop()
    loop.window(rx=(20, 30_000, 1))  # lowest -> low (conservative demotes lowest): 20000
    assert (loop.engine.rx_cls, loop.engine.itr) == (LOW, 20_000)
    d = loop.window(rx=(20, 30_000, 1))  # low -> bulk: drop to 4000 at once
    assert (loop.engine.rx_cls, loop.engine.itr, d.params[NIC].rx_usecs) == (BULK, 4_000, 250)
    gaps = []
    for _ in range(4):  # 2 small packets per interrupt: bulk -> low; lowest is demoted to low
        d = loop.window(rx=(2, 200, 1))
        gaps.append((loop.engine.itr, d.params[NIC].rx_usecs))
    assert gaps == [(9_000, 111), (14_000, 71), (19_000, 52), (20_000, 50)]
    d = loop.window(rx=(2, 200, 1))
    assert d.params == {} and not d.records[0].changed
    assert d.records[0].predicted["gap_us"] == 50


def test_e1000e_dynamic_mode_allows_lowest_latency():
    loop = Loop(itr_mode=1)
    loop.window(rx=(2, 1_000, 1))  # lowest -> low
    assert loop.engine.rx_cls == LOW
    seen = [loop.window(rx=(2, 400, 1)).params[NIC].rx_usecs for _ in range(3)]
    assert loop.engine.itr == 70_000 and seen == [27, 18, 14]  # 37500, 55000, 70000 irq/s


def test_e1000e_replays_every_interrupt_of_a_window():
    loop = Loop()
    loop.window(rx=(20, 30_000, 1))
    loop.window(rx=(20, 30_000, 1))
    assert loop.engine.itr == 4_000
    d = loop.window(rx=(8, 800, 8))  # 8 interrupts with one small packet each
    # bulk -> low at the first; then 9000, 14000, 19000, 20000 and a fixed point
    assert loop.engine.itr == 20_000 and d.params[NIC].rx_usecs == 50
    assert d.records[0].inputs["updates_replayed"] == 5


def test_e1000e_non_gigabit_link_is_fixed_at_4000():
    loop = Loop(link_mbps=100)
    d = loop.window(rx=(2, 200, 1))
    assert loop.engine.itr == 4_000 and d.params[NIC].rx_usecs == 250


def test_itr_cycle_formula():
    assert itr_cycle_s(10_000, 50e-6) == pytest.approx(50e-6 + 0.60653066 / 10_000)
    assert itr_cycle_s(0, 50e-6) == float("inf")


@pytest.mark.parametrize(
    ("cur", "prev", "packets", "bytes_", "link", "expected"),
    [
        (200, 254, 0, 0, 10_000, 52 | ITR_LATENCY),  # idle: +2 us, keeps the latency bit
        (200, 0, 0, 0, 10_000, 52),
        (200, 0, 2, 128, 10_000, ITR_LATENCY | 12),  # 64 B: w=5280, /2, ceil(2640/512)*2
        (200, 0, 20, 20_000, 10_000, 52),  # < 48 packets: +2 us
        (200, 0, 60, 60_000, 10_000, 50),  # goldilocks
        (200, 0, 100, 100_000, 10_000, 25),  # overshoot: halve
        (40, 0, 100, 100_000, 10_000, 10),  # halving floors at 10 us
        (200, 0, 300, 450_000, 10_000, 118),  # bulk 1500 B: w=29920, ceil(/512)*2
        (200, 0, 300, 450_000, 1_000, 126),  # 1G: w capped 8064, ceil(/128)*2
        (200, 0, 300, 600_000, 10_000, 126),  # 2000 B plateau 32256
        (500, 0, 40, 40_000, 10_000, 126),  # +2 capped at 126
    ],
)
def test_ixgbe_container_bands(cur, prev, packets, bytes_, link, expected):
    assert ixgbe_update_container(cur, prev, packets, bytes_, link) == expected


def test_ixgbe_bulk_rx_wins_over_latency_tx():
    loop = Loop(variant="ixgbe")
    assert loop.last.params[NIC].rx_usecs == 50  # IXGBE_20K_ITR
    d = loop.window(rx=(300, 450_000, 1))
    # tx (no packets) -> 52 | latency = 180, rx bulk 118: min of the raw values is rx
    assert (loop.engine.tx, loop.engine.rx) == (180, 118)
    p = d.params[NIC]
    assert (p.rx_usecs, p.tx_usecs, p.timer) == (118, 118, TimerMode.ITR)


def test_ixgbe_latency_flow_gets_a_short_gap():
    loop = Loop(variant="ixgbe")
    d = loop.window(rx=(2, 128, 1), tx=(2, 128, 1))
    assert d.params[NIC].rx_usecs == 12


def test_ixgbe_stale_statistics_fall_back_to_10us_latency():
    loop = Loop(variant="ixgbe")
    d = loop.window(rx=(300, 450_000, 1), interval_ns=5 * MS_NS)  # 5 ms between updates > 1.5 jiffy
    assert loop.engine.rx == 10 | ITR_LATENCY and d.params[NIC].rx_usecs == 10
    loop2 = Loop(variant="ixgbe", hz=100)  # 10 ms jiffies: the same window is fresh
    assert loop2.window(rx=(300, 450_000, 1), interval_ns=5 * MS_NS).params[NIC].rx_usecs == 118


def test_no_interrupts_means_no_update_and_supported_fields_respected():
    loop = Loop()
    assert loop.window(rx=(5, 500, 0)) is None
    pol = IntelItr()
    pol.reset(context(NIC, supported=frozenset({"rx_usecs"})), random.Random(0))
    p = pol.decide().params[NIC]
    assert (p.rx_usecs, p.tx_usecs, p.timer) == (50, 0, TimerMode.ABSOLUTE)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"variant": "igb"}, "variant"), ({"itr_mode": 2}, "itr_mode"), ({"hz": 50}, "hz"),
     ({"link_mbps": -1}, "link_mbps"), ({"layers": ""}, "layers")],
)
def test_bad_params_are_rejected_naming_the_field(params, field):
    with pytest.raises(ValueError, match=field) as exc:
        IntelItr.Params(**params)
    assert "\n" not in str(exc.value)
