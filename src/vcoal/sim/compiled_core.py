"""Compiled engine, part 1: the arena layout, the event heap, pools, draws, histograms and CPUs.

The whole state lives in two flat arrays: ``m`` (int64) and ``x`` (float64). ``m`` starts with
the globals and the offsets of its regions (heap, CPUs, jobs, packets, hops, sites, tenants, NIC
queues, histograms, deliveries); ``x`` holds the float parameters and the pre-drawn unit
exponentials. A row of a region is addressed by its base, e.g. ``hb = m[O_HOP] + h * NH``.
NOTE: two arrays, not a tuple of many, and passed between compiled functions as raw pointers
(``data_ptr``): numba passes an array as a 7-word struct and increfs/decrefs it at every call;
a 25-array state ran at ~0.6 M events/s, two arrays at ~3 M, two pointers at ~15 M. Indexing a
pointer has no bounds check: an index bug corrupts memory instead of raising, which is why the
equality tests against the Python engine run with tiny arenas too.

Every function has an explicit signature: numba would otherwise compile one specialisation per
combination of literal arguments (event kinds, priorities), which multiplied the compile time.

The semantics are those of ``kernel.py`` and ``cpu.py``, statement by statement, so that the
compiled engine schedules the same events in the same order as the Python engine. Capacities
(heap, packets, jobs, deliveries) and pre-drawn random numbers are checked against a margin
after every use; when one runs low a bit is set in ``m[FLAG]`` and the event loop returns before
the next event, so that Python can grow or refill the arena and call it again.
"""

from __future__ import annotations

import math
import os

from numba import njit
from numba import types as nt
from numba.extending import intrinsic

from vcoal.model.histogram import _MAX_VALUE_NS, _NBUCKETS, GROWTH, LINEAR_LIMIT

# the modules holding compiled functions (a new one must be added here)
_COMPILED_MODULES = ("compiled_core.py", "compiled_engine.py", "compiled_hop.py", "compiled_tenant.py")


def _stamp_all_sources() -> None:
    """Make numba's on-disk cache of the compiled_*.py functions depend on all those files.

    NOTE: numba checks a cached function only against its own source file, but LLVM inlines
    callees from the other compiled_*.py modules into it; after an edit of compiled_core.py, the
    cached compiled_engine.run would silently keep the old code. The locator registered here
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
            names = _COMPILED_MODULES
            stamps = []
            for n in names:
                st = os.stat(os.path.join(here, n))
                stamps.append((n, caching._hash_source_file(os.path.join(here, n), st.st_mtime, st.st_size)))
            return tuple(stamps)

        @classmethod
        def from_function(cls, py_func, py_file):
            name = os.path.basename(py_file)
            if os.path.dirname(os.path.abspath(py_file)) != here or name not in _COMPILED_MODULES:
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


_stamp_all_sources()

I64 = nt.int64
MA = nt.int64[::1]  # the arena arrays, as Python passes them to the entry points
XA = nt.float64[::1]
MP = nt.CPointer(nt.int64)  # ... and as the compiled functions pass them to each other
XP = nt.CPointer(nt.float64)


def jit(*args, ret=nt.void, inline="never"):
    """Compile ``fn(m, x, *args) -> ret`` eagerly, cached (``inline="always"``: into every caller)."""
    return njit(ret(MP, XP, *args), cache=True, inline=inline)


def entry(*args, ret=nt.void):
    """Compile an entry point ``fn(m_array, x_array, *args) -> ret`` called from Python."""
    return njit(ret(MA, XA, *args), cache=True)


@intrinsic
def data_ptr(typingctx, arr):
    """The data pointer of a contiguous array (indexing it does no bounds or refcount work).

    NOTE: the compiled functions pass ``m`` and ``x`` as raw pointers, not arrays: an array
    argument is a 7-word struct that numba increfs and decrefs at every call, which made the
    event loop several times slower. ``run`` takes the arrays and keeps them alive meanwhile.
    """

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, value=args[0]).data

    return nt.CPointer(arr.dtype)(arr), codegen


# --- m header: globals, then region offsets and capacities ---------------------------------------
NOW, SEQ, HN, EVENTS, END_NS, MEASURING, PFREE, PUSED, JFREE, JUSED = range(10)
LINK_IN, LINK_OUT, NDELIV, FLAG, ONE_LAYER, SEND_COST, CTX_NS, POLL_NS, IRQ_NS, VIRQ_NS = range(10, 20)
IRQ_EXP, SVC_EXP, TX_RING, TXQLEN, REC_DELIV, MARGIN, SVC_POS, IRQ_POS, NB_FIX, NTEN = range(20, 30)
O_HEAP, HEAP_CAP, O_CPU, O_JOB, JOB_CAP, O_PKT, PKT_CAP, O_HOP, O_SP, O_CTR = range(30, 40)
O_SITECPU, O_TEN, O_NICQ, O_STEPS_T, O_TR_T, O_TR_SIZE, O_TR_DIR, O_HCOUNT, O_HSTAT, O_DELIV = range(40, 50)
DELIV_CAP, OF_HOPF, OF_TENF, OF_STEPS_RATE, OF_SVC, SVC_LEN, OF_IRQ, IRQ_LEN, OF_WL, WL_LEN = range(50, 60)
STATUS = 60  # 1 when run() stopped early for Python to service m[FLAG]
SCRATCH = 61  # m[SCRATCH .. SCRATCH + 3]: the event being run
O_SLOT, NCPU = 65, 66  # the CPUs' completion slots (see cpu_start)
VETH = 67  # 1: host.profile = "veth" (engine.py)
NG = 68
# x header
SER_PS, NB_BYTE = 0, 1
NGF = 2
# flag bits
F_DRAWS, F_HEAP, F_PKT, F_JOB, F_DELIV = 1, 2, 4, 8, 16
DRAW_MARGIN = 64

# heap rows: time, (prio << 56) | seq, (event kind << 48) | first argument, second argument
NE = 4
# slot rows (one per CPU): time, key, token of its pending completion; time NEVER when there is none
NSL = 3
NEVER = (1 << 63) - 1
PRIO_COMPLETION, PRIO_TIMER, PRIO_ARRIVAL, PRIO_CONTROL = 0, 1, 2, 3
E_CPU_DONE, E_HOP_TIMER, E_HOP_POLL, E_WIRE_RX, E_WIRE_OUT, E_SET_RATE = range(6)
E_TOGGLE, E_ARRIVAL, E_ROW, E_REQUEST, E_PUMP_AT, E_OPEN = range(6, 12)

# cpu rows
C_RUN_JOB, C_RUN_CLS, C_RUN_START, C_TOKEN, C_COMPLETING, C_BUSY, C_QH, C_QT, C_RUNS = 0, 1, 2, 3, 4, 5, 8, 11, 14
NC = 15
IRQ, SOFTIRQ, APP = 0, 1, 2

# job rows: cost, kind, three arguments, account site (-1: none), next job in the queue / free list
J_COST, J_KIND, J_A, J_B, J_C, J_ACCT, J_NEXT = range(7)
NJ = 7
K_NOOP, K_POLL_START, K_POLL_BODY, K_DONE_PKT, K_HOP_PUSH, K_SENT_BY_APP = range(6)

# packet rows
P_TENANT, P_SIZE, P_T0, P_KIND, P_REF, P_NEXT = range(6)
NP = 6
DATA, REQ, RESP, ACK = 0, 1, 2, 3

# NIC queue rows
Q_RX_HOP, Q_TXC_HOP, Q_TXQ_USED, Q_QD_HEAD, Q_QD_TAIL, Q_QD_LEN = range(6)
NQ = 6

# site counters: row (site * 2 + dir), fields
X_PACKETS, X_BYTES, X_INTERRUPTS, X_POLLS, X_DROPS, X_SUPPRESSED = range(6)
NX = 6
# site params rows
S_RX_USECS, S_RX_FRAMES, S_TX_USECS, S_TX_FRAMES, S_TIMER, S_BUDGET, S_DEFER, S_GRO = range(8)
NS = 8
TM_ABSOLUTE, TM_PACKET, TM_ITR = 0, 1, 2

# histograms: row (h * ntenants + tenant); hcount rows of NBUCKETS, hstat rows (count, sum, min, max)
HI_HIST, HI_RTT, HI_WIN, HI_WINRTT = 0, 1, 2, 3
NBUCKETS = _NBUCKETS
_LIN = LINEAR_LIMIT
_MAXV = _MAX_VALUE_NS
_LOG_G = math.log(GROWTH)


# --- events ------------------------------------------------------------------------------------
@jit(I64, I64, I64, I64, I64, inline="always")
def push(m, x, t, key, kind, a, b):
    """Put event ``kind(a, b)`` with heap key ``key`` = (prio << 56) | seq on the heap."""
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


@jit(I64, I64, I64, I64, I64, inline="always")
def at(m, x, t, prio, kind, a, b):
    """Kernel.at: schedule event ``kind(a, b)`` at ``t`` (heap order: time, prio, seq)."""
    m[SEQ] += 1
    push(m, x, t, (prio << 56) | m[SEQ], kind, a, b)


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
    m[PUSED] += 1
    if m[PUSED] > m[PKT_CAP] - m[MARGIN]:
        m[FLAG] |= F_PKT
    return p


@jit(I64, inline="always")
def pkt_free(m, x, p):
    m[m[O_PKT] + p * NP + P_NEXT] = m[PFREE]
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
@njit(I64(I64), cache=True)
def bucket_of(v):
    """model.histogram.bucket_of."""
    if v < _LIN:
        return max(0, v)
    if v >= _MAXV:
        return NBUCKETS - 1
    return _LIN + int(math.log(v / _LIN) / _LOG_G)


@jit(I64, I64, I64, inline="always")
def hist_add(m, x, which, tenant, v):
    """LatencyHistogram.add on histogram ``which`` of ``tenant``."""
    r = which * m[NTEN] + tenant
    m[m[O_HCOUNT] + r * NBUCKETS + bucket_of(v)] += 1
    sb = m[O_HSTAT] + r * 4
    if m[sb] == 0 or v < m[sb + 2]:
        m[sb + 2] = v
    if v > m[sb + 3]:
        m[sb + 3] = v
    m[sb] += 1
    m[sb + 1] += v


# --- CPUs (cpu.py) -------------------------------------------------------------------------------
@jit(I64, I64, I64, inline="always")
def cpu_start(m, x, c, cls, j):
    """Cpu._start. The completion goes to the CPU's slot, not the heap (the loop takes the earliest
    of the heap's top and the slots, by the same (time, key) order); most events are completions,
    and a slot costs a compare where the heap costs a sift up and a sift down."""
    cb = m[O_CPU] + c * NC
    now = m[NOW]
    m[cb + C_RUN_JOB] = j
    m[cb + C_RUN_CLS] = cls
    m[cb + C_RUN_START] = now
    m[cb + C_TOKEN] += 1
    sb = m[O_SLOT] + c * NSL
    if m[sb] != NEVER:  # the stale completion of a preempted job: the heap runs it (a no-op event)
        push(m, x, m[sb], m[sb + 1], E_CPU_DONE, c, m[sb + 2])
    m[SEQ] += 1
    m[sb] = now + m[m[O_JOB] + j * NJ + J_COST]
    m[sb + 1] = (PRIO_COMPLETION << 56) | m[SEQ]
    m[sb + 2] = m[cb + C_TOKEN]


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
    m[cb + C_TOKEN] += 1
    cpu_next(m, x, c)


@jit(I64, I64, I64, I64, I64, I64, I64, I64, inline="always")
def cpu_submit(m, x, c, cls, cost, kind, a, b, cc, acct):
    """Cpu.submit: queue a job; it may start now or preempt running application work."""
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


# --- the link (engine.py wire_send / _transmit) --------------------------------------------------
@jit(I64, ret=I64, inline="always")
def ser_ns(m, x, size):
    return int(size * x[SER_PS] / 1000 + 0.5)


@jit(I64)
def wire_send(m, x, p):
    """Path.wire_send: the inbound link serialises the packet, then it reaches the NIC."""
    t = max(m[NOW], m[LINK_IN]) + ser_ns(m, x, m[m[O_PKT] + p * NP + P_SIZE])
    m[LINK_IN] = t
    at(m, x, t, PRIO_ARRIVAL, E_WIRE_RX, p, 0)


@jit(I64, I64)
def transmit(m, x, q, p):
    """Path._transmit: a NIC tx ring slot is used; the packet leaves after serialisation."""
    m[m[O_NICQ] + q * NQ + Q_TXQ_USED] += 1
    t = max(m[NOW], m[LINK_OUT]) + ser_ns(m, x, m[m[O_PKT] + p * NP + P_SIZE])
    m[LINK_OUT] = t
    at(m, x, t, PRIO_ARRIVAL, E_WIRE_OUT, p, 0)
