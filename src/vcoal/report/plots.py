"""Plots as data (``PlotSpec``) rendered by one module to inline SVG with matplotlib's Agg/SVG backend.

``plan_plots`` decides which plots a results directory gets; ``render_plot`` draws one. Each
rendered plot reports how many series and points it drew so tests can check none is empty.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Literal

from vcoal.report.data import ReportData, window_series
from vcoal.report.presentation import LAYER_LINESTYLE, style_of

MAX_CDF_POINTS = 1000
MAX_TENANT_PANELS = 9
MAX_PHASE_PLOTS = 4


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """One plot: what it shows, for which scenario."""

    id: str
    kind: Literal["pareto", "cdf", "timeseries"]
    title: str
    scenario: str
    caption: str = ""


@dataclass(slots=True)
class RenderedPlot:
    """A drawn plot: SVG markup plus how much data went into it."""

    spec: PlotSpec
    svg: str
    series: int
    points: int


def plan_plots(data: ReportData) -> list[PlotSpec]:
    """The plots of a report: Pareto and CDFs per scenario, time series where load changes."""
    plots: list[PlotSpec] = []
    for i, scen in enumerate(data.scenarios):
        if not data.ok_trials(scen):
            continue
        plots.append(
            PlotSpec(f"pareto-{i}", "pareto", f"{scen}: worst-tenant p99 vs CPU per packet", scen,
                     "One point per trial; the grey line joins the trials no other trial beats on both axes.")
        )
        if any(s == scen for s, _ in data.representatives):
            plots.append(
                PlotSpec(f"cdf-{i}", "cdf", f"{scen}: latency CDF per tenant", scen,
                         "One-way latency of each tenant, one representative trial per policy (lowest seed).")
            )
    phased = [s for s in data.scenarios if data.phase_times(s)] or data.scenarios[:1]
    for scen in phased[:MAX_PHASE_PLOTS]:
        if any(s == scen and r.windows for (s, _), r in data.representatives.items()):
            i = data.scenarios.index(scen)
            plots.append(
                PlotSpec(f"series-{i}", "timeseries", f"{scen}: parameters, interrupts and latency over time", scen,
                         "Per window; dashed vertical lines mark load changes (phase changes) of the scenario.")
            )
    return plots


def render_plot(spec: PlotSpec, data: ReportData) -> RenderedPlot:
    """Draw one plot to an SVG string (ids prefixed with the plot id so several can share a page)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": spec.id, "font.size": 9}):
        if spec.kind == "pareto":
            fig = Figure(figsize=(6.4, 4.2))
            series, points = _pareto(fig, spec, data)
        elif spec.kind == "cdf":
            fig = Figure(figsize=(9.6, 3.4))
            series, points = _cdf(fig, spec, data)
        else:
            fig = Figure(figsize=(9.6, 6.6))
            series, points = _timeseries(fig, spec, data)
        fig.suptitle(spec.title, fontsize=10)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return RenderedPlot(spec, _clean_svg(buf.getvalue(), spec.id), series, points)


def _clean_svg(svg: str, prefix: str) -> str:
    """Drop the XML prolog and make element ids unique to this plot."""
    svg = svg[svg.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    for old in sorted(ids, key=len, reverse=True):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})").replace(
            f'href="#{old}"', f'href="#{new}"'
        )
    return svg


def _finite(*values: float | None) -> bool:
    return all(v is not None and not math.isnan(v) and not math.isinf(v) for v in values)


def _pareto(fig, spec: PlotSpec, data: ReportData) -> tuple[int, int]:
    ax = fig.add_subplot(1, 1, 1)
    series = points = 0
    everything: list[tuple[float, float]] = []
    for policy in data.policies:
        xy = [
            (t.summary.get("cpu_ns_per_packet"), t.summary.get("p99_us_max"))
            for t in data.ok_trials(spec.scenario, policy)
        ]
        xy = [(x, y) for x, y in xy if _finite(x, y)]
        if not xy:
            continue
        st = style_of(policy)
        ax.scatter([x for x, _ in xy], [y for _, y in xy], label=st.display, color=st.color, marker=st.marker,
                   s=28, alpha=0.85)
        everything += xy
        series += 1
        points += len(xy)
    front = _pareto_front(everything)
    if len(front) > 1:
        ax.plot([x for x, _ in front], [y for _, y in front], color="#999999", linestyle="--", linewidth=1,
                zorder=0, label="Pareto front")
    ax.set_xlabel("CPU per delivered packet (ns)")
    ax.set_ylabel("worst-tenant p99 latency (µs)")
    if everything and min(y for _, y in everything) > 0 and max(y for _, y in everything) > 20 * min(
        y for _, y in everything
    ):
        _log_axis(ax.yaxis, ax.set_yscale)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    return series, points


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated on (lower x, lower y), sorted by x."""
    front: list[tuple[float, float]] = []
    best_y = math.inf
    for x, y in sorted(points):
        if y < best_y:
            front.append((x, y))
            best_y = y
    return front


def _cdf(fig, spec: PlotSpec, data: ReportData) -> tuple[int, int]:
    reps = {p: r for (s, p), r in data.representatives.items() if s == spec.scenario}
    tenants: list[str] = []
    for r in reps.values():
        tenants += [t.name for t in r.tenants if t.name not in tenants]
    tenants = tenants[:MAX_TENANT_PANELS]
    cols = min(len(tenants), 3) or 1
    rows = math.ceil(len(tenants) / cols) or 1
    fig.set_size_inches(9.6, 3.0 * rows)
    series = points = 0
    for k, name in enumerate(tenants):
        ax = fig.add_subplot(rows, cols, k + 1)
        slo = None
        for policy in data.policies:
            res = reps.get(policy)
            ten = next((t for t in res.tenants if t.name == name), None) if res else None
            if ten is None:
                continue
            cdf = _downsample(ten.latency_cdf_us or _ladder(ten.latency_us))
            cdf = [(x, y) for x, y in cdf if _finite(x, y) and x > 0]
            if not cdf:
                continue
            st = style_of(policy)
            ax.step([x for x, _ in cdf], [y for _, y in cdf], where="post", color=st.color, label=st.display,
                    linewidth=1.2)
            series += 1
            points += len(cdf)
            slo = ten.slo_p99_us if ten.rtt_us is None else slo
        if slo:
            ax.axvline(slo, color="black", linestyle=":", linewidth=1, label="p99 SLO")
        ax.axhline(0.99, color="#bbbbbb", linewidth=0.8)
        xs = [x for line in ax.get_lines() for x in line.get_xdata() if x > 0]
        if xs and max(xs) > 10 * min(xs):
            _log_axis(ax.xaxis, ax.set_xscale)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("one-way latency (µs)")
        ax.set_ylabel("fraction of packets")
        ax.set_ylim(0, 1.01)
        ax.grid(True, alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="lower right")
    return series, points


def _log_axis(axis, set_scale) -> None:
    """Log scale labelled 1-2-5 in plain numbers (no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _ladder(lat: dict[str, float]) -> list[tuple[float, float]]:
    """A coarse CDF from the percentile ladder when no CDF was stored."""
    qs = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999), ("max", 1.0))
    return [(float(lat[k]), q) for k, q in qs if k in lat]


def _downsample(cdf: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(cdf) <= MAX_CDF_POINTS:
        return [(float(x), float(y)) for x, y in cdf]
    step = len(cdf) / MAX_CDF_POINTS
    picked = [cdf[int(i * step)] for i in range(MAX_CDF_POINTS)] + [cdf[-1]]
    return [(float(x), float(y)) for x, y in picked]


def _timeseries(fig, spec: PlotSpec, data: ReportData) -> tuple[int, int]:
    axes = [fig.add_subplot(3, 1, k + 1) for k in range(3)]
    series = points = 0
    for policy in data.policies:
        res = data.representatives.get((spec.scenario, policy))
        if res is None or not res.windows:
            continue
        st = style_of(policy)
        ws = window_series(res)
        t_ms = [t * 1e3 for t in ws["t_s"]]
        for layer, vals in ws["rx_usecs"].items():
            axes[0].plot(t_ms, vals, color=st.color, linestyle=LAYER_LINESTYLE.get(layer, "-."),
                         label=f"{st.display} · {layer}", linewidth=1.2, drawstyle="steps-post")
            series += 1
            points += len(vals)
        axes[1].plot(t_ms, [v / 1e3 for v in ws["irq_per_s"]], color=st.color, label=st.display, linewidth=1.2)
        finite_p99 = [(t, v) for t, v in zip(t_ms, ws["p99_us"], strict=True) if _finite(v)]
        axes[2].plot([t for t, _ in finite_p99], [v for _, v in finite_p99], color=st.color, label=st.display,
                     linewidth=1.2)
        series += 2
        points += len(t_ms) + len(finite_p99)
    for at_s in data.phase_times(spec.scenario):
        for ax in axes:
            ax.axvline(at_s * 1e3, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
    axes[0].set_ylabel("rx_usecs (mean per layer)")
    axes[1].set_ylabel("interrupts (k/s, all sites)")
    axes[2].set_ylabel("worst-tenant p99 (µs)")
    axes[2].set_xlabel("simulated time (ms)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if series:
        axes[0].legend(fontsize=6, ncol=3, loc="upper left")
        axes[1].legend(fontsize=7, ncol=4, loc="upper left")
    return series, points
