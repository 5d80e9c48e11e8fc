"""Compare policies on a suite of scenarios, and the static oracle (grid search of fixed settings).

``compare(paths, policies)`` runs every policy on every scenario (local process pool) and returns
one ``Row`` per scenario x policy: per tenant p99 vs SLO, throughput, CPU per packet, interrupts/s.
``static_oracle(spec)`` searches static settings (a uniform per-layer grid, then per-site coordinate
descent on multi-queue / multi-tenant hosts: ``vcoal.experiments.oracle``) and returns the cheapest
one (CPU per delivered packet) that meets every SLO, or reports that none does.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcoal.experiments.executors import PoolHandle
from vcoal.experiments.oracle import (
    DESCENT_PASSES,
    best_feasible,
    descend,
    expand,
    search_grid,
    search_text,
    wants_descent,
)
from vcoal.model.result import TrialResult
from vcoal.policies import POLICIES, make_policy
from vcoal.spec import ScenarioSpec, load_scenario

NO_FEASIBLE = "no static setting meets every SLO"
"""The oracle row's ``error`` when no grid point meets every SLO (an answer, not a failure)."""


@dataclass
class TenantRow:
    """One tenant's outcome under one policy."""

    name: str
    kind: str
    p99_us: float
    slo_p99_us: float | None
    slo_met: bool | None
    throughput_bps: float
    cpu_ns_per_packet: float


@dataclass
class Row:
    """One scenario under one policy."""

    scenario: str
    policy: str
    tenants: list[TenantRow]
    cpu_ns_per_packet: float
    irq_per_s: float
    all_slos_met: bool
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    infeasible: list[str] = field(default_factory=list)
    search: str | None = None
    """The oracle's search space and simulations run (oracle rows only)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tenant_cpu_ns_per_packet(result: TrialResult) -> dict[str, float]:
    """CPU per delivered packet of each tenant: its backend and frontend sites, its vCPUs'
    application time, and its share (by packets through its backend) of the NIC queues' CPU."""
    sites = {s.site: s for s in result.sites}
    cpus = {c.name: c for c in result.cpus}
    own: dict[str, float] = {}
    pkts: dict[str, int] = {}
    for t in result.tenants:
        own[t.name] = sum(
            c.app * result.measured_s * 1e9 for name, c in cpus.items() if name.startswith(f"{t.name}-v")
        )
        for layer in ("backend", "frontend"):
            s = sites.get(f"{layer}:{t.name}")
            if s is not None:
                own[t.name] += s.cpu_ns
        backend = sites.get(f"backend:{t.name}")
        pkts[t.name] = backend.rx.packets + backend.tx.packets if backend else t.delivered
    nic_cpu = sum(s.cpu_ns for s in result.sites if s.layer == "nic")
    total = sum(pkts.values())
    out = {}
    for t in result.tenants:
        share = pkts[t.name] / total if total else 1.0 / len(result.tenants)
        out[t.name] = (own[t.name] + nic_cpu * share) / t.delivered if t.delivered else math.nan
    return out


def summarise(result: TrialResult, params: dict[str, Any] | None = None) -> Row:
    """A comparison row from a TrialResult."""
    per_tenant = tenant_cpu_ns_per_packet(result)
    tenants = [
        TenantRow(t.name, t.kind, t.p99_us, t.slo_p99_us, t.slo_met, t.throughput_bps, per_tenant[t.name])
        for t in result.tenants
    ]
    return Row(result.scenario, result.policy, tenants, result.cpu_ns_per_packet(), result.irq_per_s(),
               result.all_slos_met(), params or result.policy_params, infeasible=result.infeasible_tenants())


def _run_one(args: tuple[dict, str, dict, int | None, float | None]) -> dict[str, Any]:
    from vcoal.sim import run_scenario

    spec_json, policy, params, seed, duration = args
    spec = ScenarioSpec.model_validate(spec_json)
    try:
        result = run_scenario(spec, make_policy(policy, params), seed=seed, duration_s=duration)
        row = summarise(result, params)
    except Exception as exc:  # a failing trial is reported in its row, the comparison goes on
        row = Row(spec.name, policy, [], math.nan, math.nan, False, params, f"{type(exc).__name__}: {exc}")
    return row.to_dict()


def run_rows(
    jobs: Sequence[tuple[ScenarioSpec, str, dict]],
    *,
    seed: int | None = None,
    duration_s: float | None = None,
    workers: int = 2,
    on_done: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run (scenario, policy, params) jobs on a process pool; rows in job order."""
    args = [(spec.model_dump(mode="json"), pol, params, seed, duration_s) for spec, pol, params in jobs]
    if workers <= 1:
        rows = []
        for a in args:
            rows.append(_run_one(a))
            if on_done:
                on_done(rows[-1])
        return rows
    out: list[dict | None] = [None] * len(args)
    with PoolHandle(workers) as pool:  # the sweep runner's pool: forkserver, numba cache, SIGINT left to us
        futures = {pool.executor.submit(_run_one, a): i for i, a in enumerate(args)}
        for fut in cf.as_completed(futures):
            out[futures[fut]] = fut.result()
            if on_done:
                on_done(out[futures[fut]])
    return [r for r in out if r is not None]


def static_oracle(spec: ScenarioSpec, *, passes: int = DESCENT_PASSES, **kwargs: Any) -> tuple[dict | None, list[dict]]:
    """The cheapest static setting meeting every SLO on one scenario: (best row or None, all rows).

    The uniform grid first; where the host has several used NIC queues or tenant paths, coordinate
    descent per site from the best uniform point (``vcoal.experiments.oracle``). The best row's
    ``search`` field states the search space and the simulations run; ``params`` is what to apply.
    """
    grid = search_grid(spec)
    rows = run_rows([(spec, "static", g) for g in grid], **kwargs)
    best = best_feasible(rows)
    descent = None
    if best is not None and wants_descent(spec):
        def run(tables: list[dict]) -> list[dict]:
            out = run_rows([(spec, "static", t) for t in tables], **kwargs)
            rows.extend(out)
            return out

        start = expand(spec, grid[next(i for i, r in enumerate(rows) if r is best)])
        descent = descend(spec, start, best, run, passes)
        best = descent.row
    for r in rows:
        r["policy"] = "oracle"
    if best is not None:
        best["search"] = search_text(len(grid), descent, passes)
    return best, rows


def suite_paths(suite: str | Path) -> list[Path]:
    """The scenario files of a suite directory (sorted), or the file itself."""
    p = Path(suite)
    if p.is_file():
        return [p]
    paths = sorted(p.glob("*.toml"))
    if not paths:
        raise ValueError(f"{suite}: no *.toml scenario files")
    return paths


def compare(
    suite: str | Path,
    policies: Sequence[str] | None = None,
    *,
    oracle: bool = False,
    **kwargs: Any,
) -> list[dict]:
    """Every policy (default: all registered) on every scenario of the suite, plus the oracle."""
    names = list(policies) if policies else sorted(POLICIES)
    for n in names:
        if n not in POLICIES:
            raise ValueError(f"--policies: unknown policy {n!r}; registered: {', '.join(sorted(POLICIES))}")
    specs = [load_scenario(p) for p in suite_paths(suite)]
    jobs = [(s, n, {}) for s in specs for n in names]
    rows = run_rows(jobs, **kwargs)
    if oracle:
        for s in specs:
            best, _ = static_oracle(s, **kwargs)
            rows.append(best or Row(s.name, "oracle", [], math.nan, math.nan, False, {}, NO_FEASIBLE,
                                    search=search_text(len(search_grid(s)))).to_dict())
    return rows


def failed_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows whose trial failed (an infeasible oracle is an answer, not a failure)."""
    return [r for r in rows if r.get("error") and r["error"] != NO_FEASIBLE]
