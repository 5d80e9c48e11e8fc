"""Compiled fast path for a one-layer host: the NAPI sample path as a one-pass recursion.

With a single FIFO stage served exhaustively, departures follow from arrivals without an event
list (shared/reference/simulation.md, Part C): a packet that finds the system idle arms the
interrupt and looks ahead for the fire time; every other packet is polled in the same run. This
module generates exactly the arrivals, service and interrupt costs the event-driven engine draws
(same named streams, same integer rounding), so both engines give identical departures; the tests
hold them to that. ``run_fast`` is used for eligible scenarios without a policy in the loop; it
streams the path in chunks of ``CHUNK`` packets (state carried between them), so its memory does
not grow with the run length.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from vcoal import __version__
from vcoal.model.histogram import _NBUCKETS, LatencyHistogram
from vcoal.model.params import TimerMode
from vcoal.model.result import CpuResult, SiteResult, TrialResult
from vcoal.model.stats import DirStats
from vcoal.model.units import Layer, Site
from vcoal.sim.engine.core import bucket_of
from vcoal.sim.rng import DrawSource
from vcoal.sim.summary import dir_result, tenant_result, trial_result
from vcoal.sim.topology import cost_terms

MODE = {TimerMode.ABSOLUTE: 0, TimerMode.PACKET: 1, TimerMode.ITR: 2}
_BIG = 1 << 62


def napi_chunk(t, s, u, mode, usecs_ns, frames, budget, poll_ns, final, st, dep, fire_t):
    """Departures of packets ``t`` (sorted, ns) with service ``s``; this call's k-th interrupt costs ``u[k]``.

    Continues the sample path from state ``st`` = [last departure, last fire, packets in the
    current poll, polls so far] and updates it. Fills ``dep`` and ``fire_t`` (fire times) and
    returns (packets done, interrupts fired). Unless ``final``, it stops before a packet whose
    fire time depends on arrivals beyond ``t`` (the frame cap's look-ahead, or a packet-timer run
    reaching the end of ``t``), so that the caller can append the next arrivals and go on.
    A length-1 ``s`` or ``u`` is a constant cost. Pure Python reference of ``napi_chunk_jit``.
    """
    n = t.shape[0]
    s_const = s.shape[0] == 1
    u_const = u.shape[0] == 1
    d, last_fire, work, polls = st[0], st[1], st[2], st[3]
    nirq = 0
    i = 0
    while i < n:
        ti = t[i]
        if ti >= d:
            if mode == 2:
                fire = max(ti, last_fire + usecs_ns)
            elif (usecs_ns == 0 and frames <= 1) or frames == 1:
                fire = ti
            elif mode == 0:
                fire = ti + usecs_ns if usecs_ns > 0 else _BIG
                if frames > 0:
                    if i + frames - 1 < n:
                        fire = min(fire, t[i + frames - 1])
                    elif not final:
                        break
            else:
                j = i
                while j + 1 < n and t[j + 1] - t[j] < usecs_ns and (frames == 0 or j - i + 1 < frames):
                    j += 1
                capped = frames > 0 and j - i + 1 == frames
                if j + 1 == n and not capped and not final:
                    break
                fire = t[j] if capped else t[j] + usecs_ns
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
        i += 1
    st[0], st[1], st[2], st[3] = d, last_fire, work, polls
    return i, nirq


napi_chunk_jit = njit(cache=True, nogil=True)(napi_chunk)


def napi_path(t, s, u, mode, usecs_ns, frames, budget, poll_ns, dep, fire_t, jit: bool = True):
    """The whole sample path of ``t`` at once (``napi_chunk`` from the idle state); returns
    (interrupts, polls)."""
    st = np.array([-_BIG, -_BIG, 0, 0], dtype=np.int64)
    _, nirq = (napi_chunk_jit if jit else napi_chunk)(t, s, u, mode, usecs_ns, frames, budget, poll_ns, True, st,
                                                      dep, fire_t)
    return nirq, int(st[3])


def eligible(spec, policy) -> bool:
    """True when the fast path reproduces the event-driven engine for this scenario."""
    if (policy is not None and not getattr(policy, "is_noop", False)) or spec.host.layers != ("nic",) or len(spec.guests) != 1 or spec.nic.queues != 1:
        return False
    if spec.irq_core_of(0) != 0:  # the recursion reports the queue's work on dom0-c0
        return False
    w = spec.guests[0].workload
    p = spec.site_params()[Site(Layer.NIC, "q0")]
    no_defer = p.napi_defer_hard_irqs == 0 or p.gro_flush_timeout_ns == 0
    open_loop = w.kind == "poisson" and w.on_us == 0 and not w.steps and not w.dists()
    # the recursion assumes no ring drops: the ring must hold any plausible backlog
    # a timer semantics the recursion does not know runs on the engine
    return p.timer in MODE and no_defer and (open_loop or w.kind == "trace") and spec.nic.rx_ring >= 10**6


@njit(cache=True, nogil=True)
def _cumulate(draws, mean, t0, end_ns, out):  # pragma: no cover - compiled
    """Arrival times t_k = t_(k-1) + int(mean * draw_k + 0.5) after ``t0``, up to end_ns; returns
    their count, or -1 when every draw gave one (the stream goes on)."""
    t = t0
    for i in range(draws.shape[0]):
        t += int(mean * draws[i] + 0.5)
        if t > end_ns:
            return i
        out[i] = t
    return -1


class _Arrivals:
    """The tenant's arrivals (ns) and sizes, handed out ``n`` at a time (sizes: length 1 when all equal)."""

    def __init__(self, spec, end_ns: int) -> None:
        w = spec.guests[0].workload
        self.end_ns = end_ns
        self.done = False
        self.trace = w.kind == "trace"
        if self.trace:
            rows = [(round(ts * 1000), size) for ts, size, d in w.trace_rows if d == "rx"]
            self._t = np.array([r[0] for r in rows if r[0] < end_ns], dtype=np.int64)
            self._sizes = np.array([r[1] for r in rows[: len(self._t)]], dtype=np.int64)
            self._pos = 0
        else:
            self.done = w.rate_pps <= 0
            self._src = DrawSource(spec.seed, f"workload/{spec.guests[0].name}")
            self._mean = 1e9 / w.rate_pps if w.rate_pps > 0 else 0.0
            self._last = 0
            self._size = np.full(1, w.packet_bytes, dtype=np.int64)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.trace:
            lo, self._pos = self._pos, min(self._pos + n, self._t.shape[0])
            self.done = self._pos == self._t.shape[0]
            return self._t[lo : self._pos], self._sizes[lo : self._pos]
        if self.done:
            return np.zeros(0, np.int64), self._size
        out = np.empty(n, dtype=np.int64)
        count = _cumulate(self._src.take(n), self._mean, self._last, self.end_ns, out)
        if count >= 0:
            self.done = True
            out = out[:count]
        elif n:
            self._last = int(out[-1])
        return out, self._size


CHUNK = 1 << 16  # packets per step of the chunked path: bounded memory whatever the run length


def iter_one_layer(spec, jit: bool = True, chunk: int = CHUNK):
    """The one-layer sample path, chunk by chunk: yields (t, sizes, dep, fire_t, u of those
    interrupts, s, polls so far) with ``sizes`` and ``s`` of length 1 when constant.

    Memory stays O(chunk) plus the backlog waiting for an interrupt (a frame cap's look-ahead; a
    packet-timer run that has not ended): arrivals and draws are generated as the path advances,
    in the same stream order as the event-driven engine draws them.
    """
    end_ns = round(spec.duration_s * 1e9)
    c = spec.cost
    p = spec.site_params()[Site(Layer.NIC, "q0")]
    fix_ns, byte_ns, svc_exp = cost_terms(spec)["nic_rx"]  # the event engine's NIC cost, one-layer host
    svc = DrawSource(spec.seed, "service") if svc_exp else None
    irq_ns = round(c.irq_us * 1000)
    irq = DrawSource(spec.seed, "irq") if c.irq_dist == "exp" and irq_ns > 0 else None
    u = np.full(1, irq_ns, dtype=np.int64) if irq is None else np.zeros(0, np.int64)
    kernel = napi_chunk_jit if jit else napi_chunk
    mode, usecs_ns, poll_ns = MODE[p.timer], 1000 * p.rx_usecs, round(c.poll_us * 1000)
    st = np.array([-_BIG, -_BIG, 0, 0], dtype=np.int64)
    arrivals = _Arrivals(spec, end_ns)
    z_const, s_const = _constant(spec)
    t = s = sizes = np.zeros(0, np.int64)
    want = chunk
    while True:
        if not arrivals.done:
            t_new, z_new = arrivals.take(want)
            if svc is not None:
                z = z_new if z_new.shape[0] == t_new.shape[0] else np.full(t_new.shape[0], z_new[0], dtype=np.int64)
                s_new = ((fix_ns + byte_ns * z) * svc.take(t_new.shape[0]) + 0.5).astype(np.int64)
            else:
                s_new = fix_ns + (byte_ns * z_new + 0.5).astype(np.int64)  # length 1 with z_new
            t = np.concatenate([t, t_new])
            s = s_new if s_const else np.concatenate([s, s_new])
            sizes = z_new if z_const else np.concatenate([sizes, z_new])
        n = t.shape[0]
        if n == 0:
            return
        if irq is not None and u.shape[0] < n:  # at most one interrupt per packet
            u = np.concatenate([u, (irq_ns * irq.take(n - u.shape[0]) + 0.5).astype(np.int64)])
        dep, fire_t = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        k, nirq = kernel(t, s, u, mode, usecs_ns, p.rx_frames, p.napi_budget, poll_ns, arrivals.done, st, dep, fire_t)
        u_fired = u[:nirq] if irq is not None else np.full(nirq, irq_ns, dtype=np.int64)
        yield (t[:k], sizes if z_const else sizes[:k], dep[:k], fire_t[:nirq], u_fired,
               s if s_const else s[:k], int(st[3]))
        # no progress: a packet-timer run (frame cap 0) has had no gap yet; its packets wait in the
        # ring for an interrupt, so the backlog grows; take more each time so the rescans stay linear
        want = chunk if k else 2 * want
        t = t[k:]
        s = s if s_const else s[k:]
        sizes = sizes if z_const else sizes[k:]
        if irq is not None:
            u = u[nirq:]
        if arrivals.done and t.shape[0] == 0:
            return


def simulate_one_layer(spec, jit: bool = True, chunk: int = CHUNK):
    """The whole one-layer sample path as arrays: (t, sizes, dep, fire_t, u of each interrupt, s,
    polls, params); ``sizes`` and ``s`` have length 1 when every packet has the same. For tests
    and benchmarks (memory grows with the run); ``run_fast`` streams ``iter_one_layer``."""
    parts = list(iter_one_layer(spec, jit, chunk))
    p = spec.site_params()[Site(Layer.NIC, "q0")]
    if not parts:
        e = np.zeros(0, np.int64)
        return e, e, e, e, e, e, 0, p
    cat = lambda k: np.concatenate([x[k] for x in parts])  # noqa: E731
    z_const, s_const = _constant(spec)
    return (cat(0), parts[0][1] if z_const else cat(1), cat(2), cat(3), cat(4), parts[0][5] if s_const else cat(5),
            parts[-1][6], p)


def _constant(spec) -> tuple[bool, bool]:
    """Whether every packet has the same size, and the same service time."""
    same_size = spec.guests[0].workload.kind != "trace"
    return same_size, same_size and not cost_terms(spec)["nic_rx"][2]


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


def run_fast(spec, jit: bool = True, policy=None) -> TrialResult:
    """The TrialResult of an eligible one-layer scenario, from the compiled recursion."""
    wall0 = time.perf_counter()
    end_ns = round(spec.duration_s * 1e9)
    warm = round(spec.warmup_s * 1e9)
    lo_ns = warm if warm > 0 else -_BIG
    counts = np.zeros(_NBUCKETS, dtype=np.int64)
    nlat = total = s_sum = b_sum = npk = in_bytes = nirq = irq_busy = polls = 0
    vmin, vmax = _BIG, 0
    params = spec.site_params()[Site(Layer.NIC, "q0")]
    for t, sizes, dep, fire_t, u, s, polls_so_far in iter_one_layer(spec, jit):
        polls = polls_so_far
        n, tot, lo, hi, ss, bs = _measure(t, dep, lo_ns, end_ns, counts, s, sizes)
        nlat, total, s_sum, b_sum = nlat + n, total + tot, s_sum + ss, b_sum + bs
        vmin, vmax = min(vmin, lo), max(vmax, hi)
        arrived = t > lo_ns  # arrivals end at end_ns
        k = int(arrived.sum())
        npk += k
        in_bytes += k * int(sizes[0]) if sizes.shape[0] == 1 else int(sizes[arrived].sum())
        nirq += int(((fire_t > lo_ns) & (fire_t <= end_ns)).sum())
        irq_busy += int(u[(fire_t + u > warm) & (fire_t + u <= end_ns)].sum())
    hist = LatencyHistogram()
    if nlat:
        hist.add_counts(counts, int(total), int(vmin), int(vmax))
    seconds = (end_ns - warm) / 1e9
    g = spec.guests[0]
    soft_busy = int(s_sum) + polls * round(spec.cost.poll_us * 1000)
    period = end_ns - warm
    irq_f, soft_f = min(1.0, irq_busy / period), min(1.0, soft_busy / period)
    tenant = tenant_result(g, hist, LatencyHistogram(), seconds, npk, int(nlat), 0, int(b_sum))
    rx = dir_result(DirStats(npk, in_bytes, nirq, polls, 0), DirStats(), seconds)
    site = SiteResult("nic:q0", "nic", rx, dir_result(DirStats(), DirStats(), seconds), irq_busy + soft_busy,
                      params.to_dict())
    cpus = [CpuResult("dom0-c0", irq_f, soft_f, 0.0, max(0.0, 1 - irq_f - soft_f))]
    meta = {"engine": "fast" if jit else "fast-python", "vcoal_version": __version__,
            "wall_s": time.perf_counter() - wall0, "site_packets": npk}
    return trial_result(spec, spec.seed, policy, seconds, [tenant], [site], cpus, meta)
