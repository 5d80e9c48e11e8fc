"""Compiled engine, part 5 (Python side): lay out the arena from a built Simulation, keep it fed.

``build(sim)`` reads the Python ``Path`` (CPUs, sites, hops in the same order) and the spec into
an ``Arena`` (the two flat arrays ``m`` and ``x`` with named regions). ``Feeder`` owns the random
streams: it pre-draws unit exponentials in ExpDraws' blocks of 4096 (so the values and their
order are exactly those the Python engine draws) and refills the buffers in place, and it grows
the heap, the pools and the deliveries buffer when the compiled loop asks.
"""

from __future__ import annotations

import numpy as np

from vcoal.model.params import TimerMode
from vcoal.sim import compiled_core as C
from vcoal.sim import compiled_hop as H
from vcoal.sim import compiled_tenant as T
from vcoal.sim.rng import DrawSource

TIMER = {TimerMode.ABSOLUTE: C.TM_ABSOLUTE, TimerMode.PACKET: C.TM_PACKET, TimerMode.ITR: C.TM_ITR}
KIND = {"poisson": T.W_POISSON, "trace": T.W_TRACE, "request_response": T.W_RR, "bulk": T.W_BULK}
_I64 = np.int64
# initial sizes (tests shrink them to exercise growth and refills)
DRAW_LEN = 1 << 16  # pre-drawn service / interrupt exponentials
WL_LEN = 8192  # pre-drawn workload exponentials per tenant (1024 beyond 64 tenants)
MIN_CAP = 4096  # heap, packet and job pools: at least this, and 4 margins plus the start-up
CAP_SLACK = 4
# region name -> (m index of its offset, m index of its row count or None)
INT_REGIONS = {
    "g": (None, None), "heap": (C.O_HEAP, C.HEAP_CAP), "slot": (C.O_SLOT, None), "cpu": (C.O_CPU, None), "job": (C.O_JOB, C.JOB_CAP),
    "pkt": (C.O_PKT, C.PKT_CAP), "hop": (C.O_HOP, None), "sp": (C.O_SP, None), "ctr": (C.O_CTR, None),
    "sitecpu": (C.O_SITECPU, None), "ten": (C.O_TEN, None), "nicq": (C.O_NICQ, None),
    "steps_t": (C.O_STEPS_T, None), "tr_t": (C.O_TR_T, None), "tr_size": (C.O_TR_SIZE, None),
    "tr_dir": (C.O_TR_DIR, None), "hcount": (C.O_HCOUNT, None), "hstat": (C.O_HSTAT, None),
    "deliv": (C.O_DELIV, C.DELIV_CAP),
}  # fmt: skip
FLOAT_REGIONS = {
    "gf": (None, None), "hopf": (C.OF_HOPF, None), "tenf": (C.OF_TENF, None),
    "steps_rate": (C.OF_STEPS_RATE, None), "svc": (C.OF_SVC, C.SVC_LEN), "irq": (C.OF_IRQ, C.IRQ_LEN),
    "wl": (C.OF_WL, None),
}  # fmt: skip


class Arena:
    """The two flat arrays and their regions' shapes (rows, columns)."""

    def __init__(self, shapes: dict[str, tuple[int, int]]) -> None:
        self.shapes = dict(shapes)
        self.offsets: dict[str, int] = {}
        self.m = self._alloc(INT_REGIONS, _I64)
        self.x = self._alloc(FLOAT_REGIONS, np.float64)
        self._header()

    def _alloc(self, regions: dict, dtype) -> np.ndarray:
        off = 0
        for name in regions:
            rows, cols = self.shapes[name]
            self.offsets[name] = off
            off += rows * cols
        return np.zeros(off, dtype=dtype)

    def _header(self) -> None:
        for regions in (INT_REGIONS, FLOAT_REGIONS):
            for name, (o, n) in regions.items():
                if o is not None:
                    self.m[o] = self.offsets[name]
                if n is not None:
                    self.m[n] = self.shapes[name][0]
        self.m[C.WL_LEN] = self.shapes["wl"][1]

    def view(self, name: str) -> np.ndarray:
        rows, cols = self.shapes[name]
        arr = self.m if name in INT_REGIONS else self.x
        o = self.offsets[name]
        return arr[o : o + rows * cols].reshape(rows, cols)

    def grown(self, name: str) -> Arena:
        """A copy with region ``name`` holding twice as many rows."""
        shapes = dict(self.shapes)
        rows, cols = shapes[name]
        shapes[name] = (2 * rows, cols)
        new = Arena(shapes)
        for region in self.shapes:
            old = self.view(region)
            new.view(region)[: old.shape[0]] = old
        new._header()
        return new


def _pow2(n: int) -> int:
    return max(MIN_CAP, 1 << int(n - 1).bit_length())


def _chain(a: np.ndarray, lo: int, hi: int, col: int, tail: int) -> None:
    """Link rows lo..hi-1 into a free list ending at ``tail``."""
    a[lo : hi - 1, col] = np.arange(lo + 1, hi)
    a[hi - 1, col] = tail


class Feeder:
    """Draw sources and the growth / refill service of an arena."""

    def __init__(self, sim) -> None:
        spec = sim.spec
        c = spec.cost
        seed = sim.seed
        self.svc = DrawSource(seed, "service") if c.service_dist == "exp" else None
        self.irq = DrawSource(seed, "irq") if c.irq_dist == "exp" else None
        self.wl = [DrawSource(seed, f"workload/{g.name}") for g in spec.guests]
        self.wl_len = WL_LEN if len(spec.guests) <= 64 else min(WL_LEN, 1024)
        self.draw_len = DRAW_LEN

    def refill(self, a: Arena) -> None:
        """Move the unread draws to the front of each buffer and top it up from its stream."""
        m = a.m
        for src, name, pos in ((self.svc, "svc", C.SVC_POS), (self.irq, "irq", C.IRQ_POS)):
            k = int(m[pos])
            if src is not None and k > 0:
                buf = a.view(name)[:, 0]
                buf[:] = np.concatenate([buf[k:], src.take(k)])
                m[pos] = 0
        wl = a.view("wl")
        ten = a.view("ten")
        for i, src in enumerate(self.wl):
            k = int(ten[i, T.T_DRAW_POS])
            if k > 0:
                wl[i] = np.concatenate([wl[i, k:], src.take(k)])
                ten[i, T.T_DRAW_POS] = 0

    def service(self, a: Arena, drain) -> Arena:
        """Handle every bit of m[FLAG]; ``drain`` empties the deliveries buffer."""
        flag = int(a.m[C.FLAG])
        a.m[C.FLAG] = 0
        if flag & C.F_DRAWS:
            self.refill(a)
        if flag & C.F_DELIV:
            drain(a)
        if flag & C.F_HEAP:
            a = a.grown("heap")
        for bit, name, free, col in ((C.F_PKT, "pkt", C.PFREE, C.P_NEXT), (C.F_JOB, "job", C.JFREE, C.J_NEXT)):
            if flag & bit:
                n = a.shapes[name][0]
                a = a.grown(name)
                _chain(a.view(name), n, 2 * n, col, int(a.m[free]))
                a.m[free] = n
        return a


def write_params(a: Arena, sites: list) -> None:
    """The parameters in force of every site (after a policy decision) into region ``sp``."""
    sp = a.view("sp")
    for k, state in enumerate(sites):
        p = state.params
        sp[k] = (p.rx_usecs, p.rx_frames, p.tx_usecs, p.tx_frames, TIMER[p.timer], p.napi_budget,
                 p.napi_defer_hard_irqs, p.gro_flush_timeout_ns)


def build(sim, feeder: Feeder) -> Arena:
    """The arena of a freshly built (not yet started) Simulation."""
    spec, path = sim.spec, sim.path
    c = spec.cost
    ns = lambda us: round(us * 1000)  # noqa: E731
    cpus = sim.all_cpus()
    cpu_ix = {id(x): k for k, x in enumerate(cpus)}
    sites = list(path.sites.values())
    site_ix = {id(x): k for k, x in enumerate(sites)}
    nten = len(spec.guests)
    bulk_w = [g.workload.window_pkts for g in spec.guests if g.workload.kind == "bulk"]
    margin = 256 + 2 * max(bulk_w, default=0)
    starts = sum(g.workload.outstanding for g in spec.guests if g.workload.kind == "request_response")
    starts += sum(len(g.workload.steps) for g in spec.guests) + sum(bulk_w) + 16 * nten
    cap = _pow2(CAP_SLACK * margin + 2 * starts)

    hopf: list = []
    hop_rows: list = []
    terms = path.cost_terms

    def add_hop(hop, cost: str, deliv: int) -> int:
        fix, byte, exp = terms[cost]
        hopf.append(float(byte))
        hop_rows.append([
            site_ix[id(hop.gate)], site_ix[id(hop.napi)], 0 if hop.direction == "rx" else 1,
            cpu_ix[id(hop.consumer)], min(hop.capacity, 1 << 62), 0 if hop.irq_cost is path.irq_cost else 1,
            fix, int(exp), deliv, cpu_ix[id(hop.sender)] if hop.sender is not None else -1, hop.sender_cost_ns,
            -1, -1, 0, H.ARMED, 0, 0, -(1 << 62), 0, 0, 0,
        ])
        return len(hop_rows) - 1

    nicq = np.zeros((spec.nic.queues, C.NQ), dtype=_I64)
    for q in range(spec.nic.queues):
        nicq[q, C.Q_RX_HOP] = add_hop(path.nic_rx[q], "nic_rx", H.D_AFTER_NIC_RX)
        nicq[q, C.Q_TXC_HOP] = add_hop(path.nic_txc[q], "tx_clean", H.D_TX_CLEANED)
        nicq[q, C.Q_QD_HEAD] = nicq[q, C.Q_QD_TAIL] = -1

    ten = np.zeros((nten, T.NT), dtype=_I64)
    tenf = np.zeros((nten, T.NTF))
    steps_t, steps_rate, tr_t, tr_size, tr_dir = [], [], [], [], []
    for i, g in enumerate(spec.guests):
        w = g.workload
        r = ten[i]
        r[T.T_KIND] = KIND[w.kind]
        r[T.T_DIR] = 0 if w.direction == "rx" else 1
        r[T.T_QUEUE] = path.queue_of[i]
        r[T.T_BCPU] = cpu_ix[id(path.backend_cpu[i])]
        r[T.T_APPCPU] = cpu_ix[id(path.guest_vcpus[i][-1])]
        if path.one_layer:
            r[T.T_FERX] = r[T.T_FETX] = -1
        else:
            r[T.T_FERX] = add_hop(path.fe_rx[i], "frontend_rx", H.D_TO_APP)
            r[T.T_FETX] = add_hop(path.fe_tx[i], "backend_tx", H.D_TO_NIC_TX)
        r[T.T_OUTSTANDING] = w.outstanding
        r[T.T_REQ_BYTES] = w.request_bytes
        r[T.T_RESP_BYTES] = w.response_bytes
        r[T.T_APP_NS] = round(w.app_us * 1000)
        r[T.T_WINDOW] = w.window_pkts
        r[T.T_PKT_BYTES] = w.packet_bytes
        r[T.T_ACK_EVERY] = w.ack_every
        r[T.T_ACK_BYTES] = w.ack_bytes
        r[T.T_RTO_NS] = int(w.rto_us * 1000)
        r[T.T_GAP_NS] = round(w.packet_bytes * 8 / w.pace_gbps) if w.pace_gbps > 0 else 0
        r[T.T_STEP_OFF], r[T.T_STEP_N] = len(steps_t), len(w.steps)
        for at_s, rate in w.steps:
            steps_t.append(int(at_s * 1e9))
            steps_rate.append(float(rate))
        rows = w.trace_rows if w.kind == "trace" else ()
        r[T.T_TR_OFF], r[T.T_TR_N] = len(tr_t), len(rows)
        for ts_us, size, direction in rows:
            tr_t.append(round(ts_us * 1000))
            tr_size.append(size)
            tr_dir.append(0 if direction == "rx" else 1)
        r[T.T_ONOFF] = int(w.on_us > 0)
        r[T.T_THINK] = int(w.think_us > 0)
        tenf[i] = (w.rate_pps, w.think_us * 1000, w.on_us * 1000, w.off_us * 1000)

    nsite = len(sites)
    shapes = {
        "g": (C.NG, 1), "heap": (cap, C.NE), "slot": (len(cpus), C.NSL), "cpu": (len(cpus), C.NC), "job": (cap, C.NJ), "pkt": (cap, C.NP),
        "hop": (len(hop_rows), H.NH), "sp": (nsite, C.NS), "ctr": (2 * nsite, C.NX), "sitecpu": (nsite, 1),
        "ten": (nten, T.NT), "nicq": (spec.nic.queues, C.NQ), "steps_t": (len(steps_t), 1),
        "tr_t": (len(tr_t), 1), "tr_size": (len(tr_t), 1), "tr_dir": (len(tr_t), 1),
        "hcount": (4 * nten, C.NBUCKETS), "hstat": (4 * nten, 4), "deliv": (max(MIN_CAP, CAP_SLACK * margin), 3),
        "gf": (C.NGF, 1), "hopf": (len(hopf), 1), "tenf": (nten, T.NTF), "steps_rate": (len(steps_t), 1),
        "svc": (feeder.draw_len if feeder.svc is not None else 0, 1),
        "irq": (feeder.draw_len if feeder.irq is not None else 0, 1), "wl": (nten, feeder.wl_len),
    }  # fmt: skip
    a = Arena(shapes)
    m = a.m
    m[C.END_NS] = sim.end_ns
    m[C.ONE_LAYER] = int(path.one_layer)
    m[C.VETH] = int(path.veth)
    m[C.SEND_COST] = path.send_cost_ns
    m[C.CTX_NS] = path.ctx_switch_ns
    m[C.POLL_NS] = ns(c.poll_us)
    m[C.IRQ_NS] = ns(c.irq_us)
    m[C.VIRQ_NS] = ns(c.virq_us)
    m[C.IRQ_EXP] = int(c.irq_dist == "exp")
    m[C.SVC_EXP] = int(terms["netback_rx"][2])
    m[C.TX_RING] = spec.nic.tx_ring
    m[C.TXQLEN] = spec.nic.txqueuelen
    m[C.MARGIN] = margin
    m[C.NB_FIX] = terms["netback_rx"][0]
    m[C.NTEN] = nten
    a.x[C.SER_PS] = path.ser_ps_per_byte
    a.x[C.NB_BYTE] = terms["netback_rx"][1]
    m[C.PFREE] = m[C.JFREE] = 0
    _chain(a.view("pkt"), 0, cap, C.P_NEXT, -1)
    _chain(a.view("job"), 0, cap, C.J_NEXT, -1)
    m[C.NCPU] = len(cpus)
    a.view("slot")[:, :2] = C.NEVER
    cpu = a.view("cpu")
    cpu[:, C.C_RUN_JOB] = cpu[:, C.C_RUN_CLS] = -1
    cpu[:, C.C_QH : C.C_QH + 3] = -1
    cpu[:, C.C_QT : C.C_QT + 3] = -1
    if hop_rows:
        a.view("hop")[:] = np.array(hop_rows, dtype=_I64)
    a.view("hopf")[:, 0] = hopf
    a.view("ten")[:] = ten
    a.view("tenf")[:] = tenf
    a.view("nicq")[:] = nicq
    for name, vals in (("steps_t", steps_t), ("steps_rate", steps_rate), ("tr_t", tr_t), ("tr_size", tr_size),
                       ("tr_dir", tr_dir)):
        a.view(name)[:, 0] = vals
    for src, name in ((feeder.svc, "svc"), (feeder.irq, "irq")):
        if src is not None:
            a.view(name)[:, 0] = src.take(feeder.draw_len)
    wl = a.view("wl")
    for i, src in enumerate(feeder.wl):
        wl[i] = src.take(feeder.wl_len)
    write_params(a, sites)
    return a
