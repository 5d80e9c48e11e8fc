"""The event engine, part 1: run modes, the event heap, pools, draws, histograms, CPUs and the link.

The whole state lives in the arena (``layout``: two flat arrays ``m`` and ``x``). In compiled mode
the functions are numba-compiled and pass ``m`` and ``x`` to each other as raw pointers
(``data_ptr``): numba passes an array as a 7-word struct and increfs/decrefs it at every call; a
25-array state ran at ~0.6 M events/s, two arrays at ~3 M, two pointers at ~15 M. Indexing a
pointer has no bounds check: an index bug corrupts memory instead of raising, which is why the
tests run the compiled mode with tiny arenas against the interpreted one and the goldens. In
interpreted mode (the reference) ``jit`` leaves the functions as they are and an ``entry`` point
runs them over Python lists of the arrays' values, written back when it returns (list indexing is
2-3x faster than a memoryview's): the same statements run in Python, bounds-checked, traceable and
visible to coverage.

Every compiled function has an explicit signature: numba would otherwise compile one
specialisation per combination of literal arguments (event kinds, priorities), which multiplied
the compile time.

Capacities (heap, packets, jobs, deliveries, trace) and pre-drawn random numbers are checked
against a margin after every use; when one runs low a bit is set in ``m[FLAG]`` and the event loop
returns before the next event, so that Python can grow or refill the arena and call it again.
"""

from __future__ import annotations

import functools
import math
import os

from numba import njit
from numba import types as nt
from numba.extending import intrinsic

from . import COMPILED
from .layout import *  # noqa: F403

# the engine's source files: numba's cache of any compiled function depends on all of them
SOURCES = ("layout.py", "core.py", "hop.py", "tenant.py", "loop.py")


def _stamp_all_sources() -> None:
    """Make numba's on-disk cache of the engine's functions depend on all of its files.

    NOTE: numba checks a cached function only against its own source file, but LLVM inlines
    callees (and freezes the layout's constants) from the other files into it; after an edit of
    core.py, the cached loop.run would silently keep the old code. The locator registered here
    stamps these functions with the contents of all those files (as numba stamps one).
    Any numba internals change leaves numba's own behaviour in place.
    """
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover
        return
    here = os.path.dirname(os.path.abspath(__file__))

    class Mixin:
        def get_source_stamp(self):
            stamps = []
            for n in SOURCES:
                st = os.stat(os.path.join(here, n))
                stamps.append((n, caching._hash_source_file(os.path.join(here, n), st.st_mtime, st.st_size)))
            return tuple(stamps)

        @classmethod
        def from_function(cls, py_func, py_file):
            name = os.path.basename(py_file)
            if os.path.dirname(os.path.abspath(py_file)) != here or name not in SOURCES:
                return None
            return super().from_function(py_func, py_file)

    try:
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator)
        impl = caching.CacheImpl
        _ = caching._hash_source_file
    except AttributeError:  # pragma: no cover - another numba version: its own stamps
        return
    if any(getattr(c, "_vcoal_sim", False) for c in impl._locator_classes):
        return
    ours = [type(f"VcoalSim{b.__name__}", (Mixin, b), {"_vcoal_sim": True}) for b in bases]
    impl._locator_classes[:0] = ours


I64 = nt.int64
MA = nt.int64[::1]  # the arena arrays, as Python passes them to the entry points
XA = nt.float64[::1]
MP = nt.CPointer(nt.int64)  # ... and as the compiled functions pass them to each other
XP = nt.CPointer(nt.float64)


def _as_is(fn):
    return fn


if COMPILED:
    _stamp_all_sources()

    def jit(*args, ret=nt.void, inline="never"):
        """Compile ``fn(m, x, *args) -> ret`` eagerly, cached (``inline="always"``: into every caller)."""
        return njit(ret(MP, XP, *args), cache=True, inline=inline)

    def entry(*args, ret=nt.void):
        """Compile an entry point ``fn(m_array, x_array, *args) -> ret`` called from Python."""
        return njit(ret(MA, XA, *args), cache=True)

    @intrinsic
    def data_ptr(typingctx, arr):
        """The data pointer of a contiguous array (indexing it does no bounds or refcount work).

        ``run`` takes the arrays and keeps them alive meanwhile.
        """

        def codegen(context, builder, sig, args):
            return context.make_array(sig.args[0])(context, builder, value=args[0]).data

        return nt.CPointer(arr.dtype)(arr), codegen

    scalar = njit(I64(I64), cache=True)
else:

    def jit(*args, ret=None, inline=None):
        """Interpreted mode: the function runs as written."""
        return _as_is

    def entry(*args, ret=None):
        """Interpreted mode: the entry point runs over lists of the arrays' values, written back."""

        def wrap(fn):
            @functools.wraps(fn)
            def on_lists(m_, x_, *a):
                m, x = m_.tolist(), x_.tolist()
                try:
                    return fn(m, x, *a)
                finally:
                    m_[:] = m
                    x_[:] = x

            return on_lists

        return wrap

    data_ptr = _as_is
    scalar = _as_is


# --- events ------------------------------------------------------------------------------------
@jit(I64, I64, I64, I64, I64, inline="always")
def at(m, x, t, prio, kind, a, b):
    """Schedule event ``kind(a, b)`` at ``t``.

    Events run in (time, prio, seq) order: at equal times CPU completions run before timers before
    arrivals (what makes the one-layer model agree bit-exactly with the sample-path recursions),
    and equal (time, prio) run in scheduling order. Cancellation is lazy: components keep a token
    and ignore stale events.
    """
    m[SEQ] += 1
    key = (prio << 56) | m[SEQ]
    o = m[O_HEAP]
    i = m[HN]
    m[HN] = i + 1
    while i > 0:
        p = (i - 1) >> 1
        pb = o + p * NE
        tp = m[pb]
        if tp < t or (tp == t and m[pb + 1] < key):
            break
        ib = o + i * NE
        m[ib] = tp
        m[ib + 1] = m[pb + 1]
        m[ib + 2] = m[pb + 2]
        m[ib + 3] = m[pb + 3]
        i = p
    ib = o + i * NE
    m[ib] = t
    m[ib + 1] = key
    m[ib + 2] = (kind << 48) | a
    m[ib + 3] = b
    if m[HN] > m[HEAP_CAP] - m[MARGIN]:
        m[FLAG] |= F_HEAP


@jit(I64, inline="always")
def pop(m, x, out):
    """Remove the first event; its (time, kind, a, b) go to m[out .. out+3]."""
    o = m[O_HEAP]
    m[out] = m[o]
    m[out + 1] = m[o + 2] >> 48
    m[out + 2] = m[o + 2] & 0xFFFFFFFFFFFF
    m[out + 3] = m[o + 3]
    n = m[HN] - 1
    m[HN] = n
    if n == 0:
        return
    lb = o + n * NE
    t = m[lb]
    key = m[lb + 1]
    ka = m[lb + 2]
    b = m[lb + 3]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        cb = o + c * NE
        if c + 1 < n:
            rb = cb + NE
            if m[rb] < m[cb] or (m[rb] == m[cb] and m[rb + 1] < m[cb + 1]):
                c += 1
                cb = rb
        tc = m[cb]
        if tc > t or (tc == t and m[cb + 1] > key):
            break
        ib = o + i * NE
        m[ib] = tc
        m[ib + 1] = m[cb + 1]
        m[ib + 2] = m[cb + 2]
        m[ib + 3] = m[cb + 3]
        i = c
    ib = o + i * NE
    m[ib] = t
    m[ib + 1] = key
    m[ib + 2] = ka
    m[ib + 3] = b


# --- pools -------------------------------------------------------------------------------------
@jit(I64, I64, I64, I64, I64, ret=I64, inline="always")
def pkt_new(m, x, tenant, size, t0, kind, ref):
    p = m[PFREE]
    pb = m[O_PKT] + p * NP
    m[PFREE] = m[pb + P_NEXT]
    m[pb + P_TENANT] = tenant
    m[pb + P_SIZE] = size
    m[pb + P_T0] = t0
    m[pb + P_KIND] = kind
    m[pb + P_REF] = ref
    m[pb + P_NEXT] = -1
    m[pb + P_LIFE] = LIFE_LIVE
    m[PUSED] += 1
    if m[PUSED] > m[PKT_CAP] - m[MARGIN]:
        m[FLAG] |= F_PKT
    return p


@jit(I64, I64)
def audit_error(m, x, code, p):
    """Record the first packet lifecycle error; the loop stops for Python to raise it."""
    if m[ERROR] == 0:
        m[ERROR] = code
        m[ERROR_PKT] = p
    m[FLAG] |= F_ERROR


@jit(I64, inline="always")
def pkt_end(m, x, p):
    """The packet was delivered or dropped (audited: it must have been live)."""
    pb = m[O_PKT] + p * NP
    if m[AUDIT] and m[pb + P_LIFE] != LIFE_LIVE:
        audit_error(m, x, ERR_ENDED_TWICE, p)
    m[pb + P_LIFE] = LIFE_ENDED


@jit(I64, inline="always")
def pkt_free(m, x, p):
    pb = m[O_PKT] + p * NP
    if m[AUDIT] and m[pb + P_LIFE] != LIFE_ENDED:
        audit_error(m, x, ERR_FREED_LIVE, p)
    m[pb + P_LIFE] = LIFE_FREE
    m[pb + P_NEXT] = m[PFREE]
    m[PFREE] = p
    m[PUSED] -= 1


@jit(I64, I64, I64, I64, I64, I64, ret=I64, inline="always")
def job_new(m, x, cost, kind, a, b, c, acct):
    j = m[JFREE]
    jb = m[O_JOB] + j * NJ
    m[JFREE] = m[jb + J_NEXT]
    m[jb + J_COST] = cost
    m[jb + J_KIND] = kind
    m[jb + J_A] = a
    m[jb + J_B] = b
    m[jb + J_C] = c
    m[jb + J_ACCT] = acct
    m[jb + J_NEXT] = -1
    m[JUSED] += 1
    if m[JUSED] > m[JOB_CAP] - m[MARGIN]:
        m[FLAG] |= F_JOB
    return j


# --- random draws (unit exponentials pre-drawn by Python, in stream order) ---------------------
@jit(ret=nt.float64, inline="always")
def draw_svc(m, x):
    i = m[SVC_POS]
    m[SVC_POS] = i + 1
    if i + 1 > m[SVC_LEN] - DRAW_MARGIN:
        m[FLAG] |= F_DRAWS
    return x[m[OF_SVC] + i]


@jit(ret=nt.float64, inline="always")
def draw_irq(m, x):
    i = m[IRQ_POS]
    m[IRQ_POS] = i + 1
    if i + 1 > m[IRQ_LEN] - DRAW_MARGIN:
        m[FLAG] |= F_DRAWS
    return x[m[OF_IRQ] + i]


# --- histograms ----------------------------------------------------------------------------------
@scalar
def bucket_of(v):
    """model.histogram.bucket_of."""
    if v < LIN_LIMIT:
        return max(0, v)
    if v >= MAX_VALUE:
        return NBUCKETS - 1
    return LIN_LIMIT + int(math.log(v / LIN_LIMIT) / LOG_GROWTH)


@jit(I64, I64, I64, inline="always")
def hist_put(m, x, r, b, v):
    """LatencyHistogram.add of ``v`` (in bucket ``b``) on histogram row ``r``."""
    m[m[O_HCOUNT] + r * NBUCKETS + b] += 1
    sb = m[O_HSTAT] + r * 4
    if m[sb] == 0 or v < m[sb + 2]:
        m[sb + 2] = v
    if v > m[sb + 3]:
        m[sb + 3] = v
    m[sb] += 1
    m[sb + 1] += v


@jit(I64, I64, I64, inline="always")
def hist_add(m, x, which, tenant, v):
    """Latency ``v`` of ``tenant`` into the window's histogram of kind ``which`` (HI_HIST or HI_RTT)
    and, while measuring, into the run's."""
    b = bucket_of(v)
    hist_put(m, x, (which + HI_WIN) * m[NTEN] + tenant, b, v)
    if m[MEASURING]:
        hist_put(m, x, which * m[NTEN] + tenant, b, v)


# --- CPUs -------------------------------------------------------------------------------
@jit(I64, I64, inline="always")
def slot_link(m, x, c, t):
    """Put busy slot ``c``, completing at ``t`` with the newest key, in the list of busy slots
    (``SLOT_FIRST``, then each slot's next: (time, key) order); the largest key goes after every
    slot completing at or before ``t``."""
    so = m[O_SLOT]
    prev = -1
    nxt = m[SLOT_FIRST] - 1
    while nxt >= 0 and m[so + nxt * NSL] <= t:
        prev = nxt
        nxt = m[so + nxt * NSL + SL_NEXT] - 1
    m[so + c * NSL + SL_NEXT] = nxt + 1
    if prev < 0:
        m[SLOT_FIRST] = c + 1
    else:
        m[so + prev * NSL + SL_NEXT] = c + 1


@jit(I64)
def slot_unlink(m, x, c):
    """Take busy slot ``c`` out of the list of busy slots."""
    so = m[O_SLOT]
    nxt = m[so + c * NSL + SL_NEXT]
    if m[SLOT_FIRST] == c + 1:
        m[SLOT_FIRST] = nxt
        return
    i = m[SLOT_FIRST] - 1
    while m[so + i * NSL + SL_NEXT] != c + 1:
        i = m[so + i * NSL + SL_NEXT] - 1
    m[so + i * NSL + SL_NEXT] = nxt


@jit(I64, I64, I64, inline="always")
def cpu_start(m, x, c, cls, j):
    """Start job ``j`` of class ``cls`` on CPU ``c``. Its completion goes to the CPU's slot, not the
    heap (the loop takes the earliest of the heap's top and the first busy slot, by the same (time,
    key) order); most events are completions, and a slot costs a short sorted insert where the heap
    costs a sift up and a sift down."""
    cb = m[O_CPU] + c * NC
    now = m[NOW]
    m[cb + C_RUN_JOB] = j
    m[cb + C_RUN_CLS] = cls
    m[cb + C_RUN_START] = now
    m[SEQ] += 1
    t = now + m[m[O_JOB] + j * NJ + J_COST]
    sb = m[O_SLOT] + c * NSL
    m[sb] = t
    m[sb + SL_KEY] = (PRIO_COMPLETION << 56) | m[SEQ]
    slot_link(m, x, c, t)


@jit(I64, inline="always")
def cpu_next(m, x, c):
    cb = m[O_CPU] + c * NC
    for cls in range(3):
        j = m[cb + C_QH + cls]
        if j >= 0:
            nxt = m[m[O_JOB] + j * NJ + J_NEXT]
            m[cb + C_QH + cls] = nxt
            if nxt < 0:
                m[cb + C_QT + cls] = -1
            cpu_start(m, x, c, cls, j)
            return


@jit(I64)
def cpu_preempt(m, x, c):
    """Application work running on CPU ``c`` goes back to the head of its queue with the work it
    has left (preemptive-resume); its pending completion leaves the slot list."""
    cb = m[O_CPU] + c * NC
    j = m[cb + C_RUN_JOB]
    jb = m[O_JOB] + j * NJ
    done = m[NOW] - m[cb + C_RUN_START]
    m[cb + C_BUSY + APP] += done
    acct = m[jb + J_ACCT]
    if acct >= 0:
        m[m[O_SITECPU] + acct] += done
    m[jb + J_COST] -= done
    m[jb + J_NEXT] = m[cb + C_QH + APP]  # appendleft
    m[cb + C_QH + APP] = j
    if m[cb + C_QT + APP] < 0:
        m[cb + C_QT + APP] = j
    m[cb + C_RUN_JOB] = -1
    slot_unlink(m, x, c)  # its completion is withdrawn; it gets a new one when it resumes
    m[m[O_SLOT] + c * NSL] = NEVER
    cpu_next(m, x, c)


@jit(I64, I64, I64, I64, I64, I64, I64, I64, inline="always")
def cpu_submit(m, x, c, cls, cost, kind, a, b, cc, acct):
    """Queue a job on CPU ``c``; it may start now or preempt running application work.

    Classes: hard interrupt (IRQ), softirq / NAPI poll / backend work (SOFTIRQ), application (APP),
    each a FIFO. A job runs to completion, except that application work is preempted by interrupt
    and softirq work and resumes later (preemptive-resume). Busy time is accounted per class and
    charged to the job's site (``acct``). The job's kind and arguments say what its completion does.
    Softirq runs (``C_RUNS``): IRQ/SOFTIRQ work arriving while the CPU has none queued, running or
    completing starts a run; what arrives until those queues drain joins it (one ``net_rx_action``
    polls every NAPI scheduled on its CPU).
    """
    j = job_new(m, x, cost, kind, a, b, cc, acct)
    cb = m[O_CPU] + c * NC
    in_run = (m[cb + C_RUN_JOB] >= 0 or m[cb + C_COMPLETING] != 0) and m[cb + C_RUN_CLS] <= SOFTIRQ
    if cls <= SOFTIRQ and m[cb + C_QH + IRQ] < 0 and m[cb + C_QH + SOFTIRQ] < 0 and not in_run:
        m[cb + C_RUNS] += 1
    t = m[cb + C_QT + cls]
    if t < 0:
        m[cb + C_QH + cls] = j
    else:
        m[m[O_JOB] + t * NJ + J_NEXT] = j
    m[cb + C_QT + cls] = j
    if m[cb + C_RUN_JOB] < 0:
        if m[cb + C_COMPLETING] == 0:
            cpu_next(m, x, c)
    elif m[cb + C_RUN_CLS] == APP and cls < APP:
        cpu_preempt(m, x, c)


@jit(I64, I64, I64, I64, I64, I64, I64, I64, inline="always")
def cpu_chain(m, x, c, cls, cost, kind, a, b, cc, acct):
    """``cpu_submit`` for the job that follows, on CPU ``c``, the one completing there, as the last
    thing that completion does: the poll after its interrupt, a NAPI poll's next packet.

    A poll's jobs thus run as one chain that is split lazily: while nothing of class ``cls`` or
    higher is queued on ``c``, the next job starts at once instead of going through the queue; when
    such work arrived meanwhile, the chain splits and the job is queued behind it. Both are what
    ``cpu_submit`` followed by the completion's ``cpu_next`` does (same start time, same event key,
    same accounting), minus the queue's work.
    """
    cb = m[O_CPU] + c * NC
    if m[cb + C_COMPLETING] == 0 or m[cb + C_QH + IRQ] >= 0 or m[cb + C_QH + cls] >= 0:
        cpu_submit(m, x, c, cls, cost, kind, a, b, cc, acct)
        return
    cpu_start(m, x, c, cls, job_new(m, x, cost, kind, a, b, cc, acct))


# --- the link --------------------------------------------------
@jit(I64, ret=I64, inline="always")
def ser_ns(m, x, size):
    return int(size * x[SER_PS] / 1000 + 0.5)


@jit(I64)
def wire_send(m, x, p):
    """A closed-loop wire sender transmits now: the inbound link serialises the packet, then it
    reaches the NIC."""
    t = max(m[NOW], m[LINK_IN]) + ser_ns(m, x, m[m[O_PKT] + p * NP + P_SIZE])
    m[LINK_IN] = t
    at(m, x, t, PRIO_ARRIVAL, E_WIRE_RX, p, 0)


@jit(I64, I64)
def transmit(m, x, q, p):
    """A NIC tx ring slot is used; the packet leaves on the wire after serialisation."""
    m[m[O_NICQ] + q * NQ + Q_TXQ_USED] += 1
    t = max(m[NOW], m[LINK_OUT]) + ser_ns(m, x, m[m[O_PKT] + p * NP + P_SIZE])
    m[LINK_OUT] = t
    at(m, x, t, PRIO_ARRIVAL, E_WIRE_OUT, p, 0)
