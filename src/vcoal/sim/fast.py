"""Compiled fast path for a one-layer host: the NAPI sample path as a one-pass recursion.

With a single FIFO stage served exhaustively, departures follow from arrivals without an event
list (shared/reference/simulation.md, Part C): a packet that finds the system idle arms the
interrupt and looks ahead for the fire time; every other packet is polled in the same run. This
module generates exactly the arrivals, service and interrupt costs the event-driven engine draws
(same named streams, same integer rounding), so both engines give identical departures; the tests
hold them to that. ``run_fast`` is used for eligible scenarios without a policy in the loop.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

from vcoal import __version__
from vcoal.model.histogram import _NBUCKETS, LatencyHistogram
from vcoal.model.params import TimerMode
from vcoal.model.result import CpuResult, DirResult, SiteResult, TenantResult, TrialResult
from vcoal.model.units import Layer, Site
from vcoal.sim.compiled_core import bucket_of
from vcoal.sim.rng import _BLOCK, stream
from vcoal.sim.summary import policy_params

MODE = {TimerMode.ABSOLUTE: 0, TimerMode.PACKET: 1, TimerMode.ITR: 2}
_BIG = 1 << 62


def napi_path(t, s, u, mode, usecs_ns, frames, budget, poll_ns, dep, fire_t):
    """Departures of packets ``t`` (sorted, ns) with service ``s``; interrupt k costs ``u[k]``.

    Fills ``dep`` and ``fire_t`` (fire time of interrupt k) and returns (interrupts, polls).
    A length-1 ``s`` or ``u`` is a constant cost. Pure Python reference of ``napi_path_jit``.
    """
    n = t.shape[0]
    s_const = s.shape[0] == 1
    u_const = u.shape[0] == 1
    d = -_BIG
    last_fire = -_BIG
    nirq = 0
    polls = 0
    work = 0
    for i in range(n):
        ti = t[i]
        if ti >= d:
            if mode == 2:
                fire = max(ti, last_fire + usecs_ns)
            elif (usecs_ns == 0 and frames <= 1) or frames == 1:
                fire = ti
            elif mode == 0:
                fire = ti + usecs_ns if usecs_ns > 0 else _BIG
                if frames > 0 and i + frames - 1 < n and t[i + frames - 1] < fire:
                    fire = t[i + frames - 1]
            else:
                j = i
                while j + 1 < n and t[j + 1] - t[j] < usecs_ns and (frames == 0 or j - i + 1 < frames):
                    j += 1
                fire = t[j] if (frames > 0 and j - i + 1 == frames) else t[j] + usecs_ns
            last_fire = fire
            fire_t[nirq] = fire
            d = fire + (u[0] if u_const else u[nirq]) + poll_ns + (s[0] if s_const else s[i])
            nirq += 1
            polls += 1
            work = 1
        else:
            if work >= budget:
                d += poll_ns
                polls += 1
                work = 0
            d += s[0] if s_const else s[i]
            work += 1
        dep[i] = d
    return nirq, polls


napi_path_jit = njit(cache=True, nogil=True)(napi_path)


def eligible(spec, policy) -> bool:
    """True when the fast path reproduces the event-driven engine for this scenario."""
    if (policy is not None and not getattr(policy, "is_noop", False)) or spec.host.layers != ("nic",) or len(spec.guests) != 1 or spec.nic.queues != 1:
        return False
    w = spec.guests[0].workload
    p = spec.site_params()[Site(Layer.NIC, "q0")]
    no_defer = p.napi_defer_hard_irqs == 0 or p.gro_flush_timeout_ns == 0
    open_loop = w.kind == "poisson" and w.on_us == 0 and not w.steps
    # the recursion assumes no ring drops: the ring must hold any plausible backlog
    return no_defer and (open_loop or w.kind == "trace") and spec.nic.rx_ring >= 10**6


def _draws(seed: int, name: str, n: int) -> np.ndarray:
    """The first ``n`` unit exponentials of a stream, drawn in the DES's block sizes."""
    gen = stream(seed, name)
    nblocks = max(1, math.ceil(n / _BLOCK))
    out = np.empty(nblocks * _BLOCK)
    for b in range(nblocks):
        gen.standard_exponential(out=out[b * _BLOCK:(b + 1) * _BLOCK])
    return out[:n]


@njit(cache=True, nogil=True)
def _cumulate(draws, mean, end_ns, out):  # pragma: no cover - compiled
    """Arrival times t_k = t_(k-1) + int(mean * draw_k + 0.5) up to end_ns; returns their count."""
    t = 0
    for i in range(draws.shape[0]):
        t += int(mean * draws[i] + 0.5)
        if t > end_ns:
            return i
        out[i] = t
    return -1


def _arrivals(spec, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
    w = spec.guests[0].workload
    if w.kind == "trace":
        rows = [(round(ts * 1000), size) for ts, size, d in w.trace_rows if d == "rx"]
        t = np.array([r[0] for r in rows if r[0] < end_ns], dtype=np.int64)
        sizes = np.array([r[1] for r in rows[: len(t)]], dtype=np.int64)
        return t, sizes
    if w.rate_pps <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    expected = int(w.rate_pps * end_ns / 1e9)
    n = expected + 8 * int(math.sqrt(expected + 1)) + 64
    mean = 1e9 / w.rate_pps
    while True:
        t = np.empty(n, dtype=np.int64)
        count = _cumulate(_draws(spec.seed, f"workload/{spec.guests[0].name}", n), mean, end_ns, t)
        if count >= 0:
            break
        n *= 2
    return t[:count], np.full(1, w.packet_bytes, dtype=np.int64)  # one size for every packet


def simulate_one_layer(spec, jit: bool = True):
    """Arrays of the one-layer sample path: (t, sizes, dep, fire_t, u of each interrupt, s, polls,
    params); ``sizes`` and ``s`` have length 1 when every packet has the same."""
    end_ns = round(spec.duration_s * 1e9)
    c = spec.cost
    p = spec.site_params()[Site(Layer.NIC, "q0")]
    t, sizes = _arrivals(spec, end_ns)
    n = t.shape[0]
    mean = round(c.nic_pkt_us * 1000)
    if c.service_dist == "exp":
        sz = sizes if sizes.shape[0] == n else np.full(n, sizes[0], dtype=np.int64)
        s = ((mean + c.byte_copy_ns * sz) * _draws(spec.seed, "service", n) + 0.5).astype(np.int64)
    else:
        s = mean + (c.byte_copy_ns * sizes + 0.5).astype(np.int64)  # length 1 when sizes are
    irq_ns = round(c.irq_us * 1000)
    if c.irq_dist == "exp" and irq_ns > 0:
        u = (irq_ns * _draws(spec.seed, "irq", n) + 0.5).astype(np.int64)
    else:
        u = np.full(1, irq_ns, dtype=np.int64)
    dep = np.empty(n, dtype=np.int64)
    fire_t = np.empty(n, dtype=np.int64)
    kernel = napi_path_jit if jit else napi_path
    nirq, polls = kernel(t, s, u, MODE[p.timer], 1000 * p.rx_usecs, p.rx_frames, p.napi_budget,
                         round(c.poll_us * 1000), dep, fire_t)
    u_fired = np.full(nirq, u[0], dtype=np.int64) if u.shape[0] == 1 else u[:nirq]
    return t, sizes, dep, fire_t[:nirq], u_fired, s, polls, p


@njit(cache=True, nogil=True)
def _measure(t, dep, lo_ns, hi_ns, counts, s, sizes):  # pragma: no cover - compiled
    """Histogram of dep - t for packets departing in (lo_ns, hi_ns]; returns (n, sum, min, max,
    their service time, their bytes). Length-1 ``s``/``sizes`` are constants."""
    n = 0
    total = 0
    vmin = 1 << 62
    vmax = 0
    s_sum = 0
    b_sum = 0
    s_const = s.shape[0] == 1
    z_const = sizes.shape[0] == 1
    for i in range(t.shape[0]):
        d = dep[i]
        if d <= lo_ns or d > hi_ns:
            continue
        s_sum += s[0] if s_const else s[i]
        b_sum += sizes[0] if z_const else sizes[i]
        v = d - t[i]
        counts[bucket_of(v)] += 1
        n += 1
        total += v
        vmin = min(vmin, v)
        vmax = max(vmax, v)
    return n, total, vmin, vmax, s_sum, b_sum


def bucket_counts(latency_ns: np.ndarray) -> np.ndarray:
    """Histogram bucket counts of latencies (same buckets as LatencyHistogram)."""
    counts = np.zeros(_NBUCKETS, dtype=np.int64)
    lat = np.asarray(latency_ns, dtype=np.int64)
    one = np.zeros(1, dtype=np.int64)
    _measure(np.zeros_like(lat), lat, -1, 1 << 62, counts, one, one)
    return counts


def run_fast(spec, jit: bool = True, policy=None) -> TrialResult:
    """The TrialResult of an eligible one-layer scenario, from the compiled recursion."""
    wall0 = time.perf_counter()
    t, sizes, dep, fire_t, u, s, polls, params = simulate_one_layer(spec, jit)
    end_ns = round(spec.duration_s * 1e9)
    warm = round(spec.warmup_s * 1e9)
    counts = np.zeros(_NBUCKETS, dtype=np.int64)
    nlat, total, vmin, vmax, s_sum, b_sum = _measure(t, dep, warm if warm > 0 else -(1 << 62), end_ns,
                                                     counts, s, sizes)
    hist = LatencyHistogram()
    if nlat:
        hist.add_counts(counts, int(total), int(vmin), int(vmax))
    seconds = (end_ns - warm) / 1e9
    g = spec.guests[0]
    lo, hi = (np.searchsorted(t, warm, side="right") if warm > 0 else 0), np.searchsorted(t, end_ns, side="right")
    npk = int(hi - lo)
    in_bytes = npk * int(sizes[0]) if sizes.shape[0] == 1 else int(sizes[lo:hi].sum())
    fired = (fire_t > warm) & (fire_t <= end_ns) if warm > 0 else fire_t <= end_ns
    nirq = int(fired.sum())
    irq_busy = int(u[(fire_t + u > warm) & (fire_t + u <= end_ns)].sum())
    soft_busy = int(s_sum) + polls * round(spec.cost.poll_us * 1000)
    period = end_ns - warm
    irq_f, soft_f = min(1.0, irq_busy / period), min(1.0, soft_busy / period)
    lat = hist.summary_us()
    tput_bps = int(b_sum) * 8 / seconds
    tenant = TenantResult(
        name=g.name, kind=g.workload.kind, direction="rx", slo_p99_us=g.slo.p99_us,
        slo_min_throughput_bps=g.slo.min_throughput_bps, latency_us=lat, rtt_us=None,
        throughput_pps=nlat / seconds, throughput_bps=tput_bps, sent=npk, delivered=int(nlat), drops=0,
        slo_met=g.slo.to_slo().verdict(lat["p99"], bool(hist.count), tput_bps),
        latency_cdf_us=hist.cdf_us(),
    )
    rx = DirResult(npk, in_bytes, nirq, polls, 0, nirq / seconds, npk / nirq if nirq else math.nan)
    tx = DirResult(0, 0, 0, 0, 0, 0.0, math.nan)
    site = SiteResult("nic:q0", "nic", rx, tx, irq_busy + soft_busy, params.to_dict())
    cpus = [CpuResult("dom0-c0", irq_f, soft_f, 0.0, max(0.0, 1 - irq_f - soft_f))]
    return TrialResult(
        scenario=spec.name, spec_hash=spec.spec_hash(), seed=spec.seed,
        policy=policy.name if policy is not None else "scenario",
        policy_params=policy_params(policy),
        duration_s=spec.duration_s, measured_s=seconds, tenants=[tenant], sites=[site], cpus=cpus,
        meta={"engine": "fast" if jit else "fast-python", "vcoal_version": __version__,
              "wall_s": time.perf_counter() - wall0, "site_packets": npk},
    )
