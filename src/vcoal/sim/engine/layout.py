"""The arena's layout: where every field of the engine's state lives in the two flat arrays.

``m`` (int64) starts with the globals and the offsets of its regions (heap, CPU slots, CPUs,
jobs, packets, hops, sites, tenants, NIC queues, histograms, deliveries, trace); ``x`` (float64)
holds the float parameters and the pre-drawn unit exponentials. A row of a region is addressed
by its base, e.g. ``hb = m[O_HOP] + h * NH``. The engine modules import these names with ``*``:
they are the engine's register map, the one vocabulary its functions and the Python side share.
"""

from __future__ import annotations

import math

from vcoal.model.histogram import _MAX_VALUE_NS, _NBUCKETS, GROWTH, LINEAR_LIMIT

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
AUDIT, ERROR, ERROR_PKT = 67, 68, 69  # audit on; the first lifecycle error found and its packet
O_TRACE, TRACE_CAP, NTRACE = 70, 71, 72  # the event trace (capacity 0: off)
O_DVPOS, OF_DV, DV_LEN = 73, 74, 75  # distribution draws: read positions (m), rows of values (x), row length
SLOT_FIRST = 76  # the busy slot with the earliest completion, + 1 (0: none; see core.slot_link)
NG = 77
# x header
SER_PS, NB_BYTE = 0, 1
NGF = 2
# flag bits: what Python must do before the loop goes on
F_DRAWS, F_HEAP, F_PKT, F_JOB, F_DELIV, F_TRACE, F_ERROR = 1, 2, 4, 8, 16, 32, 64
DRAW_MARGIN = 64

# heap rows: time, (prio << 56) | seq, (event kind << 48) | first argument, second argument
NE = 4
# slot rows (one per CPU): time and key of the running job's completion (time NEVER when the CPU
# is idle), the next busy slot in (time, key) order + 1 (0: none)
SL_KEY, SL_NEXT = 1, 2
NSL = 3
NEVER = (1 << 63) - 1
PRIO_COMPLETION, PRIO_TIMER, PRIO_ARRIVAL, PRIO_CONTROL = 0, 1, 2, 3
# E_CPU_DONE is never on the heap: it is the trace's kind of a CPU slot's completion (loop.trace)
E_CPU_DONE, E_HOP_TIMER, E_HOP_POLL, E_WIRE_RX, E_WIRE_OUT, E_SET_RATE = range(6)
E_TOGGLE, E_ARRIVAL, E_ROW, E_REQUEST, E_PUMP_AT, E_OPEN = range(6, 12)
# trace rows: time, key, event kind, job (kind * 4 + class of a CPU completion, else 0),
# events pending (the one being run included)
NTR = 5

# cpu rows
C_RUN_JOB, C_RUN_CLS, C_RUN_START, C_COMPLETING, C_BUSY, C_QH, C_QT, C_RUNS = 0, 1, 2, 3, 4, 7, 10, 13
NC = 14
IRQ, SOFTIRQ, APP = 0, 1, 2

# job rows: cost, kind, three arguments, account site (-1: none), next job in the queue / free list
J_COST, J_KIND, J_A, J_B, J_C, J_ACCT, J_NEXT = range(7)
NJ = 7
K_NOOP, K_POLL_START, K_POLL_BODY, K_DONE_PKT, K_HOP_PUSH, K_SENT_BY_APP = range(6)

# packet rows; a packet's life (audited): free -> live -> ended (delivered or dropped) -> free
P_TENANT, P_SIZE, P_T0, P_KIND, P_REF, P_NEXT, P_LIFE = range(7)
NP = 7
DATA, REQ, RESP, ACK = 0, 1, 2, 3
LIFE_FREE, LIFE_LIVE, LIFE_ENDED = 0, 1, 2
ERR_ENDED_TWICE, ERR_FREED_LIVE = 1, 2

# NIC queue rows (Q_TXC_HOP -1: no tx completions to clean, see topology.py)
Q_RX_HOP, Q_TXC_HOP, Q_TXQ_USED, Q_QD_HEAD, Q_QD_TAIL, Q_QD_LEN = range(6)
NQ = 6

# site counters: row (site * 2 + dir), fields
X_PACKETS, X_BYTES, X_INTERRUPTS, X_POLLS, X_DROPS, X_SUPPRESSED = range(6)
NX = 6
# site params rows
S_RX_USECS, S_RX_FRAMES, S_TX_USECS, S_TX_FRAMES, S_TIMER, S_BUDGET, S_DEFER, S_GRO = range(8)
NS = 8
TM_ABSOLUTE, TM_PACKET, TM_ITR = 0, 1, 2

# hop rows: wiring (from the topology table), then state
HP_GATE, HP_NAPI, HP_DIR, HP_CONS, HP_CAP, HP_IRQK, HP_COSTFIX, HP_COSTEXP, HP_DELIV = range(9)
HP_SENDER, HP_SENDER_NS, HP_RHEAD, HP_RTAIL, HP_RLEN, HP_STATE, HP_COUNT, HP_DEADLINE = range(9, 17)
HP_LAST_FIRE, HP_TOKEN, HP_WORK, HP_DEFER_LEFT = range(17, 21)
NH = 21
ARMED, COALESCING, MASKED, DEFERRED = 0, 1, 2, 3
# what a hop does with a packet it has processed (the topology's "next hop")
D_AFTER_NIC_RX, D_TO_APP, D_TO_NIC_TX, D_TX_CLEANED, D_TO_GUEST_RX = 0, 1, 2, 3, 4

# tenant rows: wiring and parameters, then state, then counters
T_KIND, T_DIR, T_QUEUE, T_BCPU, T_APPCPU, T_FERX, T_FETX, T_OUTSTANDING, T_REQ_BYTES = range(9)
T_RESP_BYTES, T_APP_NS, T_WINDOW, T_PKT_BYTES, T_ACK_EVERY, T_ACK_BYTES, T_RTO_NS, T_GAP_NS = range(9, 17)
T_STEP_OFF, T_STEP_N, T_TR_OFF, T_TR_N, T_ONOFF, T_THINK = range(17, 23)
T_TOKEN, T_ON, T_POS, T_ACKED, T_CREDIT, T_NEXT_NS, T_DRAW_POS = range(23, 30)
T_SENT, T_DELIVERED, T_DROPPED, T_M_DELIVERED, T_M_BYTES, T_M_DROPPED, T_M_SENT = range(30, 37)
T_W_PACKETS, T_W_BYTES = 37, 38
# the row of region dv holding a field's drawn values (-1: the field is a plain number)
T_DV_REQ, T_DV_RESP, T_DV_THINK, T_DV_PKT, T_DV_APP, T_DV_ON, T_DV_OFF, T_DV_GAP = range(39, 47)
T_START_NS = 47  # poisson with on/off: the first on period starts here (off before; 0: on at the start)
T_PUMP_AT = 48  # bulk: the time of its pending pacing event (E_PUMP_AT), -1: none
NT = 49
# float tenant rows
TF_RATE, TF_THINK1000, TF_ON1000, TF_OFF1000 = range(4)
NTF = 4
W_POISSON, W_TRACE, W_RR, W_BULK = 0, 1, 2, 3

# histograms: row (h * ntenants + tenant); hcount rows of NBUCKETS, hstat rows (count, sum, min, max);
# the run's latency and round-trip histograms, then their window twins at + HI_WIN (core.hist_add)
HI_HIST, HI_RTT, HI_WIN, HI_WINRTT = 0, 1, 2, 3
NBUCKETS = _NBUCKETS
LIN_LIMIT = LINEAR_LIMIT
MAX_VALUE = _MAX_VALUE_NS
LOG_GROWTH = math.log(GROWTH)
