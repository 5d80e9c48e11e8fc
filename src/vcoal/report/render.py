"""Render a results directory into one self-contained HTML page (Jinja2 template, inline SVG)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcoal.report.data import ReportData, load_report_data, slo_table
from vcoal.report.plots import RenderedPlot, plan_plots, render_plot
from vcoal.report.presentation import style_of
from vcoal.results.files import write_atomic
from vcoal.results.provenance import now_iso, package_version

TEMPLATE = "report.html.j2"
MAX_DECISIONS_PER_TRIAL = 40
_PARAM_KEYS = ("rx_usecs", "rx_frames", "tx_usecs", "tx_frames", "napi_defer_hard_irqs", "gro_flush_timeout_ns")


@dataclass(slots=True)
class ReportInfo:
    """What was rendered: where, how many trials, every plot with its data counts."""

    path: Path | None
    html: str
    trials: int
    plots: list[RenderedPlot]
    unreadable: list[str] = field(default_factory=list)
    """Trial files that could not be read (listed on the page, and by ``vcoal report``)."""


def _fmt(value: Any, digits: int = 3) -> str:
    """``digits`` significant digits in plain notation (12.2, 0.0123, 12,200), never ``1.22e+04``."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value == 0:
            return "0"
        decimals = digits - 1 - math.floor(math.log10(abs(value)))
        return f"{round(value, decimals):,.{max(decimals, 0)}f}"
    return str(value)


def _us(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e3


def _attainment_color(frac: float | None) -> str:
    if frac is None:
        return "#eeeeee"
    # red (0) -> yellow (0.5) -> green (1)
    r = 230 if frac < 0.5 else int(230 - (frac - 0.5) * 2 * 150)
    g = int(90 + frac * 2 * 110) if frac < 0.5 else 200
    return f"rgb({r},{g},110)"


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={params[k]}" for k in _PARAM_KEYS if k in params and params[k] not in (None,))


def _kv_text(d: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in (d or {}).items())


def _decision_tables(data: ReportData, scenarios: list[str]) -> list[dict[str, Any]]:
    out = []
    for scen in scenarios:
        for policy in data.policies:
            res = data.representatives.get((scen, policy))
            if res is None or not res.decisions:
                continue
            changed = [d for d in res.decisions if d.get("changed")]
            shown = (changed or res.decisions)[:MAX_DECISIONS_PER_TRIAL]
            out.append(
                {
                    "scenario": scen,
                    "policy": style_of(policy).display,
                    "total": len(res.decisions),
                    "changed": len(changed),
                    "rows": [
                        {
                            "window": d.get("window"),
                            "site": d.get("site"),
                            "params": _params_text(d.get("params") or {}),
                            "changed": d.get("changed"),
                            "reason": d.get("reason", ""),
                            "inputs": _kv_text(d.get("inputs")),
                            "predicted": _kv_text(d.get("predicted")),
                        }
                        for d in shown
                    ],
                }
            )
    return out


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    return env


def build_context(data: ReportData, plots: list[RenderedPlot]) -> dict[str, Any]:
    """Everything the template reads, as plain values."""
    from markupsafe import Markup

    cells = slo_table(data)
    slo_rows = []
    for scen in data.scenarios:
        row = []
        for policy in data.policies:
            c = cells.get((scen, policy))
            if c is None:
                row.append(None)
                continue
            row.append(
                {
                    "attainment": c.attainment,
                    "tenant_attainment": c.tenant_attainment,
                    "text": f"{c.all_met}/{c.trials - c.failed}",
                    "failed": c.failed,
                    "color": _attainment_color(c.attainment),
                    "p99_us": c.p99_us_median,
                    "cpu_us_per_packet": _us(c.cpu_ns_per_packet_median),
                }
            )
        slo_rows.append({"scenario": scen, "cells": row})
    phased = sorted({p.spec.scenario for p in plots if p.spec.kind == "timeseries"})
    ok = sum(1 for t in data.trials if t.status == "ok")
    commits = sorted({
        f"{(t.provenance.get('git_commit') or 'unknown')[:12]}{'+dirty' if t.provenance.get('git_dirty') else ''}"
        for t in data.trials
    })
    return {
        "title": f"vcoal report: {data.meta.get('name') or data.root.name}",
        "meta": data.meta,
        "root": str(data.root),
        "generated_at": now_iso(),
        "report_version": package_version(),
        "counts": {"trials": len(data.trials), "ok": ok, "failed": len(data.trials) - ok},
        "versions": sorted({str(t.provenance.get("package_version")) for t in data.trials}),
        "commits": commits,
        "policies": [{"name": p, "display": style_of(p).display, "color": style_of(p).color} for p in data.policies],
        "slo_rows": slo_rows,
        "plots": [
            {"id": p.spec.id, "kind": p.spec.kind, "title": p.spec.title, "caption": p.spec.caption,
             "svg": Markup(p.svg), "points": p.points}
            for p in plots
        ],
        "decisions": _decision_tables(data, phased or data.scenarios[:1]),
        "failures": [t for t in data.trials if t.status != "ok"],
        "trials": [
            {
                "run_key": t.run_key,
                "label": t.label,
                "status": t.status,
                "seed": t.seed,
                "params": json.dumps(t.policy_params, sort_keys=True) if t.policy_params else "",
                "spec_hash": t.spec_hash,
                "version": t.provenance.get("package_version"),
                "commit": (t.provenance.get("git_commit") or "")[:12] + ("+dirty" if t.provenance.get("git_dirty") else ""),
                "host": (t.provenance.get("host") or {}).get("hostname", ""),
                "engine": t.provenance.get("engine", ""),
                "finished_at": t.provenance.get("finished_at", ""),
                "wall_s": t.provenance.get("wall_s"),
                "file": html.escape(str(t.path.relative_to(data.root))) if t.path else "",
            }
            for t in data.trials
        ],
        "unreadable": data.unreadable,
    }


def render_report(results_dir: str | Path, out_path: str | Path | None = None) -> ReportInfo:
    """Read ``results_dir`` and write (when ``out_path`` is given) a self-contained HTML report.

    Raises
    ------
    ValueError
        When the directory holds no readable trial.
    """
    data = load_report_data(results_dir)
    if not data.trials:
        raise ValueError(f"{results_dir}: no trial results found (expected trials/*.json from vcoal sweep)")
    plots = [render_plot(spec, data) for spec in plan_plots(data)]
    text = _environment().get_template(TEMPLATE).render(**build_context(data, plots))
    path = Path(out_path) if out_path is not None else None
    if path is not None:
        write_atomic(path, text)
    return ReportInfo(path, text, len(data.trials), plots, list(data.unreadable))
