"""The event engine, part 3: tenant workloads (request-response, bulk stream, open loop, trace).

Each workload generates packets into the path and receives them back: ``on_rx`` when a packet
reaches the guest's application (after the frontend), ``on_wire`` when a guest packet leaves on the
wire, ``on_drop`` when one is lost. Latency is recorded at delivery for packets delivered after the
warm-up: one way (RX: the sender puts it on the link -> application, or NIC arrival -> application
on a one-layer host; TX: send -> wire) and, for request-response, the client's round trip. Open
loop: Poisson arrivals at ``rate_pps`` (optionally on/off bursts and rate steps), RX or TX, RX
arrivals serialised by the link like closed-loop senders'; trace: ``(timestamp_us, size,
direction)`` rows replayed; request-response: a client on the wire keeps ``outstanding`` requests
in flight; bulk: a window-limited stream (``window_pkts`` in flight) with ACKs in the reverse
direction.

Packets are pool rows; a packet is freed when it ends: delivered to the application (``on_rx``),
dropped (``on_drop``) or, after ``on_wire``, when its TX completion is cleaned (the NIC tx ring
still holds it when the tenant sees it on the wire).
"""

from __future__ import annotations

from numba import types as nt

from .core import I64, at, cpu_submit, hist_add, jit, pkt_end, pkt_free, pkt_new, wire_send
from .hop import hop_push
from .layout import *  # noqa: F403


@jit(I64, ret=nt.float64, inline="always")
def wl_draw(m, x, i):
    """Next unit exponential of stream ``workload/<tenant>``."""
    tb = m[O_TEN] + i * NT
    k = m[tb + T_DRAW_POS]
    m[tb + T_DRAW_POS] = k + 1
    if k + 1 > m[WL_LEN] - DRAW_MARGIN:
        m[FLAG] |= F_DRAWS
    return x[m[OF_WL] + i * m[WL_LEN] + k]


@jit(I64, ret=nt.float64, inline="always")
def dv_draw(m, x, r):
    """Next value of row ``r`` of region dv (one named stream ``dist/<tenant>/<field>``, see arena.py)."""
    pb = m[O_DVPOS] + r
    k = m[pb]
    m[pb] = k + 1
    if k + 1 > m[DV_LEN] - DRAW_MARGIN:
        m[FLAG] |= F_DRAWS
    return x[m[OF_DV] + r * m[DV_LEN] + k]


@jit(I64, I64, I64, ret=I64, inline="always")
def t_value(m, x, i, dv_col, col):
    """Tenant ``i``'s field: a draw from its distribution's row (column ``dv_col`` >= 0), else column ``col``."""
    tb = m[O_TEN] + i * NT
    r = m[tb + dv_col]
    if r >= 0:
        return int(dv_draw(m, x, r))
    return m[tb + col]


@jit(I64, ret=I64, inline="always")
def app_ns(m, x, i):
    """Tenant ``i``'s application work for one request / packet (ns): ``app_us``, fixed or drawn."""
    return t_value(m, x, i, T_DV_APP, T_APP_NS)


# --- common --------------------------------------------------------------------------------------
@jit(I64, I64, I64, I64, ret=I64, inline="always")
def t_new(m, x, i, size, kind, ref):
    tb = m[O_TEN] + i * NT
    m[tb + T_SENT] += 1
    if m[MEASURING]:
        m[tb + T_M_SENT] += 1
    return pkt_new(m, x, i, size, m[NOW], kind, ref)


@jit(I64, I64, inline="always")
def finish(m, x, i, p):
    """Packet ``p`` of tenant ``i`` reached its end (delivered)."""
    m[m[O_TEN] + i * NT + T_DELIVERED] += 1
    pkt_end(m, x, p)
    if m[REC_DELIV]:
        n = m[NDELIV]
        db = m[O_DELIV] + 3 * n
        m[db] = i
        m[db + 1] = m[m[O_PKT] + p * NP + P_T0]
        m[db + 2] = m[NOW]
        m[NDELIV] = n + 1
        if n + 1 > m[DELIV_CAP] - m[MARGIN]:
            m[FLAG] |= F_DELIV


@jit(I64, I64, I64, nt.boolean, nt.boolean)
def delivered(m, x, i, p, lat, payload, record):
    tb = m[O_TEN] + i * NT
    finish(m, x, i, p)
    size = m[m[O_PKT] + p * NP + P_SIZE]
    if payload:
        if m[MEASURING]:
            m[tb + T_M_DELIVERED] += 1
            m[tb + T_M_BYTES] += size
        m[tb + T_W_PACKETS] += 1
        m[tb + T_W_BYTES] += size
    if record:
        hist_add(m, x, HI_HIST, i, lat)


@jit(I64, I64, I64, I64, I64)
def send_from_app(m, x, i, size, kind, ref, extra):
    tb = m[O_TEN] + i * NT
    cpu_submit(m, x, m[tb + T_APPCPU], APP, extra + m[SEND_COST], K_SENT_BY_APP, size, 4 * i + kind, ref, -1)


@jit(I64)
def on_drop(m, x, p):
    pb = m[O_PKT] + p * NP
    i = m[pb + P_TENANT]
    tb = m[O_TEN] + i * NT
    m[tb + T_DROPPED] += 1
    if m[MEASURING]:
        m[tb + T_M_DROPPED] += 1
    pkt_end(m, x, p)
    kind = m[tb + T_KIND]
    if kind == W_RR:
        at(m, x, m[NOW] + m[tb + T_RTO_NS], PRIO_ARRIVAL, E_REQUEST, i, 0)
    elif kind == W_BULK:
        n = m[pb + P_REF] if m[pb + P_KIND] == ACK else 1
        at(m, x, m[NOW] + m[tb + T_RTO_NS], PRIO_CONTROL, E_OPEN, i, n)
    pkt_free(m, x, p)


@jit(I64, I64, I64, I64)
def sent_by_app(m, x, i, size, kind, ref):
    """The application's send completed: the packet is created and enters netfront's tx ring."""
    p = t_new(m, x, i, size, kind, ref)
    if hop_push(m, x, m[m[O_TEN] + i * NT + T_FETX], p):
        on_drop(m, x, p)


@jit(I64)
def wire_rx(m, x, p):
    """A packet from the wire reaches its NIC queue."""
    q = m[m[O_TEN] + m[m[O_PKT] + p * NP + P_TENANT] * NT + T_QUEUE]
    if hop_push(m, x, m[m[O_NICQ] + q * NQ + Q_RX_HOP], p):
        on_drop(m, x, p)


# --- Bulk ----------------------------------------------------------------------------------------
@jit(I64)
def pump(m, x, i):
    """Bulk: send what the window's credit allows, one packet per ``T_GAP_NS`` (pacing); the next
    send waits for an E_PUMP_AT event, of which at most one is pending (an ACK before it finds it
    scheduled)."""
    tb = m[O_TEN] + i * NT
    now = m[NOW]
    while m[tb + T_CREDIT] > 0 and now < m[END_NS]:
        if m[tb + T_NEXT_NS] > now:
            if m[tb + T_PUMP_AT] != m[tb + T_NEXT_NS]:
                m[tb + T_PUMP_AT] = m[tb + T_NEXT_NS]
                at(m, x, m[tb + T_NEXT_NS], PRIO_ARRIVAL, E_PUMP_AT, i, m[tb + T_NEXT_NS])
            return
        m[tb + T_CREDIT] -= 1
        m[tb + T_NEXT_NS] = now + m[tb + T_GAP_NS]
        if m[tb + T_DIR] == 0:
            wire_send(m, x, t_new(m, x, i, m[tb + T_PKT_BYTES], 0, 0))
        else:
            send_from_app(m, x, i, m[tb + T_PKT_BYTES], 0, 0, app_ns(m, x, i))


@jit(I64, I64)
def bulk_open(m, x, i, n):
    m[m[O_TEN] + i * NT + T_CREDIT] += n
    pump(m, x, i)


@jit(I64, I64, I64, ret=I64)
def bulk_receive(m, x, i, p, lat):
    """Bulk: an ACK opens the sender's window (-1); data is delivered and counted: the
    packets to acknowledge now, or 0."""
    pb = m[O_PKT] + p * NP
    if m[pb + P_KIND] == ACK:
        finish(m, x, i, p)
        bulk_open(m, x, i, m[pb + P_REF])
        return -1
    delivered(m, x, i, p, lat, True, True)
    tb = m[O_TEN] + i * NT
    m[tb + T_ACKED] += 1
    if m[tb + T_ACKED] < m[tb + T_ACK_EVERY]:
        return 0
    n = m[tb + T_ACKED]
    m[tb + T_ACKED] = 0
    return n


# --- arrivals at the application and on the wire -------------------------------------------------
@jit(I64)
def on_rx(m, x, p):
    """A packet reached the application (the packet ends here)."""
    pb = m[O_PKT] + p * NP
    i = m[pb + P_TENANT]
    tb = m[O_TEN] + i * NT
    kind = m[tb + T_KIND]
    lat = m[NOW] - m[pb + P_T0]
    if kind <= W_TRACE:  # poisson or trace
        delivered(m, x, i, p, lat, True, True)
        if not m[ONE_LAYER]:
            app = app_ns(m, x, i)
            if app:
                cpu_submit(m, x, m[tb + T_APPCPU], APP, app, K_NOOP, 0, 0, 0, -1)
    elif kind == W_RR:
        delivered(m, x, i, p, lat, False, True)
        send_from_app(m, x, i, t_value(m, x, i, T_DV_RESP, T_RESP_BYTES), RESP, m[pb + P_REF], app_ns(m, x, i) + m[CTX_NS])
    else:
        n = bulk_receive(m, x, i, p, lat)
        if n > 0:
            send_from_app(m, x, i, m[tb + T_ACK_BYTES], ACK, n, app_ns(m, x, i))
        elif n == 0:
            app = app_ns(m, x, i)
            if app:
                cpu_submit(m, x, m[tb + T_APPCPU], APP, app, K_NOOP, 0, 0, 0, -1)
    pkt_free(m, x, p)


@jit(I64)
def on_wire(m, x, p):
    """A tenant's packet left on the wire (it is freed when its TX completion is cleaned)."""
    pb = m[O_PKT] + p * NP
    i = m[pb + P_TENANT]
    tb = m[O_TEN] + i * NT
    now = m[NOW]
    kind = m[tb + T_KIND]
    lat = now - m[pb + P_T0]
    if kind <= W_TRACE:  # poisson or trace
        delivered(m, x, i, p, lat, True, True)
    elif kind == W_RR:
        rtt = now - m[pb + P_REF]
        delivered(m, x, i, p, lat, True, False)
        hist_add(m, x, HI_RTT, i, rtt)
        if m[tb + T_DV_THINK] >= 0:
            think = int(dv_draw(m, x, m[tb + T_DV_THINK]))
        elif m[tb + T_THINK]:
            think = int(x[m[OF_TENF] + i * NTF + TF_THINK1000] * wl_draw(m, x, i) + 0.5)
        else:
            think = 0
        at(m, x, now + think, PRIO_ARRIVAL, E_REQUEST, i, 0)
    else:
        n = bulk_receive(m, x, i, p, lat)
        if n > 0:
            wire_send(m, x, t_new(m, x, i, m[tb + T_ACK_BYTES], ACK, n))


# --- OpenLoop and Trace --------------------------------------------------------------------------
@jit(I64)
def schedule_next(m, x, i):
    tb = m[O_TEN] + i * NT
    m[tb + T_TOKEN] += 1
    now = m[NOW]
    rate = x[m[OF_TENF] + i * NTF + TF_RATE]
    if not m[tb + T_ON] or rate <= 0 or now >= m[END_NS]:
        return
    r = m[tb + T_DV_GAP]  # a unit-mean draw of the interarrival distribution, else a unit exponential
    u = dv_draw(m, x, r) if r >= 0 else wl_draw(m, x, i)
    gap = int(1e9 / rate * u + 0.5)
    at(m, x, now + gap, PRIO_ARRIVAL, E_ARRIVAL, i, m[tb + T_TOKEN])


@jit(I64, I64)
def toggle(m, x, i, on):
    """Open-loop bursts: the tenant turns on (1) or off (0) for one period, drawn from its row of
    region dv (a distribution, or its burst group's periods), else exponential from its own stream."""
    tb = m[O_TEN] + i * NT
    m[tb + T_ON] = on
    r = m[tb + T_DV_ON] if on else m[tb + T_DV_OFF]
    if r >= 0:
        period = max(1, int(dv_draw(m, x, r)))
    else:
        fb = m[OF_TENF] + i * NTF
        mean = x[fb + TF_ON1000] if on else x[fb + TF_OFF1000]
        period = max(1, int(mean * wl_draw(m, x, i) + 0.5))
    at(m, x, m[NOW] + period, PRIO_CONTROL, E_TOGGLE, i, 1 - on)
    schedule_next(m, x, i)


@jit(I64, I64, I64)
def emit(m, x, i, size, direction):
    """Open loop or trace: a new packet from the wire (rx) or from the application (tx).

    From the wire, the packet is serialised by the inbound link like a closed-loop sender's (it
    starts when the previous packet has left), so the NIC never receives faster than the link; an
    arrival the link could not start before the run's end is not sent. A one-layer host is the
    reference queue (shared/reference/simulation.md B.1): its arrivals reach the NIC at their drawn
    times."""
    if direction == 0:
        if m[ONE_LAYER]:
            wire_rx(m, x, t_new(m, x, i, size, 0, 0))
        elif max(m[NOW], m[LINK_IN]) < m[END_NS]:
            wire_send(m, x, t_new(m, x, i, size, 0, 0))
    else:
        send_from_app(m, x, i, size, 0, 0, app_ns(m, x, i))


@jit(I64)
def next_row(m, x, i):
    tb = m[O_TEN] + i * NT
    k = m[tb + T_POS]
    if k >= m[tb + T_TR_N]:
        return
    ts = m[m[O_TR_T] + m[tb + T_TR_OFF] + k]
    if ts >= m[END_NS]:
        return
    at(m, x, max(ts, m[NOW]), PRIO_ARRIVAL, E_ROW, i, 0)


# --- tenant start and events ---------------------------------------------------------------------
@jit()
def start_all(m, x):
    """Every tenant's start(), in tenant order, at time 0."""
    now = m[NOW]
    for i in range(m[NTEN]):
        tb = m[O_TEN] + i * NT
        kind = m[tb + T_KIND]
        if kind == W_POISSON:
            m[tb + T_TOKEN] = 0
            m[tb + T_ON] = 1
            for k in range(m[tb + T_STEP_OFF], m[tb + T_STEP_OFF] + m[tb + T_STEP_N]):
                at(m, x, m[m[O_STEPS_T] + k], PRIO_CONTROL, E_SET_RATE, i, k)
            if m[tb + T_ONOFF] and m[tb + T_START_NS] > 0:
                m[tb + T_ON] = 0
                at(m, x, m[tb + T_START_NS], PRIO_CONTROL, E_TOGGLE, i, 1)
            elif m[tb + T_ONOFF]:
                toggle(m, x, i, 1)
            else:
                schedule_next(m, x, i)
        elif kind == W_TRACE:
            m[tb + T_POS] = 0
            next_row(m, x, i)
        elif kind == W_RR:
            for j in range(m[tb + T_OUTSTANDING]):
                at(m, x, now + 1000 * i + j, PRIO_ARRIVAL, E_REQUEST, i, 0)
        else:
            m[tb + T_ACKED] = 0
            m[tb + T_CREDIT] = m[tb + T_WINDOW]
            m[tb + T_NEXT_NS] = 0
            m[tb + T_PUMP_AT] = -1
            pump(m, x, i)


@jit(I64, I64, I64)
def tenant_event(m, x, kind, i, b):
    """The workload events (E_SET_RATE .. E_OPEN)."""
    tb = m[O_TEN] + i * NT
    if kind == E_ARRIVAL:
        if b == m[tb + T_TOKEN]:
            emit(m, x, i, t_value(m, x, i, T_DV_PKT, T_PKT_BYTES), m[tb + T_DIR])
            schedule_next(m, x, i)
    elif kind == E_REQUEST:
        if m[NOW] < m[END_NS]:
            wire_send(m, x, t_new(m, x, i, t_value(m, x, i, T_DV_REQ, T_REQ_BYTES), REQ, m[NOW]))
    elif kind == E_PUMP_AT:
        if b == m[tb + T_PUMP_AT]:
            m[tb + T_PUMP_AT] = -1
        if b == m[tb + T_NEXT_NS]:
            pump(m, x, i)
    elif kind == E_OPEN:
        bulk_open(m, x, i, b)
    elif kind == E_ROW:
        k = m[tb + T_TR_OFF] + m[tb + T_POS]
        m[tb + T_POS] += 1
        emit(m, x, i, m[m[O_TR_SIZE] + k], m[m[O_TR_DIR] + k])
        next_row(m, x, i)
    elif kind == E_TOGGLE:
        toggle(m, x, i, b)
    elif kind == E_SET_RATE:
        x[m[OF_TENF] + i * NTF + TF_RATE] = x[m[OF_STEPS_RATE] + b]
        schedule_next(m, x, i)
