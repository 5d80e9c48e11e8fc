"""The event engine, part 4: the path's forwarding, job and event dispatch, the event loop.

``run(m, x, until_ns, budget)`` runs every event with time <= ``until_ns`` (at most ``budget`` of
them, -1 for no limit), returns the budget left and sets ``m[STATUS]`` to 1 when it stopped early
because ``m[FLAG]`` asks Python to grow the arena, refill draws, drain the trace or raise an audit
error, after which Python calls it again with the budget left. ``now`` ends at ``until_ns``
unless the budget ran out first (then it stays at the last event's time).

What a hop does with a packet it has processed is its row's delivery kind (``deliver``): after
the NIC's rx hop, the netback copy on the guest's backend core into the frontend's rx ring (or,
on a one-layer host, the application); after the frontend, the application; after the backend's
tx hop, the NIC tx ring (or the qdisc while it is full); after a tx completion, a free tx slot.
"""

from __future__ import annotations

from .core import I64, cpu_next, cpu_submit, data_ptr, entry, jit, pkt_free, pop, transmit
from .hop import done_pkt, hop_push, next_pkt, poll_body, poll_start, svc_cost, timer
from .layout import *  # noqa: F403
from .tenant import on_drop, on_rx, on_wire, sent_by_app, start_all, tenant_event, wire_rx

__all__ = ["run", "start"]


@jit(I64)
def to_nic_tx(m, x, p):
    """Into the NIC tx ring, or the qdisc while the ring is full, or dropped."""
    q = m[m[O_TEN] + m[m[O_PKT] + p * NP + P_TENANT] * NT + T_QUEUE]
    qb = m[O_NICQ] + q * NQ
    if m[qb + Q_TXQ_USED] >= m[TX_RING]:
        if m[qb + Q_QD_LEN] >= m[TXQLEN]:
            gate = m[m[O_HOP] + m[qb + Q_RX_HOP] * NH + HP_GATE]  # the queue's site
            m[m[O_CTR] + (gate * 2 + 1) * NX + X_DROPS] += 1
            on_drop(m, x, p)
        else:
            m[m[O_PKT] + p * NP + P_NEXT] = -1
            if m[qb + Q_QD_LEN] == 0:
                m[qb + Q_QD_HEAD] = p
            else:
                m[m[O_PKT] + m[qb + Q_QD_TAIL] * NP + P_NEXT] = p
            m[qb + Q_QD_TAIL] = p
            m[qb + Q_QD_LEN] += 1
        return
    transmit(m, x, q, p)


@jit(I64)
def tx_cleaned(m, x, p):
    """A TX completion is cleaned: a tx ring slot is free again; the qdisc's head may go out."""
    q = m[m[O_TEN] + m[m[O_PKT] + p * NP + P_TENANT] * NT + T_QUEUE]
    qb = m[O_NICQ] + q * NQ
    m[qb + Q_TXQ_USED] -= 1
    if m[qb + Q_QD_LEN]:
        y = m[qb + Q_QD_HEAD]
        m[qb + Q_QD_HEAD] = m[m[O_PKT] + y * NP + P_NEXT]
        m[qb + Q_QD_LEN] -= 1
        transmit(m, x, q, y)
    pkt_free(m, x, p)


@jit(I64, I64, inline="always")
def deliver(m, x, h, p):
    """Packet ``p`` leaves hop ``h``; what follows is the hop row's delivery kind (the topology's ``then``)."""
    kind = m[m[O_HOP] + h * NH + HP_DELIV]
    if kind == D_AFTER_NIC_RX:  # the netback copy into the guest's rx ring, on its backend core
        tb = m[O_TEN] + m[m[O_PKT] + p * NP + P_TENANT] * NT
        fh = m[tb + T_FERX]
        cost = svc_cost(m, x, m[NB_FIX], x[NB_BYTE], m[SVC_EXP], m[m[O_PKT] + p * NP + P_SIZE])
        cpu_submit(m, x, m[tb + T_BCPU], SOFTIRQ, cost, K_HOP_PUSH, fh, p, 0, m[m[O_HOP] + fh * NH + HP_GATE])
    elif kind == D_TO_GUEST_RX:  # veth: the bridge hands it to the guest's ring in the same softirq run
        fh = m[m[O_TEN] + m[m[O_PKT] + p * NP + P_TENANT] * NT + T_FERX]
        if hop_push(m, x, fh, p):
            on_drop(m, x, p)
    elif kind == D_TO_APP:
        on_rx(m, x, p)
    elif kind == D_TO_NIC_TX:
        to_nic_tx(m, x, p)
    else:
        tx_cleaned(m, x, p)


@jit(I64, inline="always")
def cpu_complete(m, x, c):
    """The running job's completion on CPU ``c``: account the job, run its continuation, start the
    next job."""
    cb = m[O_CPU] + c * NC
    j = m[cb + C_RUN_JOB]
    jb = m[O_JOB] + j * NJ
    cost = m[jb + J_COST]
    kind = m[jb + J_KIND]
    a = m[jb + J_A]
    b = m[jb + J_B]
    cc = m[jb + J_C]
    acct = m[jb + J_ACCT]
    m[jb + J_NEXT] = m[JFREE]  # the job row goes back to the free list
    m[JFREE] = j
    m[JUSED] -= 1
    m[cb + C_BUSY + m[cb + C_RUN_CLS]] += cost
    if acct >= 0:
        m[m[O_SITECPU] + acct] += cost
    m[cb + C_RUN_JOB] = -1
    m[cb + C_COMPLETING] = 1
    if kind == K_DONE_PKT:
        done_pkt(m, x, a, b)
        deliver(m, x, a, b)
        next_pkt(m, x, a)
    elif kind == K_SENT_BY_APP:
        sent_by_app(m, x, b >> 2, a, b & 3, cc)
    elif kind == K_HOP_PUSH:
        if hop_push(m, x, a, b):
            on_drop(m, x, b)
    elif kind == K_POLL_START:
        poll_start(m, x, a)
    elif kind == K_POLL_BODY:
        poll_body(m, x, a)
    m[cb + C_COMPLETING] = 0
    if m[cb + C_RUN_JOB] < 0:  # else the continuation chained its next job (cpu_chain)
        cpu_next(m, x, c)


@entry()
def start(m_, x_):
    """Every tenant's start(), at time 0."""
    start_all(data_ptr(m_), data_ptr(x_))


@jit(I64)
def trace(m, x, c):
    """Record the event about to run (source ``c`` as ``earliest`` returns it) in the trace region."""
    busy = 0
    for i in range(m[NCPU]):
        if m[m[O_SLOT] + i * NSL] != NEVER:
            busy += 1
    tb = m[O_TRACE] + m[NTRACE] * NTR
    if c >= 0:
        sb = m[O_SLOT] + c * NSL
        m[tb] = m[sb]
        m[tb + 1] = m[sb + SL_KEY]
        kind = E_CPU_DONE
        cb = m[O_CPU] + c * NC
        job = m[m[O_JOB] + m[cb + C_RUN_JOB] * NJ + J_KIND] * 4 + m[cb + C_RUN_CLS]
    else:
        o = m[O_HEAP]
        m[tb] = m[o]
        m[tb + 1] = m[o + 1]
        kind = m[o + 2] >> 48
        job = 0
    m[tb + 2] = kind
    m[tb + 3] = job
    m[tb + 4] = m[HN] + busy
    m[NTRACE] += 1
    if m[NTRACE] >= m[TRACE_CAP]:
        m[FLAG] |= F_TRACE


@jit(ret=I64, inline="always")
def earliest(m, x):
    """The source of the next event: a CPU's completion slot (its index) or the heap top (-1).

    Its time goes to m[SCRATCH] (NEVER when there is no event). Slots and heap rows share the
    (time, key) order, so the events run in the order of a single heap; the earliest slot is the
    first of the busy slots' list (``slot_link``).
    """
    c = m[SLOT_FIRST] - 1
    o = m[O_HEAP]
    if c >= 0:
        sb = m[O_SLOT] + c * NSL
        t = m[sb]
        if m[HN] == 0 or t < m[o] or (t == m[o] and m[sb + SL_KEY] < m[o + 1]):
            m[SCRATCH] = t
            return c
    m[SCRATCH] = m[o] if m[HN] > 0 else NEVER
    return -1


@entry(I64, I64, ret=I64)
def run(m_, x_, until, budget):
    """Run events up to ``until`` (see the module docstring); returns the budget left."""
    m = data_ptr(m_)
    x = data_ptr(x_)
    m[STATUS] = 0
    while budget != 0:
        if m[FLAG]:
            m[STATUS] = 1
            return budget
        c = earliest(m, x)
        if (c < 0 and m[HN] == 0) or m[SCRATCH] > until:
            break
        if m[TRACE_CAP]:
            trace(m, x, c)
        m[EVENTS] += 1
        budget -= 1
        if c >= 0:
            sb = m[O_SLOT] + c * NSL
            m[NOW] = m[sb]
            m[SLOT_FIRST] = m[sb + SL_NEXT]
            m[sb] = NEVER
            cpu_complete(m, x, c)
            continue
        pop(m, x, SCRATCH)
        kind = m[SCRATCH + 1]
        a = m[SCRATCH + 2]
        b = m[SCRATCH + 3]
        m[NOW] = m[SCRATCH]
        if kind == E_WIRE_RX:
            wire_rx(m, x, a)
        elif kind == E_HOP_TIMER:
            timer(m, x, a, b)
        elif kind == E_WIRE_OUT:
            q = m[m[O_TEN] + m[m[O_PKT] + a * NP + P_TENANT] * NT + T_QUEUE]
            txc = m[m[O_NICQ] + q * NQ + Q_TXC_HOP]
            if txc < 0:  # no tx-completion hop (veth frees the skb at transmit): nothing to clean later
                on_wire(m, x, a)
                tx_cleaned(m, x, a)
            else:
                hop_push(m, x, txc, a)  # capacity 2**62: never full
                on_wire(m, x, a)
        elif kind == E_HOP_POLL:
            poll_start(m, x, a)
        else:
            tenant_event(m, x, kind, a, b)
    if budget != 0:
        m[NOW] = until
    else:
        c = earliest(m, x)
        if (c < 0 and m[HN] == 0) or m[SCRATCH] > until:
            m[NOW] = until
    return budget
