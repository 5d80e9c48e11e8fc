"""A line-by-line port of Linux ``lib/dim`` (``dim.c`` + ``net_dim.c``) for one DIM instance.

Kernel sources (torvalds/linux): ``lib/dim/dim.c`` (dim_on_top, dim_turn, dim_park_on_top,
dim_park_tired, dim_calc_stats), ``lib/dim/net_dim.c`` (profile tables, net_dim_step,
net_dim_exit_parking, net_dim_stats_compare, net_dim_decision, net_dim) and ``include/linux/dim.h``
(DIM_NEVENTS, IS_SIGNIFICANT_DIFF, BIT_GAP). See shared/reference/algorithms.md section 1.

One deliberate difference, in ``calc_stats``: the kernel computes ``epms`` from the constant
DIM_NEVENTS (64), because it closes a window at the first NAPI completion after 64 events, so the
window holds 64 events (one per completion). vcoal feeds whole observation windows, which may hold
more than 64 events, so the measured event count is used; it equals 64 in the kernel's setting.
Everything else (u32/u16 wrap-safe gaps, DIV_ROUND_UP rates, the integer 10 % test, the state
machine) is the kernel's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vcoal.policies._common import ceil_div

DIM_NEVENTS = 64  # events (interrupts) per measurement window
NUM_PROFILES = 5  # NET_DIM_PARAMS_NUM_PROFILES
TIRED_LIMIT = 2 * NUM_PROFILES  # steps before a forced PARKING_TIRED
DEF_PROFILE_IX = 1  # NET_DIM_DEF_PROFILE_EQE / _CQE
USEC_PER_MSEC = 1000

# (usec, pkts) per profile index, from lib/dim/net_dim.c
PROFILES: dict[tuple[str, str], tuple[tuple[int, int], ...]] = {
    ("rx", "eqe"): ((1, 256), (8, 256), (64, 256), (128, 256), (256, 256)),
    ("rx", "cqe"): ((2, 256), (8, 128), (16, 64), (32, 64), (64, 64)),
    ("tx", "eqe"): ((1, 128), (8, 128), (32, 128), (64, 128), (128, 128)),
    ("tx", "cqe"): ((5, 128), (8, 64), (16, 32), (32, 32), (64, 32)),
}


class MeasureState(Enum):
    """``dim->state``."""

    START_MEASURE = "start_measure"
    MEASURE_IN_PROGRESS = "measure_in_progress"
    APPLY_NEW_PROFILE = "apply_new_profile"


class Tune(Enum):
    """``dim->tune_state``; right = more moderation (higher profile index)."""

    PARKING_ON_TOP = "parking_on_top"
    PARKING_TIRED = "parking_tired"
    GOING_RIGHT = "going_right"
    GOING_LEFT = "going_left"


class Cmp(Enum):
    """Result of ``net_dim_stats_compare``."""

    WORSE = "worse"
    SAME = "same"
    BETTER = "better"


class Step(Enum):
    """Result of ``net_dim_step``."""

    STEPPED = "stepped"
    TOO_TIRED = "too_tired"
    ON_EDGE = "on_edge"


@dataclass(frozen=True, slots=True)
class DimSample:
    """``struct dim_sample``: raw counters at one instant (packets/bytes u32, events u16)."""

    time_ns: int
    pkt_ctr: int
    byte_ctr: int
    event_ctr: int


@dataclass(frozen=True, slots=True)
class DimStats:
    """``struct dim_stats``: per-millisecond rates of one window (plus its raw extent)."""

    ppms: int = 0  # packets per msec
    bpms: int = 0  # bytes per msec
    epms: int = 0  # events per msec
    nevents: int = 0
    delta_us: int = 0


def bit_gap(bits: int, end: int, start: int) -> int:
    """``BIT_GAP``: wrap-safe ``end - start`` of a ``bits``-wide counter."""
    return (end - start) % (1 << bits)


def is_significant_diff(val: int, ref: int) -> bool:
    """``IS_SIGNIFICANT_DIFF``: more than 10 % apart, in the kernel's integer arithmetic."""
    return ref != 0 and (100 * abs(val - ref)) // ref > 10


def calc_stats(start: DimSample, end: DimSample) -> DimStats | None:
    """``dim_calc_stats``; None when no whole microsecond elapsed (the window is not closed)."""
    delta_us = (end.time_ns - start.time_ns) // 1000  # ktime_us_delta truncates
    if delta_us <= 0:
        return None
    npkts = bit_gap(32, end.pkt_ctr, start.pkt_ctr)
    nbytes = bit_gap(32, end.byte_ctr, start.byte_ctr)
    nevents = bit_gap(16, end.event_ctr, start.event_ctr)
    return DimStats(
        ppms=ceil_div(npkts * USEC_PER_MSEC, delta_us),
        bpms=ceil_div(nbytes * USEC_PER_MSEC, delta_us),
        epms=ceil_div(nevents * USEC_PER_MSEC, delta_us),
        nevents=nevents,
        delta_us=delta_us,
    )


def stats_compare(curr: DimStats, prev: DimStats) -> Cmp:
    """``net_dim_stats_compare``: bytes/ms, then packets/ms (more is better), then events/ms."""
    if not prev.bpms:
        return Cmp.BETTER if curr.bpms else Cmp.SAME
    if is_significant_diff(curr.bpms, prev.bpms):
        return Cmp.BETTER if curr.bpms > prev.bpms else Cmp.WORSE
    if not prev.ppms:
        return Cmp.BETTER if curr.ppms else Cmp.SAME
    if is_significant_diff(curr.ppms, prev.ppms):
        return Cmp.BETTER if curr.ppms > prev.ppms else Cmp.WORSE
    if not prev.epms:
        return Cmp.SAME
    if is_significant_diff(curr.epms, prev.epms):
        return Cmp.BETTER if curr.epms < prev.epms else Cmp.WORSE
    return Cmp.SAME


@dataclass(slots=True)
class DimOutcome:
    """What one ``net_dim`` call did: whether a window closed, its stats, the comparison, a change."""

    closed: bool = False
    discarded: bool = False  # >= 64 events but no time elapsed: keep measuring
    stats: DimStats | None = None
    cmp: Cmp | None = None
    changed: bool = False
    old_ix: int = 0
    new_ix: int = 0
    old_tune: Tune = Tune.PARKING_ON_TOP
    new_tune: Tune = Tune.PARKING_ON_TOP


class Dim:
    """One ``struct dim`` with the net_dim algorithm.

    A freshly created instance equals the kernel's zeroed struct except ``profile_ix``, which
    the driver initialises (``start_ix``, default NET_DIM_DEF_PROFILE = 1).
    """

    def __init__(self, start_ix: int = DEF_PROFILE_IX) -> None:
        if not 0 <= start_ix < NUM_PROFILES:
            raise ValueError(f"start_ix={start_ix}: out of range [0, {NUM_PROFILES - 1}]")
        self.state = MeasureState.START_MEASURE
        self.tune = Tune.PARKING_ON_TOP
        self.profile_ix = start_ix
        self.steps_left = 0
        self.steps_right = 0
        self.tired = 0
        self.prev_stats = DimStats()
        self.start_sample: DimSample | None = None

    # ---- dim.c primitives -------------------------------------------------------------------
    def on_top(self) -> bool:
        """``dim_on_top``: parked, or just turned back one step after >= 2 steps the other way."""
        if self.tune in (Tune.PARKING_ON_TOP, Tune.PARKING_TIRED):
            return True
        if self.tune is Tune.GOING_RIGHT:
            return self.steps_left > 1 and self.steps_right == 1
        return self.steps_right > 1 and self.steps_left == 1

    def turn(self) -> None:
        """``dim_turn``: reverse the direction of travel, restarting that side's step count."""
        if self.tune is Tune.GOING_RIGHT:
            self.tune = Tune.GOING_LEFT
            self.steps_left = 0
        elif self.tune is Tune.GOING_LEFT:
            self.tune = Tune.GOING_RIGHT
            self.steps_right = 0

    def park_on_top(self) -> None:
        """``dim_park_on_top``: stop at the current profile; resets the tired count."""
        self.steps_right = 0
        self.steps_left = 0
        self.tired = 0
        self.tune = Tune.PARKING_ON_TOP

    def park_tired(self) -> None:
        """``dim_park_tired``: stop for ``tired`` windows (the count is kept)."""
        self.steps_right = 0
        self.steps_left = 0
        self.tune = Tune.PARKING_TIRED

    # ---- net_dim.c --------------------------------------------------------------------------
    def step(self) -> Step:
        """``net_dim_step``: move one profile in the direction of travel."""
        if self.tired == TIRED_LIMIT:
            return Step.TOO_TIRED
        if self.tune is Tune.GOING_RIGHT:
            if self.profile_ix == NUM_PROFILES - 1:
                return Step.ON_EDGE
            self.profile_ix += 1
            self.steps_right += 1
        elif self.tune is Tune.GOING_LEFT:
            if self.profile_ix == 0:
                return Step.ON_EDGE
            self.profile_ix -= 1
            self.steps_left += 1
        self.tired += 1
        return Step.STEPPED

    def exit_parking(self) -> None:
        """``net_dim_exit_parking``: head left (towards less moderation) unless at profile 0."""
        self.tune = Tune.GOING_LEFT if self.profile_ix else Tune.GOING_RIGHT
        self.step()

    def decision(self, curr: DimStats) -> tuple[bool, Cmp | None]:
        """``net_dim_decision``: returns (profile changed, comparison result if one was made)."""
        prev_tune, prev_ix = self.tune, self.profile_ix
        res: Cmp | None = None
        if self.tune is Tune.PARKING_ON_TOP:
            res = stats_compare(curr, self.prev_stats)
            if res is not Cmp.SAME:
                self.exit_parking()
        elif self.tune is Tune.PARKING_TIRED:
            self.tired -= 1
            if not self.tired:
                self.exit_parking()
        else:
            res = stats_compare(curr, self.prev_stats)
            if res is not Cmp.BETTER:
                self.turn()
            if self.on_top():
                self.park_on_top()
            else:
                r = self.step()
                if r is Step.ON_EDGE:
                    self.park_on_top()
                elif r is Step.TOO_TIRED:
                    self.park_tired()
        if prev_tune is not Tune.PARKING_ON_TOP or self.tune is not Tune.PARKING_ON_TOP:
            self.prev_stats = curr
        return self.profile_ix != prev_ix, res

    def net_dim(self, sample: DimSample) -> DimOutcome:
        """``net_dim``: feed one sample; closes a window once 64 events have passed."""
        out = DimOutcome(old_ix=self.profile_ix, new_ix=self.profile_ix, old_tune=self.tune, new_tune=self.tune)
        if self.state is MeasureState.APPLY_NEW_PROFILE:
            return out
        if self.state is MeasureState.MEASURE_IN_PROGRESS:
            assert self.start_sample is not None
            nevents = bit_gap(16, sample.event_ctr, self.start_sample.event_ctr)
            if nevents < DIM_NEVENTS:
                return out
            curr = calc_stats(self.start_sample, sample)
            if curr is None:
                out.discarded = True
                return out
            changed, res = self.decision(curr)
            out.closed, out.stats, out.cmp = True, curr, res
            out.new_ix, out.new_tune = self.profile_ix, self.tune
            if changed:
                out.changed = True
                self.state = MeasureState.APPLY_NEW_PROFILE
                return out
        # START_MEASURE, or fall through after a window that changed nothing
        self.start_sample = sample
        self.state = MeasureState.MEASURE_IN_PROGRESS
        return out

    def work_done(self, start: DimSample | None = None) -> None:
        """The driver's work item applied the profile: measure afresh.

        Without ``start`` the next sample opens the window (the kernel's START_MEASURE); with it
        the window opens at ``start`` (the instant the new profile took effect).
        """
        if start is None:
            self.state = MeasureState.START_MEASURE
            self.start_sample = None
        else:
            self.state = MeasureState.MEASURE_IN_PROGRESS
            self.start_sample = start
