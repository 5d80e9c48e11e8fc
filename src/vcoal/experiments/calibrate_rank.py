"""Does the simulator rank static settings like the kernel? (``vcoal calibrate rank``)

Input: the JSON of ``vcoal testbed compare ... --oracle --json FILE``: per configuration the
measured NET_RX softirqs per delivered packet (median [min..max] over interleaved reps). Every
``off`` row and every static grid row is simulated on the same scenario with the same settings
(the ``static`` policy's per-site tables are the simulator's site names too), and the simulated
count that the kernel's NET_RX stands for is ``meta.softirq_runs`` (softirq runs: one run drains
every NAPI scheduled on its CPU; see docs/simulator.md, host profiles) per delivered packet.

Figures: Spearman's rank correlation (average ranks for ties) between measured and simulated
per-packet counts, and the share of points whose simulated count, times a scale ``k``, is within
``TOLERANCE`` of the measured one. ``k`` is 1 (raw) or fitted on *another* measurement run
(``fit_scale``: the geometric mean of measured / simulated), so the figures are a prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcoal.spec import ScenarioSpec

TOLERANCE = 0.30
#: simulated seconds per point (after the spec's warm-up share); the grid's loads are periodic
#: within a few ms, so 0.5 s gives thousands of softirq runs per point
DEFAULT_SIM_S = 0.5
WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class Point:
    """One measured configuration: its label, policy and parameters, measured NET_RX per packet."""

    label: str
    policy: str
    params: dict
    measured: float
    measured_min: float
    measured_max: float


@dataclass(frozen=True)
class Ranked:
    """A point with its simulated softirq runs per packet."""

    point: Point
    simulated: float


def load_points(doc: Any, source: str, scenario: str | None = None) -> list[Point]:
    """The ``off`` and static grid rows of a ``testbed compare`` JSON document (one scenario).

    Raises ValueError naming ``source`` and the field on a document of another shape, or when
    it holds several scenarios and ``scenario`` does not pick one.
    """
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{source}: not a 'vcoal testbed compare --json' file (no non-empty 'rows' list)")
    names = sorted({r.get("scenario") for r in rows if isinstance(r, dict)} - {None})
    if scenario is None:
        if len(names) != 1:
            raise ValueError(f"{source}: rows of {len(names)} scenarios ({', '.join(map(str, names))}); pick one with --scenario")
        scenario = names[0]
    elif scenario not in names:
        raise ValueError(f"{source}: no rows of scenario {scenario!r} (it has {', '.join(map(str, names))})")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or r.get("scenario") != scenario:
            continue
        if not (r.get("policy") == "off" or (r.get("policy") == "static" and r.get("grid"))):
            continue
        m = r.get("net_rx_per_packet")
        if not isinstance(m, dict) or not all(isinstance(m.get(k), int | float) for k in ("median", "min", "max")):
            raise ValueError(f"{source}: rows[{i}].net_rx_per_packet: expected {{median, min, max}} numbers")
        if not (math.isfinite(m["median"]) and m["median"] > 0):
            raise ValueError(f"{source}: rows[{i}].net_rx_per_packet.median: {m['median']} is not a positive number")
        params = r.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"{source}: rows[{i}].params: expected a table")
        out.append(Point(str(r.get("label", r["policy"])), r["policy"], params, float(m["median"]),
                         float(m["min"]), float(m["max"])))
    if len(out) < 3:
        raise ValueError(f"{source}: {len(out)} off/grid rows of {scenario!r}; ranking needs at least 3 "
                         f"(run 'vcoal testbed compare ... --oracle')")
    return out


def softirq_runs_per_packet(result) -> float:
    """Simulated softirq runs per delivered packet of a TrialResult (``meta.softirq_runs``)."""
    runs = result.meta.get("softirq_runs")
    if runs is None:
        raise ValueError("the simulator result has no meta.softirq_runs")
    delivered = sum(t.delivered for t in result.tenants)
    return runs / delivered if delivered else math.nan


def simulate_points(spec: ScenarioSpec, points: Sequence[Point], duration_s: float = DEFAULT_SIM_S,
                    progress: Callable[[int, int], None] | None = None) -> list[Ranked]:
    """Simulate every point on ``spec`` (its settings through the ``static`` policy)."""
    from vcoal.policies import make_policy
    from vcoal.sim import run_scenario

    spec = spec.with_overrides({"duration_s": duration_s, "warmup_s": duration_s * WARMUP_SHARE})
    out = []
    for i, p in enumerate(points):
        policy = make_policy("static", p.params) if p.policy == "static" else None
        out.append(Ranked(p, softirq_runs_per_packet(run_scenario(spec, policy))))
        if progress is not None:
            progress(i + 1, len(points))
    return out


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for x in np.unique(v):
        tie = v == x
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def fit_scale(ranked: Sequence[Ranked]) -> float:
    """The scale ``k`` (measured NET_RX per simulated softirq run): geometric mean of the ratios."""
    logs = [math.log(r.point.measured / r.simulated) for r in ranked if r.simulated > 0]
    if not logs:
        raise ValueError("no point with a positive simulated count to fit a scale on")
    return math.exp(sum(logs) / len(logs))


@dataclass(frozen=True)
class Fidelity:
    """The ranking figures of one measured run against the simulator."""

    rows: list[Ranked]
    scale: float
    spearman: float
    within: int

    @property
    def within_share(self) -> float:
        """Share of points within ``TOLERANCE`` after scaling."""
        return self.within / len(self.rows) if self.rows else math.nan


def fidelity(ranked: Sequence[Ranked], scale: float = 1.0) -> Fidelity:
    """Spearman and the points within ``TOLERANCE`` of the measured count at ``scale``."""
    rows = list(ranked)
    rho = spearman([r.point.measured for r in rows], [r.simulated for r in rows])
    within = sum(1 for r in rows if abs(scale * r.simulated / r.point.measured - 1.0) <= TOLERANCE)
    return Fidelity(rows, scale, rho, within)


def fidelity_table(f: Fidelity) -> str:
    """A plain-text table of measured vs simulated per point, and the figures."""
    lines = [f"{'configuration':34} {'kernel NET_RX/pkt':>26} {'sim runs/pkt':>12} {'x k':>7} {'error':>7}"]
    for r in sorted(f.rows, key=lambda r: r.point.measured):
        p = r.point
        err = f.scale * r.simulated / p.measured - 1.0
        mark = "" if abs(err) <= TOLERANCE else "  <- outside"
        lines.append(f"{p.label:34} {p.measured:8.3f} [{p.measured_min:.3f}..{p.measured_max:.3f}] "
                     f"{r.simulated:12.3f} {f.scale * r.simulated:7.3f} {err:+7.0%}{mark}")
    lines.append(f"Spearman {f.spearman:.3f}; within ±{TOLERANCE:.0%}: {f.within}/{len(f.rows)} "
                 f"({f.within_share:.0%}) at k = {f.scale:.3g}")
    return "\n".join(lines)


def to_json(f: Fidelity) -> dict[str, Any]:
    """The figures and rows as a JSON-ready dict."""
    return {"spearman": f.spearman, "scale": f.scale, "within": f.within, "points": len(f.rows),
            "tolerance": TOLERANCE,
            "rows": [{"label": r.point.label, "params": r.point.params, "measured_net_rx_per_packet": r.point.measured,
                      "measured_min": r.point.measured_min, "measured_max": r.point.measured_max,
                      "simulated_softirq_runs_per_packet": r.simulated} for r in f.rows]}
