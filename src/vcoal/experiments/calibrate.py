"""Calibrating the simulator's cost model against the real-kernel testbed.

Three steps, each usable alone (``vcoal calibrate measure|fit|report``):

* ``calibrate_measure.measure`` runs a grid of NAPI deferral settings (``gro_flush_timeout`` x
  ``napi_defer_hard_irqs`` per layer hop: ``nic`` = peth0, ``backend`` = vifN.0, ``frontend`` =
  geth0, and all three at once) on the testbed with the spec's one request-response tenant (UDP
  sockperf ping-pong), in short interleaved repetitions (every repetition runs every point once in
  a shuffled order, each on a fresh topology, as ``examples/testbed/grid.py`` does), and keeps the
  per-run rows and per-point medians as a JSON document (:data:`GRID_FORMAT`).
* :func:`simulate` runs the same grid in the simulator: the same spec with the same knob settings as
  scenario overrides (the static policy "keep the scenario's settings"), one guest, outstanding 1.
* :func:`fit` searches a few cost parameters (log-space coordinate search, no scipy) minimising the
  mean absolute log error of the median round trip and of the NET_RX softirq rate, where the
  simulator's counters map to host NET_RX softirqs as ``a * interrupts/s + b * polls/s`` (all sites,
  both directions; ``a, b >= 0`` fitted by least squares for every candidate cost vector).

Why a linear map for NET_RX: the host counts a NET_RX softirq per ``raise`` (a hard interrupt, the
deferral hrtimer, or a ``veth_xmit`` from process context); NAPIs scheduled while one softirq is
running (the next veth hop, the bridge path) run in the same invocation and are not counted again.
The simulator counts every gate notification as an interrupt and every NAPI poll (including
timer-driven and empty ones) as a poll, per site, so the host count is a fraction of interrupts
plus a fraction of (timer-driven) polls.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vcoal.spec import CostSpec, ScenarioSpec, parse_scenario

GRID_FORMAT = "vcoal-calibration-grid/1"
LAYERS = ("nic", "backend", "frontend")
DEFAULT_FIT = ("nic_pkt_us", "stack_pkt_us", "ctx_switch_us", "poll_us")
COST_FIELDS = tuple(k for k, f in CostSpec.model_fields.items() if f.annotation is float)
# Not a simulator cost: a calibration-only parameter that lengthens every active gro_flush_timeout
# (defer >= 1) by this many µs in the simulated grid -- the late expiry of the deferral hrtimer on
# the VM (timer interrupt injection). Stored in the cost file's [calibration] table; the simulator
# does not read it (a scenario would add it to its timeouts).
TIMER_EXTRA = "timer_extra_us"


@dataclass(frozen=True)
class GridPoint:
    """One knob setting: layer -> (gro_flush_timeout µs, napi_defer_hard_irqs)."""

    name: str
    knobs: dict[str, tuple[int, int]] = field(default_factory=dict)

    def overrides(self, timer_extra_us: float = 0.0) -> dict[str, Any]:
        """Scenario overrides; ``timer_extra_us`` lengthens every active deferral timer (see
        :data:`TIMER_EXTRA`)."""
        out: dict[str, Any] = {}
        for layer, (gft_us, defer) in self.knobs.items():
            extra = timer_extra_us if gft_us > 0 and defer > 0 else 0.0
            out[f"{layer}.coalesce.gro_flush_timeout_ns"] = round((gft_us + extra) * 1000)
            out[f"{layer}.coalesce.napi_defer_hard_irqs"] = int(defer)
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "knobs": {k: list(v) for k, v in self.knobs.items()}}


def point_name(knobs: dict[str, tuple[int, int]]) -> str:
    if not knobs:
        return "none"
    vals = set(knobs.values())
    if set(knobs) == set(LAYERS) and len(vals) == 1:
        gft, defer = next(iter(vals))
        return f"all3 {gft}us/{defer}"
    return " ".join(f"{layer} {g}us/{d}" for layer, (g, d) in knobs.items())


def default_grid(timeouts: Sequence[int] = (20, 50, 100, 200), defers: Sequence[int] = (2,)) -> list[GridPoint]:
    """none; every layer alone at every timeout x defer; nic 200 µs with defer 0 (no effect
    expected); all three layers at 50 and 200 µs / 2 (compounding)."""
    pts = [GridPoint("none", {})]
    for layer in LAYERS:
        for t in timeouts:
            for d in defers:
                pts.append(GridPoint(point_name({layer: (t, d)}), {layer: (t, d)}))
    pts.append(GridPoint(point_name({"nic": (200, 0)}), {"nic": (200, 0)}))
    for t in (50, 200):
        k = {layer: (t, 2) for layer in LAYERS}
        pts.append(GridPoint(point_name(k), k))
    return pts


def parse_point(text: str) -> GridPoint:
    """``none``, ``all3:50/2`` or ``nic:50/2[,frontend:20/2...]`` -> GridPoint (one line on error)."""
    text = text.strip()
    if text == "none":
        return GridPoint("none", {})
    knobs: dict[str, tuple[int, int]] = {}
    for part in text.split(","):
        layer, sep, val = part.partition(":")
        gft, sep2, defer = val.partition("/")
        layer = layer.strip()
        if not sep or not sep2 or layer not in (*LAYERS, "all3"):
            raise ValueError(f"--point {part!r}: expected LAYER:TIMEOUT_US/DEFER with LAYER in nic, backend, frontend, all3")
        try:
            g, d = int(gft), int(defer)
        except ValueError:
            raise ValueError(f"--point {part!r}: TIMEOUT_US and DEFER must be integers") from None
        if not 0 <= g <= 100_000 or not 0 <= d <= 1000:
            raise ValueError(f"--point {part!r}: TIMEOUT_US in [0, 100000], DEFER in [0, 1000]")
        for la in LAYERS if layer == "all3" else (layer,):
            knobs[la] = (g, d)
    return GridPoint(point_name(knobs), knobs)


def check_spec(spec: ScenarioSpec) -> None:
    """The calibration topology: one guest, a request_response tenant with one request in flight."""
    if len(spec.guests) != 1:
        raise ValueError(f"spec: guests: calibration needs exactly one guest, got {len(spec.guests)}")
    w = spec.guests[0].workload
    if w.kind != "request_response" or w.outstanding != 1 or w.mean_of("think_us") > 0:
        raise ValueError("spec: guests[0].workload: calibration needs kind='request_response', outstanding=1, think_us=0")


# --- grid documents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    spec: ScenarioSpec
    points: tuple[GridPoint, ...]
    p50_us: tuple[float, ...]
    p99_us: tuple[float | None, ...]
    net_rx_per_s: tuple[float, ...]
    doc: dict


def load_grid(doc: Any, source: str = "grid") -> Grid:
    """Validate a grid document; ValueError with one line naming the field."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: expected a JSON object")
    if doc.get("format") != GRID_FORMAT:
        raise ValueError(f"{source}: format: expected {GRID_FORMAT!r}, got {doc.get('format')!r}")
    if not isinstance(doc.get("spec"), dict):
        raise ValueError(f"{source}: spec: expected the scenario as an object")
    spec = parse_scenario(dict(doc["spec"]), f"{source}: spec")
    check_spec(spec)
    raw = doc.get("points")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{source}: points: expected a non-empty list")
    pts, p50, p99, nrx = [], [], [], []
    for i, p in enumerate(raw):
        where = f"{source}: points[{i}]"
        if not isinstance(p, dict):
            raise ValueError(f"{where}: expected an object")
        knobs = p.get("knobs", {})
        if not isinstance(knobs, dict):
            raise ValueError(f"{where}.knobs: expected an object layer -> [timeout_us, defer]")
        kk: dict[str, tuple[int, int]] = {}
        for layer, v in knobs.items():
            if layer not in LAYERS:
                raise ValueError(f"{where}.knobs.{layer}: unknown layer (nic, backend, frontend)")
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= 0 for x in v)):
                raise ValueError(f"{where}.knobs.{layer}: expected [timeout_us, defer], non-negative integers")
            kk[layer] = (v[0], v[1])
        for key, dest in (("p50_us", p50), ("net_rx_per_s", nrx)):
            val = p.get(key)
            if not isinstance(val, int | float) or isinstance(val, bool) or not math.isfinite(val) or val <= 0:
                raise ValueError(f"{where}.{key}: expected a positive number, got {val!r}")
            dest.append(float(val))
        p99v = p.get("p99_us")
        p99.append(float(p99v) if isinstance(p99v, int | float) else None)
        pts.append(GridPoint(str(p.get("name") or point_name(kk)), kk))
    return Grid(spec, tuple(pts), tuple(p50), tuple(p99), tuple(nrx), doc)


# --- simulation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimPoint:
    p50_us: float
    p99_us: float
    tps: float
    interrupts_per_s: float
    polls_per_s: float


def simulate_point(spec: ScenarioSpec, point: GridPoint, cost: dict[str, Any], duration_s: float = 0.03) -> SimPoint:
    """Simulate one grid point; ``cost`` (CostSpec fields) may carry :data:`TIMER_EXTRA` too."""
    from vcoal.sim import run_scenario

    extra = float(cost.get(TIMER_EXTRA, 0.0))
    s = spec.with_overrides({
        **{f"cost.{k}": v for k, v in cost.items() if k != TIMER_EXTRA},
        "duration_s": duration_s, "warmup_s": duration_s / 6, **point.overrides(extra),
    })
    r = run_scenario(s, None)
    t = r.tenants[0]
    m = r.measured_s
    ints = sum(getattr(site, d).interrupts for site in r.sites for d in ("rx", "tx")) / m
    polls = sum(getattr(site, d).polls for site in r.sites for d in ("rx", "tx")) / m
    return SimPoint(t.rtt_us["p50"], t.rtt_us["p99"], t.throughput_pps, ints, polls)


def simulate(spec: ScenarioSpec, points: Iterable[GridPoint], cost: dict[str, float], duration_s: float = 0.03) -> list[SimPoint]:
    return [simulate_point(spec, p, cost, duration_s) for p in points]


def net_rx_map(sims: Sequence[SimPoint], measured: Sequence[float]) -> tuple[float, float]:
    """Non-negative (a, b) minimising the relative error of a*interrupts/s + b*polls/s vs NET_RX/s
    (least squares on rows scaled by 1/measured, both coefficients >= 0)."""
    import numpy as np

    x = np.array([[s.interrupts_per_s, s.polls_per_s] for s in sims], dtype=float)
    y = np.array(measured, dtype=float)
    xs, ones = x / y[:, None], np.ones(len(y))
    best, best_err = (0.0, 0.0), math.inf
    cands = []
    sol, *_ = np.linalg.lstsq(xs, ones, rcond=None)
    cands.append((float(sol[0]), float(sol[1])))
    for j in range(2):
        col = xs[:, j]
        den = float(col @ col)
        c = float(col @ ones) / den if den > 0 else 0.0
        cands.append((c, 0.0) if j == 0 else (0.0, c))
    for a, b in cands:
        if a < 0 or b < 0:
            continue
        err = float(np.sum((xs @ np.array([a, b]) - ones) ** 2))
        if err < best_err:
            best, best_err = (a, b), err
    return best


@dataclass
class Fidelity:
    name: str
    meas_p50: float
    sim_p50: float
    meas_p99: float | None
    sim_p99: float
    meas_net_rx: float
    sim_net_rx: float

    @property
    def err_p50(self) -> float:
        return self.sim_p50 / self.meas_p50 - 1

    @property
    def err_net_rx(self) -> float:
        return self.sim_net_rx / self.meas_net_rx - 1


def fidelity(grid: Grid, cost: dict[str, float], mapping: tuple[float, float] | None = None, duration_s: float = 0.03) -> tuple[list[Fidelity], tuple[float, float]]:
    sims = simulate(grid.spec, grid.points, cost, duration_s)
    if mapping is None:
        mapping = net_rx_map(sims, grid.net_rx_per_s)
    a, b = mapping
    rows = [
        Fidelity(p.name, m50, s.p50_us, m99, s.p99_us, mrx, a * s.interrupts_per_s + b * s.polls_per_s)
        for p, s, m50, m99, mrx in zip(grid.points, sims, grid.p50_us, grid.p99_us, grid.net_rx_per_s, strict=True)
    ]
    return rows, mapping


def objective(rows: Sequence[Fidelity], w_net_rx: float = 1.0) -> float:
    """Mean absolute log error of the median RTT plus ``w_net_rx`` times that of NET_RX/s."""
    lat = sum(abs(math.log(r.sim_p50 / r.meas_p50)) for r in rows) / len(rows)
    nrx = sum(abs(math.log(max(r.sim_net_rx, 1e-9) / r.meas_net_rx)) for r in rows) / len(rows)
    return lat + w_net_rx * nrx


@dataclass
class FitResult:
    cost: dict[str, float]
    mapping: tuple[float, float]
    rows: list[Fidelity]
    objective: float
    evaluations: int
    fitted: tuple[str, ...]


def fit(
    grid: Grid,
    params: Sequence[str] = DEFAULT_FIT,
    start: dict[str, float] | None = None,
    w_net_rx: float = 1.0,
    rounds: int = 6,
    duration_s: float = 0.03,
    log: Callable[[str], None] | None = None,
    nm_evals: int = 150,
) -> FitResult:
    """Log-space coordinate search over ``params`` (others stay at the spec's costs / ``start``).

    Each round tries every parameter multiplied by each of a few factors (shrinking per round:
    x4, x2, x1.4, x1.2, x1.1, x1.05), keeps any improvement; bounds are CostSpec's (0 excluded:
    a parameter never goes below 0.01 µs). The NET_RX map (a, b) is re-fitted per candidate.
    """
    for p in params:
        if p not in (*COST_FIELDS, TIMER_EXTRA):
            raise ValueError(f"--params: {p}: not a cost parameter (one of {', '.join(COST_FIELDS)}, {TIMER_EXTRA})")
    if len(set(params)) != len(params):
        raise ValueError("--params: a parameter is named twice")
    base = {**grid.spec.cost.model_dump(), TIMER_EXTRA: 5.0}
    cost = {p: float((start or {}).get(p, base[p])) for p in params}
    cost = {p: max(v, 0.01) for p, v in cost.items()}
    hi = {p: next((m.le for m in CostSpec.model_fields[p].metadata if hasattr(m, "le")), 1000.0)
          if p in COST_FIELDS else 1000.0 for p in params}
    evals = 0
    cache: dict[tuple, tuple[float, list[Fidelity], tuple[float, float]]] = {}

    def score(c: dict[str, float]):
        nonlocal evals
        key = tuple(round(c[p], 6) for p in params)
        if key not in cache:
            evals += 1
            rows, mapping = fidelity(grid, c, None, duration_s)
            cache[key] = (objective(rows, w_net_rx), rows, mapping)
        return cache[key]

    best = score(cost)
    # Nelder-Mead in log space first (moves along coupled valleys, e.g. a per-packet cost traded
    # against the timer extra), then the coordinate search polishes within the bounds.
    lo_log = {p: math.log(0.01) for p in params}
    hi_log = {p: math.log(hi[p]) for p in params}

    def from_log(x: Sequence[float]) -> dict[str, float]:
        return {p: math.exp(min(max(v, lo_log[p]), hi_log[p])) for p, v in zip(params, x, strict=True)}

    x0 = [math.log(cost[p]) for p in params]
    xbest = nelder_mead(lambda x: score(from_log(x))[0], x0, step=math.log(2.0), max_evals=nm_evals)
    cand = from_log(xbest)
    if score(cand)[0] < best[0]:
        cost, best = cand, score(cand)
    factors = (4.0, 2.0, 1.4, 1.2, 1.1, 1.05)
    for rnd in range(rounds):
        f = factors[min(rnd, len(factors) - 1)]
        improved = True
        while improved:
            improved = False
            for p in params:
                for mult in (f, 1 / f):
                    cand = dict(cost)
                    cand[p] = min(max(cost[p] * mult, 0.01), hi[p])
                    sc = score(cand)
                    if sc[0] < best[0] - 1e-9:
                        cost, best, improved = cand, sc, True
                        break
        if log:
            log(f"round {rnd} (x{f}): objective {best[0]:.4f} " + " ".join(f"{p}={cost[p]:.3g}" for p in params))
    return FitResult(cost, best[2], best[1], best[0], evals, tuple(params))


def nelder_mead(f: Callable[[Sequence[float]], float], x0: Sequence[float], step: float = 0.5,
                max_evals: int = 200, tol: float = 1e-6) -> list[float]:
    """Minimise ``f`` from ``x0`` (standard reflection/expansion/contraction/shrink coefficients)."""
    n = len(x0)
    simplex = [list(x0)] + [[x0[j] + (step if j == i else 0.0) for j in range(n)] for i in range(n)]
    vals = [f(x) for x in simplex]
    evals = n + 1
    while evals < max_evals:
        order = sorted(range(n + 1), key=vals.__getitem__)
        simplex, vals = [simplex[i] for i in order], [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) <= tol * (abs(vals[0]) + tol):
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]
        xr = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = f(xr)
        evals += 1
        if fr < vals[0]:
            xe = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = f(xe)
            evals += 1
            simplex[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = xr, fr
        else:
            xc = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = f(xc)
            evals += 1
            if fc < vals[-1]:
                simplex[-1], vals[-1] = xc, fc
            else:
                simplex = [simplex[0]] + [[b + 0.5 * (x - b) for x, b in zip(xi, simplex[0], strict=True)] for xi in simplex[1:]]
                vals = [vals[0]] + [f(x) for x in simplex[1:]]
                evals += n
    return simplex[min(range(n + 1), key=vals.__getitem__)]


# --- cost files -----------------------------------------------------------------------------------


def cost_toml(result: FitResult, grid: Grid, source: str = "") -> str:
    """The fitted cost-model file: ``[cost]`` (the fitted keys; the rest stay at the simulator's
    defaults) and ``[calibration]`` (provenance and the NET_RX map, ignored by the simulator)."""
    lines = [
        "# vcoal cost-model file, written by `vcoal calibrate fit`; load with `vcoal sim SPEC --cost FILE`",
        "# or `cost_file = \"FILE\"` in a scenario. Only the fitted keys are set; others keep their defaults.",
        "[cost]",
    ]
    lines += [f"{k} = {v:.4g}" for k, v in result.cost.items() if k != TIMER_EXTRA]
    errs50 = [abs(r.err_p50) for r in result.rows]
    errsrx = [abs(r.err_net_rx) for r in result.rows]
    lines += [
        "",
        "[calibration]",
        f"grid = {json.dumps(source)}",  # a JSON string or array of strings is a TOML one
        f"measured = {json.dumps(str(grid.doc.get('created', '')))}",
        f"points = {len(result.rows)}",
        f"fitted = {json.dumps(list(result.fitted))}",
        "# host NET_RX softirqs/s ~= net_rx_per_interrupt * sim interrupts/s + net_rx_per_poll * sim polls/s",
        f"net_rx_per_interrupt = {result.mapping[0]:.4g}",
        f"net_rx_per_poll = {result.mapping[1]:.4g}",
    ]
    if TIMER_EXTRA in result.cost:
        lines += [
            "# calibration only: the grid was simulated with every active gro_flush_timeout lengthened by this",
            f"{TIMER_EXTRA} = {result.cost[TIMER_EXTRA]:.4g}",
        ]
    lines += [
        f"objective = {result.objective:.4g}",
        f"median_abs_err_p50 = {statistics.median(errs50):.4g}",
        f"max_abs_err_p50 = {max(errs50):.4g}",
        f"median_abs_err_net_rx = {statistics.median(errsrx):.4g}",
        f"max_abs_err_net_rx = {max(errsrx):.4g}",
    ]
    return "\n".join(lines) + "\n"


def read_cost_model(path) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """A cost file's [cost] table (every key it sets, distributions included, as ``vcoal sim
    --cost`` applies them) and, when present, its NET_RX map from [calibration]."""
    from vcoal.spec.scenario import read_cost_doc

    table, cal = read_cost_doc(path, "--cost")
    mapping = None
    out: dict[str, Any] = dict(table)
    if TIMER_EXTRA in cal:
        v = cal[TIMER_EXTRA]
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 1000:
            raise ValueError(f"--cost: {path}: calibration.{TIMER_EXTRA}: expected a number in [0, 1000]")
        out[TIMER_EXTRA] = float(v)
    if "net_rx_per_interrupt" in cal and "net_rx_per_poll" in cal:
        a, b = cal["net_rx_per_interrupt"], cal["net_rx_per_poll"]
        if not all(isinstance(x, int | float) and x >= 0 for x in (a, b)):
            raise ValueError(f"--cost: {path}: calibration.net_rx_per_interrupt/net_rx_per_poll: expected numbers >= 0")
        mapping = (float(a), float(b))
    return out, mapping


def fidelity_table(rows: Sequence[Fidelity], limit: float = 0.2) -> str:
    """Markdown table of simulated vs measured median RTT and NET_RX/s with relative errors."""
    out = [
        "| point | measured p50 µs | simulated p50 µs | error | measured p99 µs | measured NET_RX/s | simulated NET_RX/s | error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p99 = f"{r.meas_p99:.0f}" if r.meas_p99 is not None else "-"
        out.append(
            f"| {r.name} | {r.meas_p50:.1f} | {r.sim_p50:.1f} | {r.err_p50:+.0%} | {p99} | "
            f"{r.meas_net_rx:.0f} | {r.sim_net_rx:.0f} | {r.err_net_rx:+.0%} |"
        )
    n50 = sum(abs(r.err_p50) <= limit for r in rows)
    nrx = sum(abs(r.err_net_rx) <= limit for r in rows)
    out.append("")
    out.append(
        f"within {limit:.0%}: median RTT {n50}/{len(rows)} points, NET_RX/s {nrx}/{len(rows)} points; "
        f"median |error| p50 {statistics.median(abs(r.err_p50) for r in rows):.1%}, "
        f"NET_RX {statistics.median(abs(r.err_net_rx) for r in rows):.1%}"
    )
    return "\n".join(out)


def synthetic_grid(spec: ScenarioSpec, points: Sequence[GridPoint], cost: dict[str, float],
                   mapping: tuple[float, float] = (0.5, 0.25), duration_s: float = 0.03) -> dict:
    """A grid document "measured" by the simulator itself with known costs and NET_RX map (tests,
    checks of identifiability)."""
    sims = simulate(spec, points, cost, duration_s)
    a, b = mapping
    return {
        "format": GRID_FORMAT,
        "created": "synthetic",
        "spec": spec.model_dump(mode="json"),
        "reps": 1,
        "measure_s": duration_s,
        "host": {},
        "points": [
            {**p.to_json(), "p50_us": s.p50_us, "p99_us": s.p99_us, "tps": s.tps,
             "net_rx_per_s": a * s.interrupts_per_s + b * s.polls_per_s, "runs": []}
            for p, s in zip(points, sims, strict=True)
        ],
    }
