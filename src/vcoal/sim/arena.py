"""The engine's state, Python side: lay out the arena from a scenario's topology, keep it fed.

``build`` reads the spec and its ``Topology`` (CPUs, sites, the hop table) into an ``Arena`` (the
two flat arrays ``m`` and ``x`` with named regions, see ``engine.layout``). ``Feeder`` owns the
random streams: it pre-draws unit exponentials in blocks of 4096 per named stream and refills the
buffers in place, and it grows the heap, the pools, the deliveries buffer and the trace when the
event loop asks. Both run modes use this one arena.

Workload distributions (``vcoal.spec.dist``: a size or think time given as a table) are drawn here,
on the Python side, not in the engine: each such field of each tenant has its own named stream
``dist/<tenant>/<field>`` (e.g. ``dist/mc/request_bytes``) and its own row of region ``dv`` (x)
holding the next values, ready to use (sizes rounded and held to [1, 65535], times in ns), with a
read position in region ``dvpos`` (m); the tenant row's ``T_DV_*`` column names the row (-1: the
field is a plain number, read as before). The engine takes one value per packet / request
(``tenant.t_value``) and flags a refill like the other draw buffers. So a distribution draws from
no stream another tenant or field uses: adding one never shifts any other draw, and a spec
without distributions has no dv rows and runs exactly as before. A burst group's on/off periods
are the exception by design: every member's on_us / off_us row draws from the group's stream
``burst/<group>/<field>``, so the members read the same periods and turn on and off together.
"""

from __future__ import annotations

import numpy as np

from vcoal.model.params import TimerMode
from vcoal.sim.engine import layout as L
from vcoal.sim.rng import DrawSource, sample
from vcoal.sim.topology import Topology, cost_terms, ns
from vcoal.spec.dist import DistSpec

TIMER = {mode: getattr(L, f"TM_{mode.name}") for mode in TimerMode}  # the engine's constant of each mode
KIND = {"poisson": L.W_POISSON, "trace": L.W_TRACE, "request_response": L.W_RR, "bulk": L.W_BULK}
_I64 = np.int64
NEVER_FIRED_NS = -(1 << 62)  # a hop's last interrupt before any: an ITR gap has long passed
# initial sizes (tests shrink them to exercise growth and refills)
DRAW_LEN = 1 << 16  # pre-drawn service / interrupt exponentials
WL_LEN = 8192  # pre-drawn workload exponentials per tenant (1024 beyond 64 tenants)
MIN_CAP = 4096  # heap, packet and job pools: at least this, and 4 margins plus the start-up
CAP_SLACK = 4
# region name -> (m index of its offset, m index of its row count or None)
INT_REGIONS = {
    "g": (None, None), "heap": (L.O_HEAP, L.HEAP_CAP), "slot": (L.O_SLOT, None), "cpu": (L.O_CPU, None), "job": (L.O_JOB, L.JOB_CAP),
    "pkt": (L.O_PKT, L.PKT_CAP), "hop": (L.O_HOP, None), "sp": (L.O_SP, None), "ctr": (L.O_CTR, None),
    "sitecpu": (L.O_SITECPU, None), "ten": (L.O_TEN, None), "nicq": (L.O_NICQ, None),
    "steps_t": (L.O_STEPS_T, None), "tr_t": (L.O_TR_T, None), "tr_size": (L.O_TR_SIZE, None),
    "tr_dir": (L.O_TR_DIR, None), "hcount": (L.O_HCOUNT, None), "hstat": (L.O_HSTAT, None),
    "deliv": (L.O_DELIV, L.DELIV_CAP), "trace": (L.O_TRACE, L.TRACE_CAP), "dvpos": (L.O_DVPOS, None),
}  # fmt: skip
FLOAT_REGIONS = {
    "gf": (None, None), "hopf": (L.OF_HOPF, None), "tenf": (L.OF_TENF, None),
    "steps_rate": (L.OF_STEPS_RATE, None), "svc": (L.OF_SVC, L.SVC_LEN), "irq": (L.OF_IRQ, L.IRQ_LEN),
    "wl": (L.OF_WL, None), "dv": (L.OF_DV, None),
}  # fmt: skip
DV_COL = {"request_bytes": L.T_DV_REQ, "response_bytes": L.T_DV_RESP, "think_us": L.T_DV_THINK, "packet_bytes": L.T_DV_PKT,
          "app_us": L.T_DV_APP, "on_us": L.T_DV_ON, "off_us": L.T_DV_OFF, "interarrival": L.T_DV_GAP}
BURST_FIELDS = ("on_us", "off_us")
DV_LEN = 4096  # pre-drawn values per distribution row


class Arena:
    """The two flat arrays and their regions' shapes (rows, columns)."""

    def __init__(self, shapes: dict[str, tuple[int, int]]) -> None:
        self.shapes = dict(shapes)
        self.offsets: dict[str, int] = {}
        self._views: dict[str, np.ndarray] = {}
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
        self.m[L.WL_LEN] = self.shapes["wl"][1]
        self.m[L.DV_LEN] = self.shapes["dv"][1]

    def view(self, name: str) -> np.ndarray:
        """Region ``name`` as a (rows, columns) view of its array (made once: the arrays never change)."""
        v = self._views.get(name)
        if v is None:
            rows, cols = self.shapes[name]
            arr = self.m if name in INT_REGIONS else self.x
            o = self.offsets[name]
            v = self._views[name] = arr[o : o + rows * cols].reshape(rows, cols)
        return v

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

    def __init__(self, spec, seed: int) -> None:
        c = spec.cost
        self.svc = DrawSource(seed, "service") if c.service_dist == "exp" else None
        self.irq = DrawSource(seed, "irq") if c.irq_dist == "exp" else None
        self.wl = [DrawSource(seed, f"workload/{g.name}") for g in spec.guests]
        self.wl_len = WL_LEN if len(spec.guests) <= 64 else min(WL_LEN, 1024)
        # one row per (tenant, field given as a distribution), in tenant then field order
        self.dv = [(i, field, DrawSource(seed, stream_name(g, field), _engine_values(field, d)))
                   for i, g in enumerate(spec.guests) for field, d in dv_fields(g.workload).items()]

    def buffers(self, a: Arena):
        """Every draw buffer of ``a`` with its source and read position: (source, buffer (a row view),
        the array holding the position, its index there)."""
        for src, name, pos in ((self.svc, "svc", L.SVC_POS), (self.irq, "irq", L.IRQ_POS)):
            if src is not None:
                yield src, a.view(name)[:, 0], a.m, pos
        wl, ten = a.view("wl"), a.view("ten")
        for i, src in enumerate(self.wl):
            yield src, wl[i], ten, (i, L.T_DRAW_POS)
        dv, dvpos = a.view("dv"), a.view("dvpos")
        for r, (_, _, src) in enumerate(self.dv):
            yield src, dv[r], dvpos, (r, 0)

    def refill(self, a: Arena) -> None:
        """Move the unread draws to the front of each buffer and top it up from its stream."""
        for src, buf, pos, at in self.buffers(a):
            k = int(pos[at])
            if k > 0:
                buf[:] = np.concatenate([buf[k:], src.take(k)])
                pos[at] = 0

    def service(self, a: Arena, drain, trace) -> Arena:
        """Handle every bit of m[FLAG] but errors; ``drain`` empties the deliveries buffer, ``trace``
        the trace."""
        flag = int(a.m[L.FLAG])
        a.m[L.FLAG] = 0
        if flag & L.F_DRAWS:
            self.refill(a)
        if flag & L.F_DELIV:
            drain(a)
        if flag & L.F_TRACE:
            trace(a)
        if flag & L.F_HEAP:
            a = a.grown("heap")
        for bit, name, free, col in ((L.F_PKT, "pkt", L.PFREE, L.P_NEXT), (L.F_JOB, "job", L.JFREE, L.J_NEXT)):
            if flag & bit:
                n = a.shapes[name][0]
                a = a.grown(name)
                _chain(a.view(name), n, 2 * n, col, int(a.m[free]))
                a.m[free] = n
        return a


def dv_fields(w) -> dict:
    """The fields of workload ``w`` the engine draws from a dv row: its distributions, and a burst
    group member's on/off periods (a plain number is then an exponential with that mean, drawn
    from the group's stream rather than the tenant's own)."""
    out = dict(w.dists())
    if w.burst_group is not None:
        for field in BURST_FIELDS:
            if field not in out:
                out[field] = DistSpec(dist="exponential", mean=w.mean_of(field))
    return out


def stream_name(g, field: str) -> str:
    """The named stream of guest ``g``'s ``field``: ``burst/<group>/<field>`` for a burst group
    member's on/off periods (every member draws the same values), else ``dist/<tenant>/<field>``."""
    group = g.workload.burst_group
    if group is not None and field in BURST_FIELDS:
        return f"burst/{group}/{field}"
    return f"dist/{g.name}/{field}"


def _engine_values(field: str, d):
    """The draw function of ``field``'s distribution, giving values ready for the engine: sizes
    rounded to whole bytes in [1, 65535], times (µs) rounded to ns (on/off periods at least 1 ns),
    interarrival as a unit-mean factor of the mean gap 1 / rate."""
    if field in ("think_us", "app_us"):
        return lambda gen, n: np.maximum(np.rint(sample(d, gen, n) * 1000.0), 0.0)
    if field in BURST_FIELDS:
        return lambda gen, n: np.maximum(np.rint(sample(d, gen, n) * 1000.0), 1.0)
    if field == "interarrival":
        mean = d.mean_value()
        return lambda gen, n: sample(d, gen, n) / mean
    return lambda gen, n: np.clip(np.rint(sample(d, gen, n)), 1.0, 65535.0)


def write_params(a: Arena, params) -> None:
    """The parameters in force of every site (in site order; after a policy decision) into region ``sp``."""
    sp = a.view("sp")
    for k, p in enumerate(params):
        sp[k] = (p.rx_usecs, p.rx_frames, p.tx_usecs, p.tx_frames, TIMER[p.timer], p.napi_budget,
                 p.napi_defer_hard_irqs, p.gro_flush_timeout_ns)


def build(spec, topo: Topology, feeder: Feeder, end_ns: int, audit: bool = False, trace_rows: int = 0) -> Arena:
    """The arena of ``spec`` (laid out as ``topo``) before its start: every hop armed, every queue empty.

    ``audit``: check every packet's life (a packet ended twice or freed while live stops the run);
    ``trace_rows``: record every event in a buffer of that many rows (0: no trace).
    """
    c = spec.cost
    nten = len(spec.guests)
    bulk_w = [g.workload.window_pkts for g in spec.guests if g.workload.kind == "bulk"]
    margin = 256 + 2 * max(bulk_w, default=0)
    starts = sum(g.workload.outstanding for g in spec.guests if g.workload.kind == "request_response")
    starts += sum(len(g.workload.steps) for g in spec.guests) + sum(bulk_w) + 16 * nten
    cap = _pow2(CAP_SLACK * margin + 2 * starts)

    terms = cost_terms(spec)
    hopf = [float(terms[h.cost][1]) for h in topo.hops]
    hop_rows = [[h.gate, h.napi, h.direction, h.consumer, h.capacity, int(h.virtual_irq), terms[h.cost][0],
                 int(terms[h.cost][2]), h.then, h.sender, h.sender_ns] for h in topo.hops]  # fmt: skip
    ten = np.zeros((nten, L.NT), dtype=_I64)
    tenf = np.zeros((nten, L.NTF))
    steps_t, steps_rate, tr_t, tr_size, tr_dir = [], [], [], [], []
    for i, g in enumerate(spec.guests):
        w = g.workload
        r = ten[i]
        r[L.T_KIND] = KIND[w.kind]
        r[L.T_DIR] = 0 if w.direction == "rx" else 1
        wire = topo.tenants[i]
        r[L.T_QUEUE], r[L.T_BCPU], r[L.T_APPCPU] = wire.queue, wire.backend_cpu, wire.app_cpu
        r[L.T_FERX], r[L.T_FETX] = wire.rx_hop, wire.tx_hop
        r[L.T_OUTSTANDING] = w.outstanding
        r[L.T_REQ_BYTES] = round(w.mean_of("request_bytes"))
        r[L.T_RESP_BYTES] = round(w.mean_of("response_bytes"))
        r[L.T_APP_NS] = round(w.mean_of("app_us") * 1000)
        r[L.T_WINDOW] = w.window_pkts
        r[L.T_PKT_BYTES] = round(w.mean_of("packet_bytes"))
        r[L.T_ACK_EVERY] = w.ack_every
        r[L.T_ACK_BYTES] = w.ack_bytes
        r[L.T_RTO_NS] = int(w.rto_us * 1000)
        r[L.T_GAP_NS] = round(w.packet_bytes * 8 / w.pace_gbps) if w.pace_gbps > 0 else 0
        r[L.T_STEP_OFF], r[L.T_STEP_N] = len(steps_t), len(w.steps)
        steps_t += [int(at_s * 1e9) for at_s, _ in w.steps]
        steps_rate += [float(rate) for _, rate in w.steps]
        rows = w.trace_rows if w.kind == "trace" else ()
        r[L.T_TR_OFF], r[L.T_TR_N] = len(tr_t), len(rows)
        tr_t += [round(ts_us * 1000) for ts_us, _, _ in rows]
        tr_size += [size for _, size, _ in rows]
        tr_dir += [0 if direction == "rx" else 1 for _, _, direction in rows]
        r[L.T_ONOFF] = int(w.bursty())
        r[L.T_START_NS] = round(w.burst_start_us * 1000)
        think = 0.0 if w.dists().get("think_us") else w.think_us
        r[L.T_THINK] = int(think > 0)
        tenf[i] = (w.rate_pps, think * 1000, w.mean_of("on_us") * 1000, w.mean_of("off_us") * 1000)
        r[list(DV_COL.values())] = -1
    for row, (i, field, _) in enumerate(feeder.dv):
        ten[i, DV_COL[field]] = row

    nsite = len(topo.sites)
    ncpu = len(topo.cpus)
    shapes = {
        "g": (L.NG, 1), "heap": (cap, L.NE), "slot": (ncpu, L.NSL), "cpu": (ncpu, L.NC), "job": (cap, L.NJ), "pkt": (cap, L.NP),
        "hop": (len(hop_rows), L.NH), "sp": (nsite, L.NS), "ctr": (2 * nsite, L.NX), "sitecpu": (nsite, 1),
        "ten": (nten, L.NT), "nicq": (spec.nic.queues, L.NQ), "steps_t": (len(steps_t), 1),
        "tr_t": (len(tr_t), 1), "tr_size": (len(tr_t), 1), "tr_dir": (len(tr_t), 1),
        "hcount": (4 * nten, L.NBUCKETS), "hstat": (4 * nten, 4), "deliv": (max(MIN_CAP, CAP_SLACK * margin), 3),
        "trace": (trace_rows, L.NTR),
        "gf": (L.NGF, 1), "hopf": (len(hopf), 1), "tenf": (nten, L.NTF), "steps_rate": (len(steps_t), 1),
        "svc": (DRAW_LEN if feeder.svc is not None else 0, 1),
        "irq": (DRAW_LEN if feeder.irq is not None else 0, 1),
        "wl": (nten, feeder.wl_len), "dvpos": (len(feeder.dv), 1), "dv": (len(feeder.dv), DV_LEN),
    }  # fmt: skip
    a = Arena(shapes)
    m = a.m
    m[L.END_NS] = end_ns
    m[L.ONE_LAYER] = int(topo.one_layer)
    m[L.SEND_COST] = ns(c.frontend_pkt_us) + ns(c.stack_pkt_us)
    m[L.CTX_NS] = ns(c.ctx_switch_us)
    m[L.POLL_NS] = ns(c.poll_us)
    m[L.IRQ_NS] = ns(c.irq_us)
    m[L.VIRQ_NS] = ns(c.virq_us)
    m[L.IRQ_EXP] = int(c.irq_dist == "exp")
    m[L.SVC_EXP] = int(terms["netback_rx"][2])
    m[L.TX_RING] = spec.nic.tx_ring
    m[L.TXQLEN] = spec.nic.txqueuelen
    m[L.MARGIN] = margin
    m[L.NB_FIX] = terms["netback_rx"][0]
    m[L.NTEN] = nten
    m[L.AUDIT] = int(audit)
    a.x[L.SER_PS] = 8000.0 / spec.host.link_gbps  # picoseconds per byte on the link
    a.x[L.NB_BYTE] = terms["netback_rx"][1]
    m[L.PFREE] = m[L.JFREE] = 0
    _chain(a.view("pkt"), 0, cap, L.P_NEXT, -1)
    _chain(a.view("job"), 0, cap, L.J_NEXT, -1)
    m[L.NCPU] = ncpu
    a.view("slot")[:, :2] = L.NEVER
    cpu = a.view("cpu")
    cpu[:, L.C_RUN_JOB] = cpu[:, L.C_RUN_CLS] = -1
    cpu[:, L.C_QH : L.C_QH + 3] = -1
    cpu[:, L.C_QT : L.C_QT + 3] = -1
    hop = a.view("hop")  # the wiring, then the state: an empty ring, armed, never fired, the rest 0
    if hop_rows:
        hop[:, : L.HP_RHEAD] = np.array(hop_rows, dtype=_I64)
    hop[:, L.HP_RHEAD] = hop[:, L.HP_RTAIL] = -1
    hop[:, L.HP_STATE] = L.ARMED
    hop[:, L.HP_LAST_FIRE] = NEVER_FIRED_NS
    a.view("hopf")[:, 0] = hopf
    a.view("ten")[:] = ten
    a.view("tenf")[:] = tenf
    nicq = a.view("nicq")
    nicq[:, [L.Q_RX_HOP, L.Q_TXC_HOP]] = topo.queues
    nicq[:, L.Q_QD_HEAD] = nicq[:, L.Q_QD_TAIL] = -1
    for name, vals in (("steps_t", steps_t), ("steps_rate", steps_rate), ("tr_t", tr_t), ("tr_size", tr_size),
                       ("tr_dir", tr_dir)):
        a.view(name)[:, 0] = vals
    for src, buf, _, _ in feeder.buffers(a):
        buf[:] = src.take(buf.shape[0])
    write_params(a, spec.site_params().values())
    return a
