"""The event engine, part 2: one coalescing hop, the same at every layer.

A producer pushes packets into the hop's ring; the gate decides when the interrupt (physical IRQ,
or a virtual interrupt / event-channel notification) fires: absolute timer from the first packet,
timer restarted by every packet, minimum interrupt gap (ITR), frame cap, or immediately. The
interrupt costs CPU on the consumer, then NAPI polls the ring exhaustively in polls of at most
``napi_budget`` packets with the interrupt masked. When a poll drains the ring, the kernel's
deferral rule (``napi_defer_hard_irqs`` + ``gro_flush_timeout_ns``, net/core/dev.c
``napi_complete_done``) decides between re-arming the interrupt and a timer re-poll.

Paravirtual rules fall out of the same mechanism: while the consumer has not re-armed (event
index not advanced, or the event channel's pending bit still set), further pushes notify nobody;
the hop counts them as ``suppressed``.

Which site's parameters apply: the *gate* site (the device raising the interrupt) provides
``{rx,tx}_usecs``, ``{rx,tx}_frames`` and ``timer``; the *napi* site (the consumer) provides
``napi_budget``, ``napi_defer_hard_irqs`` and ``gro_flush_timeout_ns``. A hop row holds its
wiring (the topology table's row: gate and NAPI sites, direction, consumer CPU, costs, what
delivery does) and its state (ring as a linked list of packets, coalescer state, tokens).
``hop_push`` returns True when the ring was full (the caller drops the packet); ``done_pkt`` leaves
delivery to the caller, which then calls ``next_pkt``.
"""

from __future__ import annotations

from numba import types as nt

from .core import I64, at, cpu_chain, cpu_submit, draw_irq, draw_svc, jit
from .layout import *  # noqa: F403


@jit(I64, nt.float64, I64, I64, ret=I64, inline="always")
def svc_cost(m, x, fix, byte, exp, size):
    """A per-packet CPU cost: (fixed + per byte x size), times a unit exponential if ``exp``."""
    if exp:
        return int((fix + byte * size) * draw_svc(m, x) + 0.5)
    if byte == 0.0:
        return fix
    return fix + int(byte * size + 0.5)


@jit(I64, ret=I64, inline="always")
def irq_cost(m, x, h):
    """Interrupt cost of hop ``h``: physical or virtual, its mean or a draw around it."""
    mean = m[IRQ_NS] if m[m[O_HOP] + h * NH + HP_IRQK] == 0 else m[VIRQ_NS]
    if m[IRQ_EXP] and mean > 0:
        return int(mean * draw_irq(m, x) + 0.5)
    return mean


@jit(I64, I64, inline="always")
def wait(m, x, h, t):
    hb = m[O_HOP] + h * NH
    m[hb + HP_STATE] = COALESCING
    m[hb + HP_TOKEN] += 1
    at(m, x, t, PRIO_TIMER, E_HOP_TIMER, h, m[hb + HP_TOKEN])


@jit(I64)
def fire(m, x, h):
    hb = m[O_HOP] + h * NH
    m[hb + HP_TOKEN] += 1
    m[hb + HP_STATE] = MASKED
    m[hb + HP_LAST_FIRE] = m[NOW]
    gate = m[hb + HP_GATE]
    m[m[O_CTR] + (gate * 2 + m[hb + HP_DIR]) * NX + X_INTERRUPTS] += 1
    if m[hb + HP_SENDER] >= 0 and m[hb + HP_SENDER_NS] != 0:
        cpu_submit(m, x, m[hb + HP_SENDER], SOFTIRQ, m[hb + HP_SENDER_NS], K_NOOP, 0, 0, 0, gate)
    cpu_submit(m, x, m[hb + HP_CONS], IRQ, irq_cost(m, x, h), K_POLL_START, h, 0, 0, m[hb + HP_NAPI])


@jit(I64)
def arm_first(m, x, h):
    hb = m[O_HOP] + h * NH
    sb = m[O_SP] + m[hb + HP_GATE] * NS
    d = m[hb + HP_DIR]
    now = m[NOW]
    usecs = m[sb + 2 * d]
    frames = m[sb + 2 * d + 1]
    if m[sb + S_TIMER] == TM_ITR:
        fire_at = m[hb + HP_LAST_FIRE] + 1000 * usecs
        if fire_at <= now:
            fire(m, x, h)
            return
        m[hb + HP_COUNT] = 1
        wait(m, x, h, fire_at)
        return
    if (usecs == 0 and frames <= 1) or frames == 1:
        fire(m, x, h)
        return
    m[hb + HP_COUNT] = 1
    m[hb + HP_STATE] = COALESCING
    if usecs == 0:
        return
    m[hb + HP_DEADLINE] = now + 1000 * usecs
    wait(m, x, h, m[hb + HP_DEADLINE])


@jit(I64, I64, ret=nt.boolean)
def hop_push(m, x, h, p):
    """A packet enters the ring of hop ``h``; returns True if the ring was full (the caller drops it)."""
    hb = m[O_HOP] + h * NH
    gate = m[hb + HP_GATE]
    d = m[hb + HP_DIR]
    xb = m[O_CTR] + (gate * 2 + d) * NX
    if m[hb + HP_RLEN] >= m[hb + HP_CAP]:
        m[xb + X_DROPS] += 1
        return True
    o = m[O_PKT]
    m[o + p * NP + P_NEXT] = -1
    if m[hb + HP_RLEN] == 0:
        m[hb + HP_RHEAD] = p
    else:
        m[o + m[hb + HP_RTAIL] * NP + P_NEXT] = p
    m[hb + HP_RTAIL] = p
    m[hb + HP_RLEN] += 1
    m[xb + X_PACKETS] += 1
    m[xb + X_BYTES] += m[o + p * NP + P_SIZE]
    state = m[hb + HP_STATE]
    if state == ARMED:
        arm_first(m, x, h)
    elif state == COALESCING:
        m[hb + HP_COUNT] += 1
        sb = m[O_SP] + gate * NS
        if m[sb + S_TIMER] == TM_ITR:
            return False
        frames = m[sb + 2 * d + 1]
        if 0 < frames <= m[hb + HP_COUNT]:
            fire(m, x, h)
        elif m[sb + S_TIMER] == TM_PACKET:
            m[hb + HP_DEADLINE] = m[NOW] + 1000 * m[sb + 2 * d]
    else:
        m[xb + X_SUPPRESSED] += 1
    return False


@jit(I64, I64)
def timer(m, x, h, token):
    """The coalescing timer of hop ``h`` expires (stale tokens are ignored)."""
    hb = m[O_HOP] + h * NH
    if token != m[hb + HP_TOKEN] or m[hb + HP_STATE] != COALESCING:
        return
    if m[m[O_SP] + m[hb + HP_GATE] * NS + S_TIMER] == TM_PACKET and m[NOW] < m[hb + HP_DEADLINE]:
        at(m, x, m[hb + HP_DEADLINE], PRIO_TIMER, E_HOP_TIMER, h, token)
        return
    fire(m, x, h)


@jit(I64)
def complete(m, x, h):
    """The poll drained the ring: re-arm the interrupt, or defer to a timer re-poll."""
    hb = m[O_HOP] + h * NH
    sb = m[O_SP] + m[hb + HP_NAPI] * NS
    if m[hb + HP_WORK] > 0:
        m[hb + HP_DEFER_LEFT] = m[sb + S_DEFER]
    if m[hb + HP_DEFER_LEFT] > 0:
        m[hb + HP_DEFER_LEFT] -= 1
        if m[sb + S_GRO] > 0:
            m[hb + HP_STATE] = DEFERRED
            at(m, x, m[NOW] + m[sb + S_GRO], PRIO_TIMER, E_HOP_POLL, h, 0)
            return
    m[hb + HP_STATE] = ARMED


@jit(I64)
def next_pkt(m, x, h):
    """Next packet of the poll, or a new poll when the budget is spent, or complete (a budget
    exhausted with free polls loops here instead of recursing)."""
    hb = m[O_HOP] + h * NH
    napi = m[hb + HP_NAPI]
    while True:
        if m[hb + HP_RLEN] == 0:
            complete(m, x, h)
            return
        if m[hb + HP_WORK] >= m[m[O_SP] + napi * NS + S_BUDGET]:
            pns = m[POLL_NS]
            if pns:
                cpu_chain(m, x, m[hb + HP_CONS], SOFTIRQ, pns, K_POLL_BODY, h, 0, 0, napi)
                return
            m[m[O_CTR] + (napi * 2 + m[hb + HP_DIR]) * NX + X_POLLS] += 1
            m[hb + HP_WORK] = 0
            continue
        p = m[hb + HP_RHEAD]
        m[hb + HP_RHEAD] = m[m[O_PKT] + p * NP + P_NEXT]
        m[hb + HP_RLEN] -= 1
        cost = svc_cost(m, x, m[hb + HP_COSTFIX], x[m[OF_HOPF] + h], m[hb + HP_COSTEXP], m[m[O_PKT] + p * NP + P_SIZE])
        cpu_chain(m, x, m[hb + HP_CONS], SOFTIRQ, cost, K_DONE_PKT, h, p, 0, napi)
        return


@jit(I64)
def poll_body(m, x, h):
    hb = m[O_HOP] + h * NH
    m[m[O_CTR] + (m[hb + HP_NAPI] * 2 + m[hb + HP_DIR]) * NX + X_POLLS] += 1
    m[hb + HP_WORK] = 0
    next_pkt(m, x, h)


@jit(I64)
def poll_start(m, x, h):
    """A NAPI poll starts (after the interrupt, after a full budget, or the deferred re-poll)."""
    pns = m[POLL_NS]
    if pns:
        hb = m[O_HOP] + h * NH
        cpu_chain(m, x, m[hb + HP_CONS], SOFTIRQ, pns, K_POLL_BODY, h, 0, 0, m[hb + HP_NAPI])
    else:
        poll_body(m, x, h)


@jit(I64, I64, inline="always")
def done_pkt(m, x, h, p):
    """The consumer processed packet ``p``: count it; the caller delivers, then calls next_pkt."""
    hb = m[O_HOP] + h * NH
    m[hb + HP_WORK] += 1
    napi = m[hb + HP_NAPI]
    if napi != m[hb + HP_GATE]:
        xb = m[O_CTR] + (napi * 2 + m[hb + HP_DIR]) * NX
        m[xb + X_PACKETS] += 1
        m[xb + X_BYTES] += m[m[O_PKT] + p * NP + P_SIZE]
