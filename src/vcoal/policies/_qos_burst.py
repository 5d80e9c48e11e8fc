"""Burst-aware load of the ``qos`` controller: bursts shorter than a policy window.

A window's counters give its mean rate only; traffic that arrives in bursts (on/off, synchronised
tenants) at ``b`` times the mean rate for ``1 / b`` of the time coalesces far better than Poisson
traffic at the mean rate: every timer catches ``b`` times more packets per interrupt, and a frame cap
fills ``b`` times faster. The controller therefore models every chain's input as on/off: the stages
run at the on-rate ``b * lam`` (delays and p99 bounds as inside a burst) and the chain's events, polls
and CPU are scaled by the duty cycle ``1 / b`` (``_qos_plan.Planner._predict``); ``b = 1`` is Poisson
at the mean.

Estimator (measured packets per interrupt). In a window where the chain's setting responds to its
load (the model's events at the setting in force fall by at least ``INFO_MIN`` of their value between
``b = 1`` and ``b = BURST_MAX``: a timer, a frame cap, a deferral, or a consumer busy enough for NAPI to
batch), ``b`` is the unique solution of ``out(b * lam) / b = measured events per µs`` (``out``
decreases in ``b``, so bisection), clamped to [1, ``BURST_MAX``]; the estimate is an EWMA in log
space with gain ``BURST_ALPHA``. A window where the setting cannot tell (no coalescing and an idle
consumer: one event per packet whatever the bursts), with fewer than 20 interrupts, or with a NAPI
deferral in force on the chain (a deferral in its busy regime polls on a timer and takes almost no
interrupts whatever the bursts: its events are not evidence of them) leaves the estimate as it is. The first
coalescing step is planned with the estimate so far (1 at the start); once any coalescing is in
force the measured packets per interrupt reveal the bursts, and the next plan sees the larger saving.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from vcoal.model.stats import WindowStats
from vcoal.policies._qos_evidence import MIN_EVIDENCE_PACKETS

BURST_MAX = 32.0  # largest on-rate / mean rate the estimator reports
INFO_MIN = 0.1  # relative response of the model's events to b below which a window cannot tell b
BURST_ALPHA = 0.5  # EWMA gain (log space) of the burst factor
MIN_BURST_EVENTS = 20  # interrupts a chain needs in a window to tell its burst factor
BISECT_STEPS = 24  # bisection steps in log b (precision ln(BURST_MAX) / 2**24)


def infer_burst(out_at: Callable[[float], float], lam: float, measured: float) -> float | None:
    """The burst factor that explains ``measured`` events per µs at mean rate ``lam`` per µs, given the
    chain's Poisson response ``out_at(rate) -> events per µs``; None when the setting cannot tell."""
    if lam <= 0 or measured < 0:
        return None
    g = lambda b: out_at(b * lam) / b  # noqa: E731
    g1, gmax = g(1.0), g(BURST_MAX)
    if g1 <= 0 or g1 - gmax < INFO_MIN * g1:
        return None
    if measured >= g1:
        return 1.0
    if measured <= gmax:
        return BURST_MAX
    lo, hi = 0.0, math.log(BURST_MAX)
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if g(math.exp(mid)) > measured:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def update_burst(old: float | None, observed: float) -> float:
    """One EWMA step (log space) of a chain's burst factor."""
    if old is None:
        return observed
    return math.exp(math.log(old) + BURST_ALPHA * (math.log(observed) - math.log(old)))


def update_bursts(q, stats: WindowStats, planner, measured: dict[str, tuple[float, int, int]]) -> bool:
    """Fold one window's evidence into the burst factors ``q.burst`` of the controller ``q`` (a ``Qos``),
    chains under check excepted (their model stays fixed); whether any factor changed. ``measured``:
    chain key -> (CPU fraction, input packets, wake-up events) of the window."""
    moved = False
    per_us = 1000.0 / stats.interval_ns
    for c in planner.chains:
        m = measured.get(c.key)
        ps = tuple(q.current[g.site] for g in c.gates)
        if (c.key in q.checks or m is None or m[1] < MIN_EVIDENCE_PACKETS or m[2] < MIN_BURST_EVENTS
                or any(g.knob == "napi" and g.hold_us(p) > 0 for g, p in zip(c.gates, ps, strict=True))):
            continue  # too few events to count, or a deferral in force (its events say little of bursts)
        b = infer_burst(lambda lam, c=c, ps=ps: planner.chain_out(c, ps, lam), m[1] * per_us, m[2] * per_us)
        if b is not None:
            new = float(f"{update_burst(q.burst.get(c.key), b):.3g}")
            moved = moved or new != q.burst.get(c.key, 1.0)
            q.burst[c.key] = new
    return moved
