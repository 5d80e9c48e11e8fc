"""The static oracle's search space: a uniform grid, then per-site coordinate descent.

The uniform grid (``oracle_grid``) gives every NIC queue one value, every backend one and every
frontend one. On a host with several NIC queues or several tenant paths that is not a lower bound
for a per-queue controller, so ``descend`` refines the best uniform point one *coordinate* (one
site: ``nic:qN`` of a queue that carries traffic, ``backend:G``, ``frontend:G``) at a time: it tries
the grid's values of that site's layer for that site only, keeps the cheapest candidate when it
meets every SLO and lowers CPU per packet, and repeats passes until one changes nothing or
``DESCENT_PASSES`` is reached. Every point it returns was simulated, so it is a true feasible point.
Run count: ``len(search_grid(spec)) + passes * sum(len(values) - 1)`` at most (``descent_bound``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vcoal.spec import ScenarioSpec

# Static grid of the oracle: NIC rx (usecs, frames), backend->frontend virtual interrupt usecs,
# software NAPI deferral (defer_hard_irqs, gro_flush_timeout_ns) on backend and frontend.
NIC_GRID = ((0, 1), (8, 32), (32, 64), (64, 64), (128, 128))
VIRQ_GRID = (0, 16, 64)
DEFER_GRID = ((0, 0), (2, 20_000), (2, 100_000))
DESCENT_PASSES = 2
"""Most passes of the coordinate descent over every coordinate."""

Setting = dict[str, dict]
"""Coalescing table per site name (``"nic:q0"`` -> ethtool names): one point of the search."""


def oracle_grid() -> list[dict[str, dict]]:
    """Static-policy parameter tables (one per layer) of the oracle's uniform grid."""
    grid = []
    for (nu, nf), vu, (dh, gro) in itertools.product(NIC_GRID, VIRQ_GRID, DEFER_GRID):
        napi = {"napi_defer_hard_irqs": dh, "gro_flush_timeout_ns": gro}
        grid.append({
            "nic": {"rx_usecs": nu, "rx_frames": nf, "tx_usecs": 64, "tx_frames": 64},
            "backend": {"rx_usecs": vu, "rx_frames": 64 if vu else 1, **napi},
            "frontend": napi,
        })
    return grid


def search_grid(spec: ScenarioSpec) -> list[dict[str, dict]]:
    """The uniform grid points that differ on ``spec``: on a one-layer host only the NIC's values
    (the first grid point of each), elsewhere the whole grid."""
    grid = oracle_grid()
    if spec.host.layers != ("nic",):
        return grid
    seen: dict[str, dict] = {}
    for g in grid:
        seen.setdefault(json.dumps(g["nic"], sort_keys=True), g)
    return list(seen.values())


def best_feasible(rows: Sequence[dict]) -> dict | None:
    """The cheapest row (CPU per packet) that meets every SLO, or None."""
    ok = [r for r in rows if r["error"] is None and r["all_slos_met"]]
    return min(ok, key=lambda r: r["cpu_ns_per_packet"]) if ok else None


@dataclass(frozen=True)
class Coordinate:
    """One site of the descent and the grid's values of its layer."""

    site: str
    values: tuple[dict, ...]


def _layer_values(layer: str) -> tuple[dict, ...]:
    """The distinct tables the uniform grid gives ``layer``, in grid order."""
    seen: dict[str, dict] = {}
    for g in oracle_grid():
        seen.setdefault(json.dumps(g[layer], sort_keys=True), g[layer])
    return tuple(seen.values())


def coordinates(spec: ScenarioSpec) -> list[Coordinate]:
    """The descent's coordinates: each NIC queue that carries a tenant, then each tenant's
    backend and frontend (none on a one-layer host)."""
    queues = sorted({spec.queue_of(i) for i in range(len(spec.guests))})
    out = [Coordinate(f"nic:q{q}", _layer_values("nic")) for q in queues]
    if spec.host.layers != ("nic",):
        for g in spec.guests:
            out.append(Coordinate(f"backend:{g.name}", _layer_values("backend")))
            out.append(Coordinate(f"frontend:{g.name}", _layer_values("frontend")))
    return out


def wants_descent(spec: ScenarioSpec) -> bool:
    """Whether a uniform setting can be beaten per site: several used NIC queues or tenant paths."""
    queues = {spec.queue_of(i) for i in range(len(spec.guests))}
    return len(queues) > 1 or (spec.host.layers != ("nic",) and len(spec.guests) > 1)


def descent_bound(spec: ScenarioSpec, passes: int = DESCENT_PASSES) -> int:
    """Most simulations of the whole oracle search on ``spec`` (grid, then descent if wanted)."""
    n = len(search_grid(spec))
    if wants_descent(spec):
        n += passes * sum(len(c.values) - 1 for c in coordinates(spec))
    return n


def expand(spec: ScenarioSpec, uniform: dict[str, dict]) -> Setting:
    """A uniform grid point as a per-site setting over the descent's coordinates."""
    return {c.site: dict(uniform[c.site.split(":")[0]]) for c in coordinates(spec)}


@dataclass
class Descent:
    """Outcome of ``descend``: the best row and setting, and what the search cost."""

    row: dict
    setting: Setting
    passes: int
    simulations: int
    coordinates: int


def descend(
    spec: ScenarioSpec,
    start: Setting,
    start_row: dict,
    run: Callable[[list[dict]], list[dict]],
    passes: int = DESCENT_PASSES,
) -> Descent:
    """Coordinate descent from a feasible ``start`` (its simulated ``start_row``).

    ``run`` simulates a list of static-policy parameter tables (``{"sites": setting}``) and returns
    their rows in order. A candidate replaces the current point only when it meets every SLO and
    its CPU per packet is strictly lower, so the result is always a simulated feasible point.
    """
    coords = coordinates(spec)
    setting, row = dict(start), start_row
    sims = done = 0
    while done < passes:
        done += 1
        changed = False
        for c in coords:
            cands = [v for v in c.values if v != setting[c.site]]
            rows = run([{"sites": {**setting, c.site: v}} for v in cands])
            sims += len(rows)
            best = best_feasible(rows)
            if best is not None and best["cpu_ns_per_packet"] < row["cpu_ns_per_packet"]:
                k = next(i for i, r in enumerate(rows) if r is best)
                setting, row, changed = {**setting, c.site: cands[k]}, best, True
        if not changed:
            break
    return Descent(row, setting, done, sims, len(coords))


def search_text(grid_points: int, descent: Descent | None = None, passes: int = DESCENT_PASSES) -> str:
    """The oracle row's ``search`` field: its search space and the simulations it ran."""
    if descent is None:
        return f"uniform grid of {grid_points} points, {grid_points} simulations"
    return (f"uniform grid of {grid_points} points + coordinate descent over {descent.coordinates} coordinates, "
            f"{descent.passes} pass{'es' if descent.passes != 1 else ''} (limit {passes}), {grid_points + descent.simulations} simulations")
