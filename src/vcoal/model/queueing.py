"""Exact results for the NAPI Min(N,T) coalescing queue (shared/reference/simulation.md B.1).

Model: Poisson arrivals (rate ``lam``); the interrupt is armed while the queue is empty and the CPU
idle; the first packet arriving while armed starts the timer; the interrupt costs U, then packets
are served FIFO and exhaustively with cost S each. Fuhrmann–Cooper decomposition gives the mean
sojourn time, the interrupt rate and the CPU utilisation. Any consistent time unit works (the tests
use microseconds). ``frames=None`` means no frame cap, ``usecs=None`` no timer (count only).

The policies use these formulas to predict a layer's added delay and interrupt rate; the
simulator's validation tests check its long-run means against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NapiPrediction:
    """Long-run means of one NAPI coalescing queue."""

    mean_sojourn: float  # arrival -> end of own processing
    mean_coalescing_delay: float  # arrival -> interrupt, averaged over all packets (zero-cost view)
    irq_rate: float  # interrupts per time unit
    cpu_util: float  # fraction of the CPU (interrupt + packet work)
    pkts_per_irq: float
    stable: bool


def _poisson_min_moments(mean: float, cap: int) -> tuple[float, float]:
    """E[K'] and E[K'(K'+1)] for K' = min(M, cap), M ~ Poisson(mean)."""
    if cap <= 0:
        return 0.0, 0.0
    # sum over m < cap of pmf, then the tail mass sits at cap
    pmf = math.exp(-mean)
    e1 = e2 = 0.0
    mass = 0.0
    settled = mean + 2.0  # from here on every term below is smaller than the one before
    for m in range(cap):
        t1, t2 = m * pmf, m * (m + 1) * pmf
        if m >= settled and e1 + t1 == e1 and e2 + t2 == e2 and mass + pmf == mass:
            break  # this term no longer changes a sum, so no later (smaller) one can: same floats
        e1 += t1
        e2 += t2
        mass += pmf
        pmf *= mean / (m + 1)
    tail = max(0.0, 1.0 - mass)
    e1 += cap * tail
    e2 += cap * (cap + 1) * tail
    return e1, e2


def batch_terms(lam: float, frames: int | None, usecs: float | None, timer: str = "absolute"):
    """E[K] (packets per batch incl. the first) and E[D_tot] (summed wait to the interrupt)."""
    if lam <= 0:
        raise ValueError(f"lam={lam}: arrival rate must be > 0")
    if timer == "packet":
        if frames not in (None, 0):
            raise ValueError("packet timer: exact formula only without a frame cap (frames=None)")
        if usecs is None:
            raise ValueError("packet timer needs usecs")
        g = math.exp(lam * usecs)
        return g, g * (g - 1.0) / lam
    if timer != "absolute":
        raise ValueError(f"timer={timer!r}: no closed form (use the sample-path oracle for 'itr')")
    no_cap = frames in (None, 0)
    if usecs is None or (usecs == 0 and not no_cap and frames > 1):
        if no_cap:
            raise ValueError("neither a timer nor a frame cap: the interrupt never fires")
        k1 = frames - 1
        return 1.0 + k1, frames * (frames - 1) / (2.0 * lam)
    if usecs == 0 or (not no_cap and frames <= 1):
        return 1.0, 0.0
    x = lam * usecs
    if no_cap:
        e1, e2 = x, x * x + 2.0 * x
    else:
        e1, e2 = _poisson_min_moments(x, frames - 1)
    return 1.0 + e1, e2 / (2.0 * lam)


def napi_min_nt(
    lam: float,
    frames: int | None,
    usecs: float | None,
    u_mean: float,
    u_m2: float,
    s_mean: float,
    s_m2: float,
    timer: str = "absolute",
) -> NapiPrediction:
    """Exact long-run means of the NAPI Min(N,T) queue with setup cost U and service S.

    Parameters
    ----------
    lam: arrival rate (per time unit).
    frames, usecs: the coalescer (see module docstring); ``timer`` is ``absolute`` or ``packet``.
    u_mean, u_m2: E[U], E[U^2] of the per-interrupt cost.
    s_mean, s_m2: E[S], E[S^2] of the per-packet cost.
    """
    ek, dtot = batch_terms(lam, frames, usecs, timer)
    rho = lam * s_mean
    stable = rho < 1.0
    ev = ek / lam + u_mean
    if not stable:
        return NapiPrediction(math.inf, dtot / ek, lam / ek, 1.0, ek, False)
    w = s_mean + lam * s_m2 / (2 * (1 - rho)) + (dtot + ek * u_mean + lam * u_m2 / 2) / (ek + lam * u_mean)
    r = (1 - rho) / ev
    return NapiPrediction(
        mean_sojourn=w,
        mean_coalescing_delay=dtot / ek,
        irq_rate=r,
        cpu_util=rho + r * u_mean,
        pkts_per_irq=lam / r,
        stable=True,
    )


def zero_cost_delay(lam: float, frames: int | None, usecs: float | None, timer: str = "absolute"):
    """Mean coalescing delay and interrupt rate with no CPU cost (hardware coalescing only)."""
    ek, dtot = batch_terms(lam, frames, usecs, timer)
    return dtot / ek, lam / ek
