"""What a report shows, read from stored result files only (never reruns anything).

Two passes keep memory small: the first reads every trial's summary and provenance; the second
loads the full series (windows, decisions, CDFs) of one representative trial per scenario and
policy (the lowest seed of the first axis combination).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcoal.model.result import TrialResult
from vcoal.results import ResultFormatError, load_trial, read_sweep_meta
from vcoal.results.store import document_paths


@dataclass(slots=True)
class TrialRow:
    """One trial as the report lists it."""

    run_key: str
    path: Path | None
    status: str
    label: str
    scenario: str
    policy: str
    policy_params: dict[str, Any]
    seed: int
    axes: dict[str, Any]
    summary: dict[str, Any]
    provenance: dict[str, Any]
    spec_hash: str
    error: str
    phase_times_s: tuple[float, ...] = ()


@dataclass(slots=True)
class ReportData:
    """Everything the template and the plots need."""

    root: Path
    meta: dict[str, Any]
    trials: list[TrialRow]
    scenarios: list[str]
    policies: list[str]
    representatives: dict[tuple[str, str], TrialResult] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def ok_trials(self, scenario: str | None = None, policy: str | None = None) -> list[TrialRow]:
        return [
            t for t in self.trials
            if t.status == "ok" and scenario in (None, t.scenario) and policy in (None, t.policy)
        ]

    def phase_times(self, scenario: str) -> tuple[float, ...]:
        for t in self.trials:
            if t.scenario == scenario and t.phase_times_s:
                return t.phase_times_s
        return ()


def _phase_times(spec: dict[str, Any]) -> tuple[float, ...]:
    """Times (s) at which some tenant's offered load changes (workload ``steps``)."""
    times: set[float] = set()
    for g in spec.get("guests", []):
        for step in (g.get("workload") or {}).get("steps") or ():
            times.add(float(step[0]))
    return tuple(sorted(times))


def load_report_data(root: str | Path) -> ReportData:
    """Read a results directory into ``ReportData``; unreadable files are listed, not fatal."""
    root = Path(root)
    trials: list[TrialRow] = []
    unreadable: list[str] = []
    for path in document_paths(root):
        try:
            d = load_trial(path)
        except ResultFormatError as exc:
            unreadable.append(str(exc))
            continue
        doc, t = d.doc, d.trial
        err = doc.get("error") or {}
        trials.append(
            TrialRow(
                run_key=d.run_key,
                path=d.path,
                status=doc["status"],
                label=t.get("label", ""),
                scenario=t.get("scenario", ""),
                policy=t.get("policy") or "",
                policy_params=t.get("policy_params") or {},
                seed=int(t.get("seed") or 0),
                axes=t.get("axes") or {},
                summary=doc.get("summary") or {},
                provenance=doc.get("provenance") or {},
                spec_hash=doc.get("spec_hash", ""),
                error=f"{err.get('type')}: {err.get('message')}" if err else "",
                phase_times_s=_phase_times(doc.get("spec") or {}),
            )
        )
    trials.sort(key=lambda r: (r.scenario, r.policy, json.dumps(r.axes, sort_keys=True, default=str), r.seed))
    scenarios = sorted({t.scenario for t in trials})
    policies = _policy_order({t.policy for t in trials})
    data = ReportData(root, read_sweep_meta(root), trials, scenarios, policies, unreadable=unreadable)
    for key, row in _pick_representatives(trials).items():
        try:
            res = load_trial(row.path).result if row.path else None
        except ResultFormatError as exc:  # changed since the first pass
            data.unreadable.append(str(exc))
            continue
        if res is not None:
            data.representatives[key] = res
    return data


def _policy_order(names: set[str]) -> list[str]:
    from vcoal.report.presentation import POLICY_STYLE

    known = [p for p in POLICY_STYLE if p in names]
    return known + sorted(names - set(known))


def _pick_representatives(trials: list[TrialRow]) -> dict[tuple[str, str], TrialRow]:
    """The first successful trial (sorted by axes, then seed) of each scenario and policy."""
    out: dict[tuple[str, str], TrialRow] = {}
    for t in trials:  # already sorted
        if t.status == "ok":
            out.setdefault((t.scenario, t.policy), t)
    return out


# --- derived tables -----------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """One scenario × policy cell of the SLO attainment table."""

    trials: int = 0
    failed: int = 0
    all_met: int = 0
    slo_tenants: int = 0
    slo_tenants_met: int = 0
    p99_us: list[float] = field(default_factory=list)
    cpu_ns_per_packet: list[float] = field(default_factory=list)

    @property
    def attainment(self) -> float | None:
        """Fraction of successful trials in which every tenant met its SLO."""
        ok = self.trials - self.failed
        return self.all_met / ok if ok else None

    @property
    def tenant_attainment(self) -> float | None:
        return self.slo_tenants_met / self.slo_tenants if self.slo_tenants else None

    @property
    def p99_us_median(self) -> float | None:
        return _median(self.p99_us)

    @property
    def cpu_ns_per_packet_median(self) -> float | None:
        return _median(self.cpu_ns_per_packet)


def _median(values: list[float]) -> float | None:
    vals = sorted(v for v in values if v is not None and not math.isnan(v))
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def slo_table(data: ReportData) -> dict[tuple[str, str], Cell]:
    """SLO attainment per scenario × policy."""
    cells: dict[tuple[str, str], Cell] = {}
    for t in data.trials:
        c = cells.setdefault((t.scenario, t.policy), Cell())
        c.trials += 1
        if t.status != "ok":
            c.failed += 1
            continue
        s = t.summary
        c.all_met += 1 if s.get("slo_met") else 0
        c.slo_tenants += int(s.get("slo_tenants") or 0)
        c.slo_tenants_met += int(s.get("slo_tenants_met") or 0)
        c.p99_us.append(s.get("p99_us_max"))
        c.cpu_ns_per_packet.append(s.get("cpu_ns_per_packet"))
    return cells


def window_series(result: TrialResult) -> dict[str, Any]:
    """Per-window series of one trial: time, per-layer mean ``rx_usecs``, interrupt rate, worst p99.

    Reads both window layouts in use: the simulator's (``rx_irq_per_s`` per site) and
    ``vcoal.model.stats.window_to_dict`` (raw counts with ``interval_ns``).
    """
    t_s: list[float] = []
    usecs: dict[str, list[float]] = {}
    irq: list[float] = []
    p99: list[float] = []
    for w in result.windows:
        t_s.append(w.get("t_ns", 0) / 1e9)
        per_layer: dict[str, list[float]] = {}
        total_irq = 0.0
        for site, s in (w.get("sites") or {}).items():
            layer = site.split(":", 1)[0]
            per_layer.setdefault(layer, []).append(float((s.get("params") or {}).get("rx_usecs", 0)))
            total_irq += _site_irq_per_s(s)
        for layer, vals in per_layer.items():
            usecs.setdefault(layer, []).append(sum(vals) / len(vals))
        irq.append(total_irq)
        vals = [t.get("p99_us") for t in (w.get("tenants") or {}).values()]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        p99.append(max(vals) if vals else float("nan"))
    return {"t_s": t_s, "rx_usecs": usecs, "irq_per_s": irq, "p99_us": p99}


def _site_irq_per_s(s: dict[str, Any]) -> float:
    if "rx_irq_per_s" in s:
        return float(s.get("rx_irq_per_s") or 0) + float(s.get("tx_irq_per_s") or 0)
    interval = s.get("interval_ns") or 0
    if not interval:
        return 0.0
    return (s["rx"][2] + s["tx"][2]) * 1e9 / interval
