"""net_dim: the kernel's lib/dim state machine walked window by window (algorithms.md section 1)."""

from __future__ import annotations

import random

import pytest

from test_policy_support import BACKEND, MS_NS, NIC, context, site_stats, window
from vcoal.model import CoalesceParams, TimerMode
from vcoal.policies._dim import (
    Cmp,
    Dim,
    DimSample,
    DimStats,
    MeasureState,
    Tune,
    calc_stats,
    is_significant_diff,
    stats_compare,
)
from vcoal.policies.net_dim import NetDim


class Loop:
    """Drives one NetDim over one NIC queue (rx only unless told), applying its decisions."""

    def __init__(self, **params):
        params.setdefault("tx", False)
        self.policy = NetDim(NetDim.Params(**params))
        self.ctx = context(NIC, BACKEND)
        self.policy.reset(self.ctx, random.Random(0))
        self.current = {s: i.initial for s, i in self.ctx.sites.items()}
        self.index = 0
        self.last = self._apply(self.policy.decide())

    def _apply(self, decision):
        if decision is not None:
            self.current.update(decision.params)
        return decision

    def window(self, rx=(1000, 100_000, 64), interval_ns=MS_NS, params=None):
        s = site_stats(NIC, params or self.current[NIC], interval_ns=interval_ns, rx=rx)
        self.policy.observe(window(self.index, s))
        self.index += 1
        self.last = self._apply(self.policy.decide())
        return self.last

    @property
    def dim(self) -> Dim:
        return self.policy._instances[0].dim

    @property
    def ix(self) -> int:
        return self.dim.profile_ix


def test_significance_is_the_kernels_integer_ten_percent():
    assert not is_significant_diff(110, 100)  # 100*10/100 = 10, not > 10
    assert is_significant_diff(111, 100)
    assert not is_significant_diff(5, 0)  # ref == 0 guard
    assert is_significant_diff(89, 100)


def test_compare_is_bytes_then_packets_then_fewer_events():
    prev = DimStats(ppms=100, bpms=1000, epms=50)
    assert stats_compare(DimStats(ppms=10, bpms=1200, epms=90), prev) is Cmp.BETTER
    assert stats_compare(DimStats(ppms=500, bpms=800, epms=10), prev) is Cmp.WORSE
    assert stats_compare(DimStats(ppms=120, bpms=1050, epms=90), prev) is Cmp.BETTER
    assert stats_compare(DimStats(ppms=100, bpms=1000, epms=40), prev) is Cmp.BETTER
    assert stats_compare(DimStats(ppms=100, bpms=1000, epms=60), prev) is Cmp.WORSE
    assert stats_compare(DimStats(ppms=100, bpms=1000, epms=54), prev) is Cmp.SAME
    assert stats_compare(DimStats(bpms=0), DimStats()) is Cmp.SAME
    assert stats_compare(DimStats(bpms=1), DimStats()) is Cmp.BETTER


def test_calc_stats_rounds_up_and_survives_counter_wrap():
    start = DimSample(0, 2**32 - 100, 2**32 - 1_000, 65_530)
    end = DimSample(3_000_500, 900, 9_000, 58)  # 1000 pkts, 10000 bytes, 64 events, 3000 us
    st = calc_stats(start, end)
    assert st is not None
    assert (st.ppms, st.bpms, st.epms, st.nevents, st.delta_us) == (334, 3334, 22, 64, 3000)
    assert calc_stats(start, DimSample(999, 900, 9_000, 58)) is None  # < 1 us elapsed


def test_default_profile_is_applied_first_with_eqe_timer():
    loop = Loop()
    p = loop.last.params[NIC]
    assert (p.rx_usecs, p.rx_frames, p.timer) == (8, 256, TimerMode.ABSOLUTE)
    assert BACKEND not in loop.last.params  # nic only by default
    assert loop.last.records[0].changed


def test_worked_example_of_section_1_6():
    loop = Loop()
    # W1: prev bpms 0 -> BETTER -> exit parking leftwards: ix 1 -> 0 (1 us)
    d = loop.window(rx=(640, 64_000, 64))
    assert loop.ix == 0 and loop.dim.tune is Tune.GOING_LEFT and d.params[NIC].rx_usecs == 1
    # W2: flat throughput, events up 25 % -> WORSE -> turn right -> ix 1 (8 us)
    d = loop.window(rx=(640, 64_000, 80))
    assert loop.ix == 1 and loop.dim.tune is Tune.GOING_RIGHT and d.params[NIC].rx_usecs == 8
    # W3: flat bytes and packets, fewer interrupts -> BETTER -> not on top -> ix 2 (64 us)
    d = loop.window(rx=(640, 64_000, 64))
    assert loop.ix == 2 and d.params[NIC].rx_usecs == 64
    # W4: bytes drop > 10 % -> WORSE -> turn left -> ix 1
    d = loop.window(rx=(640, 50_000, 64))
    assert loop.ix == 1 and loop.dim.tune is Tune.GOING_LEFT
    # W5: bytes recover -> BETTER -> on top (2 steps right, 1 back) -> park at ix 1, no change
    d = loop.window(rx=(640, 64_000, 64))
    assert loop.ix == 1 and loop.dim.tune is Tune.PARKING_ON_TOP
    assert d.params == {} and not d.records[0].changed
    assert "parking_on_top" in d.records[0].reason
    assert d.records[0].inputs["rx_bpms"] == 64_000


def test_parked_on_top_keeps_its_baseline_until_a_significant_change():
    loop = Loop()
    for rx in [(640, 64_000, 64), (640, 64_000, 80), (640, 64_000, 64), (640, 50_000, 64), (640, 64_000, 64)]:
        loop.window(rx=rx)
    assert loop.dim.tune is Tune.PARKING_ON_TOP
    # drift by 6 % per window: each step is insignificant, but the frozen baseline is 64000
    assert loop.window(rx=(640, 67_840, 64)).params == {}
    assert loop.dim.prev_stats.bpms == 64_000
    d = loop.window(rx=(640, 71_910, 64))  # 12.4 % above the parked baseline
    assert loop.dim.tune is Tune.GOING_LEFT and loop.ix == 0 and d.params[NIC].rx_usecs == 1


def test_tired_parks_after_ten_steps_and_counts_down_ten_windows():
    loop = Loop()
    bytes_ = 1_000_000
    ixs = []
    for _ in range(11):  # every window 20 % fewer bytes: WORSE -> zig-zag between 0 and 1
        loop.window(rx=(1_000, bytes_, 64))
        ixs.append(loop.ix)
        bytes_ = bytes_ * 8 // 10
    assert ixs == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1]
    assert loop.dim.tune is Tune.PARKING_TIRED and loop.dim.tired == 10
    for left in range(9, 0, -1):
        assert loop.window(rx=(1_000, bytes_, 64)).params == {}
        assert loop.dim.tune is Tune.PARKING_TIRED and loop.dim.tired == left
    d = loop.window(rx=(1_000, bytes_, 64))  # the tenth parked window exits leftwards
    assert loop.dim.tune is Tune.GOING_LEFT and loop.ix == 0 and d.params[NIC].rx_usecs == 1


def test_right_edge_parks_on_top_without_change():
    loop = Loop(start_profile=0)
    bytes_ = 100_000
    seen = []
    for _ in range(5):  # always 20 % more bytes: BETTER
        loop.window(rx=(1_000, bytes_, 64))
        seen.append((loop.ix, loop.dim.tune))
        bytes_ = bytes_ * 12 // 10
    assert [ix for ix, _ in seen] == [1, 2, 3, 4, 4]
    assert seen[-1][1] is Tune.PARKING_ON_TOP and loop.dim.tired == 0
    assert loop.current[NIC].rx_usecs == 256


def test_left_edge_parks_on_top():
    loop = Loop()
    loop.window(rx=(1_000, 100_000, 64))
    assert loop.ix == 0 and loop.dim.tune is Tune.GOING_LEFT
    d = loop.window(rx=(1_000, 150_000, 64))
    assert loop.ix == 0 and loop.dim.tune is Tune.PARKING_ON_TOP and d.params == {}


def test_windows_accumulate_until_64_events():
    loop = Loop()
    assert loop.window(rx=(100, 10_000, 30)) is None
    assert loop.window(rx=(100, 10_000, 30)) is None
    d = loop.window(rx=(100, 10_000, 30))
    inputs = d.records[0].inputs
    assert (inputs["rx_nevents"], inputs["rx_delta_us"], inputs["rx_bpms"]) == (90, 3000, 10_000)


def test_zero_interval_window_is_discarded_and_measurement_continues():
    loop = Loop()
    d = loop.window(rx=(500, 50_000, 100), interval_ns=0)
    assert d.params == {} and "0 us" in d.records[0].reason
    assert loop.dim.state is MeasureState.MEASURE_IN_PROGRESS and loop.ix == 1
    d = loop.window(rx=(100, 10_000, 10))
    inputs = d.records[0].inputs
    assert (inputs["rx_nevents"], inputs["rx_delta_us"], inputs["rx_bpms"]) == (110, 1000, 60_000)


def test_counters_wrap_like_the_kernels_u32_and_u16():
    loop = Loop()
    big = 3_000_000_000  # two windows overflow the u32 byte counter
    loop.window(rx=(1_000, big, 40_000))
    loop.window(rx=(1_000, big, 40_000))  # u16 event counter wraps here
    inst = loop.policy._instances[0]
    assert inst.sample.byte_ctr == (2 * big) % 2**32
    assert inst.sample.event_ctr == 80_000 % 2**16
    # the second window (opened after the first changed the profile) spans the wrap of both
    st = loop.policy._instances[0].dim.prev_stats
    assert (st.bpms, st.nevents, st.delta_us) == (big, 40_000, 1000)


def test_window_under_stale_params_is_discarded_after_a_change():
    loop = Loop()
    loop.window(rx=(640, 64_000, 64))
    assert loop.ix == 0
    stale = CoalesceParams(rx_usecs=8, rx_frames=256)
    assert loop.window(rx=(640, 64_000, 64), params=stale) is None  # opens the window at its end
    d = loop.window(rx=(640, 64_000, 80))
    assert d.records[0].inputs["rx_delta_us"] == 1000 and d.records[0].inputs["rx_nevents"] == 80


def test_cqe_mode_uses_cqe_table_and_packet_timer():
    loop = Loop(mode="cqe")
    p = loop.last.params[NIC]
    assert (p.rx_usecs, p.rx_frames, p.timer) == (8, 128, TimerMode.PACKET)
    loop.window(rx=(640, 64_000, 64))
    assert (loop.current[NIC].rx_usecs, loop.current[NIC].rx_frames) == (2, 256)


def test_tx_and_rx_are_separate_instances():
    pol = NetDim(NetDim.Params(mode="eqe"))
    pol.reset(context(NIC), random.Random(0))
    d = pol.decide()
    p = d.params[NIC]
    assert (p.rx_usecs, p.rx_frames, p.tx_usecs, p.tx_frames) == (8, 256, 8, 128)
    pol.observe(window(0, site_stats(NIC, p, rx=(640, 64_000, 64), tx=(10, 600, 5))))
    d = pol.decide()
    assert d.params[NIC].rx_usecs == 1 and d.params[NIC].tx_usecs == 8  # tx window still open


def test_backend_sites_only_when_asked_and_supported_fields_respected():
    pol = NetDim(NetDim.Params(layers="nic,backend", tx=False))
    ctx = context(NIC, BACKEND, supported=frozenset({"rx_usecs"}))
    pol.reset(ctx, random.Random(0))
    d = pol.decide()
    assert set(d.params) == {NIC, BACKEND}
    for p in d.params.values():
        assert (p.rx_usecs, p.rx_frames, p.timer) == (8, 1, TimerMode.ABSOLUTE)  # only rx_usecs set
    pol2 = NetDim()
    pol2.reset(context(NIC, supported=frozenset({"napi_defer_hard_irqs"})), random.Random(0))
    assert pol2.decide() is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"mode": "both"}, "mode"), ({"start_profile": 5}, "start_profile"), ({"layers": "nic,disk"}, "layers"),
     ({"rx": False, "tx": False}, "rx")],
)
def test_bad_params_are_rejected_naming_the_field(params, field):
    with pytest.raises(ValueError, match=field) as exc:
        NetDim.Params(**params)
    assert "\n" not in str(exc.value)


def test_random_stats_keep_the_index_in_the_table_and_tired_bounds_the_walk():
    rng = random.Random(2024)
    seen = set()
    for _ in range(50):
        dim = Dim(rng.randrange(5))
        steps_since_park = 0
        for _ in range(300):
            curr = DimStats(ppms=rng.randrange(0, 200), bpms=rng.choice([0, rng.randrange(1, 10_000)]),
                            epms=rng.randrange(0, 100))
            before = dim.profile_ix
            dim.decision(curr)
            assert 0 <= dim.profile_ix <= 4
            assert abs(dim.profile_ix - before) <= 1
            if dim.tune in (Tune.PARKING_ON_TOP, Tune.PARKING_TIRED):
                steps_since_park = 0
            elif dim.profile_ix != before:
                steps_since_park += 1
            assert steps_since_park <= 10  # "tired": at most 10 steps between two parkings
            assert 0 <= dim.tired <= 10
            seen.add(dim.tune)
    assert seen == set(Tune)  # the random walk visits every tune state
