"""Policies on the real-kernel testbed, and the testbed oracle (``vcoal testbed compare``).

Every (scenario, configuration) runs ``reps`` times on a fresh topology, interleaved (rep 1 of
every configuration, then rep 2...), so that drifts of the machine spread over all of them. A
configuration is a policy (``off``, ``qos``...) or, with ``oracle``, one point of a static grid of
the NAPI deferral knobs: ``gro_flush_timeout`` x ``napi_defer_hard_irqs`` (``ORACLE_TIMEOUTS_US``,
``ORACLE_DEFER``) on the shared hop (every ``nic`` site: peth0), on one tenant's own path (its
``backend`` and ``frontend``), and on every hop. Each trial is stored as a result file (the same
format as sweeps, so ``vcoal report`` and ``vcoal results`` read them); each configuration gets a
row with medians and [min..max] over its reps. The **testbed oracle** of a scenario is the grid
point with the fewest NET_RX softirqs per delivered packet (median) that met every SLO in every rep.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcoal.experiments.sweep import run_key
from vcoal.model.result import TrialResult
from vcoal.policies import POLICIES, make_policy
from vcoal.results.files import make_document
from vcoal.results.provenance import git_facts, host_facts, now_iso, package_version
from vcoal.results.store import SummaryWriter, store_document
from vcoal.spec import ScenarioSpec

ORACLE_TIMEOUTS_US = (20, 50, 100, 200)
ORACLE_DEFER = 2
SWEEP_NAME = "testbed-compare"
#: the per-rep figures a row aggregates (name -> how to read it from a TrialResult)
METRICS = ("net_rx_per_packet", "task_cpu_us_per_packet", "throughput_bps", "wall_s")


@dataclass(frozen=True)
class Config:
    """One thing to run on a scenario: a policy with parameters; ``grid`` marks oracle grid points."""

    label: str
    policy: str
    params: dict = field(default_factory=dict)
    grid: bool = False


def _defer(timeout_us: int) -> dict[str, int]:
    return {"napi_defer_hard_irqs": ORACLE_DEFER, "gro_flush_timeout_ns": timeout_us * 1000}


def oracle_grid(spec: ScenarioSpec) -> list[Config]:
    """The static grid of the testbed oracle for ``spec`` (no deferral first)."""
    nic = [str(s) for s in spec.site_params() if s.layer.value == "nic"]
    groups: list[tuple[str, list[str]]] = [("shared hop", nic)]
    for g in spec.guests:
        groups.append((f"{g.name} path", [f"backend:{g.name}", f"frontend:{g.name}"]))
    groups.append(("every hop", [str(s) for s in spec.site_params()]))
    grid = [Config("grid: no deferral", "static", {}, True)]
    for name, sites in groups:
        for t in ORACLE_TIMEOUTS_US:
            grid.append(Config(f"grid: {name} {t} us", "static", {"sites": {s: _defer(t) for s in sites}}, True))
    return grid


def configs(spec: ScenarioSpec, policies: Sequence[str], oracle: bool) -> list[Config]:
    """The policies (default parameters), then the oracle grid when asked."""
    for name in policies:
        if name not in POLICIES:
            raise ValueError(f"--policies: unknown policy {name!r}; registered: {', '.join(sorted(POLICIES))}")
    out = [Config(name, name) for name in policies]
    return out + (oracle_grid(spec) if oracle else [])


def rep_metrics(result: TrialResult) -> dict[str, Any]:
    """The figures of one trial that a comparison row aggregates."""
    m = result.meta
    tenants = {}
    for t in result.tenants:
        p99 = (t.rtt_us or {}).get("p99", t.p99_us)
        tenants[t.name] = {"p99_us": p99, "slo_p99_us": t.slo_p99_us, "slo_met": t.slo_met,
                           "throughput_bps": t.throughput_bps}
    sites = {}
    for s in result.sites:
        packets = s.rx.packets + s.tx.packets
        sites[s.site] = (s.rx.polls + s.tx.polls) / packets if packets else math.nan
    return {
        "tenants": tenants,
        "all_met": result.all_slos_met(),
        "net_rx_per_packet": m.get("net_rx_per_packet", math.nan),
        "task_cpu_us_per_packet": m.get("tasks_cpu_ns_per_packet", math.nan) / 1e3,
        "throughput_bps": sum(t.throughput_bps for t in result.tenants),
        "wall_s": m.get("wall_s", math.nan),
        "polls_per_packet": sites,
        "attribution": (m.get("attribution") or {}).get("source", ""),
        "placement": (m.get("placement") or {}).get("mode", ""),
    }


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median with [min..max] of the finite values; None when there is none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def aggregate(scenario: str, config: Config, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One comparison row from the per-rep figures of one configuration on one scenario."""
    ok = [r for r in reps if r.get("error") is None]
    row: dict[str, Any] = {"scenario": scenario, "label": config.label, "policy": config.policy,
                           "params": config.params, "grid": config.grid, "reps": len(reps), "ok": len(ok),
                           "errors": [r["error"] for r in reps if r.get("error")]}
    row["all_met_reps"] = sum(1 for r in ok if r["all_met"])
    for key in METRICS:
        row[key] = spread([r[key] for r in ok])
    names = list(ok[0]["tenants"]) if ok else []
    row["tenants"] = {
        n: {"p99_us": spread([r["tenants"][n]["p99_us"] for r in ok]),
            "slo_p99_us": ok[0]["tenants"][n]["slo_p99_us"],
            "slo_met_reps": sum(1 for r in ok if r["tenants"][n]["slo_met"] is not False),
            "throughput_bps": spread([r["tenants"][n]["throughput_bps"] for r in ok])}
        for n in names
    }
    sites = list(ok[0]["polls_per_packet"]) if ok else []
    row["polls_per_packet"] = {s: spread([r["polls_per_packet"][s] for r in ok]) for s in sites}
    row["attribution"] = sorted({r["attribution"] for r in ok})
    row["placement"] = sorted({r["placement"] for r in ok})
    return row


def testbed_oracle(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Per scenario: the grid row with the fewest NET_RX per packet (median) whose every rep met
    every SLO, or None when no grid point did."""
    out: dict[str, dict[str, Any] | None] = {}
    for r in rows:
        out.setdefault(r["scenario"], None)
        feasible = r["grid"] and r["ok"] == r["reps"] and r["all_met_reps"] == r["reps"] and r["net_rx_per_packet"]
        best = out[r["scenario"]]
        if feasible and (best is None or r["net_rx_per_packet"]["median"] < best["net_rx_per_packet"]["median"]):
            out[r["scenario"]] = r
    return out


@dataclass
class CompareOutcome:
    """What a testbed comparison produced."""

    rows: list[dict[str, Any]]
    oracle: dict[str, dict[str, Any] | None]
    trials: int
    failed: int
    interrupted: bool = False


TrialFn = Callable[[ScenarioSpec, Any, float | None, float], TrialResult]


def testbed_trial(spec: ScenarioSpec, policy: Any, duration_s: float | None, window_s: float,
                  placement: str = "auto", settle_s: float = 0.0) -> TrialResult:
    """One trial on a fresh testbed topology (needs root and the load tools)."""
    from vcoal.testbed.trial import TrialOptions, run_trial

    return run_trial(spec, policy, TrialOptions(measure_s=duration_s, window_s=window_s, placement=placement,
                                                settle_s=settle_s))


def _store(out_dir: Path, writer: SummaryWriter, spec: ScenarioSpec, config: Config, rep: int,
           duration_s: float | None, result: TrialResult | None, error: dict | None, started: str) -> None:
    scenario = spec.model_dump(mode="json")
    key = run_key(scenario, config.policy, config.params, rep)
    doc = make_document(
        run_key=key,
        trial={"sweep": SWEEP_NAME, "label": f"{spec.name} {config.label} rep {rep + 1}", "scenario": spec.name,
               "policy": config.policy, "policy_params": config.params, "seed": spec.seed,
               "duration_s": duration_s, "axes": {"config": config.label, "rep": rep + 1}},
        spec=scenario,
        spec_hash=spec.spec_hash(),
        provenance={"package_version": package_version(), **git_facts(), "host": host_facts(),
                    "engine": "testbed", "started_at": started, "finished_at": now_iso()},
        result=result,
        error=error,
    )
    _path, facts = store_document(out_dir, doc)
    writer.add(doc, facts)


def run_testbed_compare(
    specs: Sequence[ScenarioSpec],
    policies: Sequence[str],
    *,
    trial_fn: TrialFn = testbed_trial,
    oracle: bool = False,
    reps: int = 3,
    duration_s: float | None = None,
    window_s: float = 1.0,
    out_dir: str | Path | None = None,
    on_done: Callable[[int, int, str], None] | None = None,
) -> CompareOutcome:
    """Run every configuration of every scenario ``reps`` times, interleaved; store each trial under
    ``out_dir`` (when given) and aggregate. ``trial_fn(spec, policy, duration_s, window_s)`` runs one
    trial (``testbed_trial``; tests inject a stand-in). Ctrl-C stops
    after storing what finished; ``interrupted`` says so."""
    plan = [(spec, c) for spec in specs for c in configs(spec, policies, oracle)]
    per: dict[tuple[int, str], list[dict[str, Any]]] = {(i, c.label): [] for i, (_s, c) in enumerate(plan)}
    writer = SummaryWriter(Path(out_dir)) if out_dir is not None else None
    total, done, failed, interrupted = reps * len(plan), 0, 0, False
    try:
        for rep in range(reps):
            for i, (spec, config) in enumerate(plan):
                started = now_iso()
                try:
                    result = trial_fn(spec, make_policy(config.policy, config.params), duration_s, window_s)
                    figures, error = rep_metrics(result), None
                except (RuntimeError, ValueError, OSError) as exc:
                    result, error = None, {"type": type(exc).__name__, "message": str(exc), "traceback": ""}
                    figures, failed = {"error": f"{type(exc).__name__}: {exc}"}, failed + 1
                if writer is not None:
                    _store(Path(out_dir), writer, spec, config, rep, duration_s, result, error, started)
                per[(i, config.label)].append(figures)
                done += 1
                if on_done:
                    on_done(done, total, f"{spec.name} {config.label} rep {rep + 1}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if writer is not None:
            writer.flush()
    rows = [aggregate(spec.name, c, per[(i, c.label)]) for i, (spec, c) in enumerate(plan) if per[(i, c.label)]]
    return CompareOutcome(rows, testbed_oracle(rows), done, failed, interrupted)
