"""Readable summary tables of a TrialResult (rich)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from vcoal.model.result import TrialResult


def _f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def print_summary(r: TrialResult, console: Console | None = None) -> None:
    """Per tenant: p50/p99 vs SLO, throughput; per layer: irq/s, pkts/irq; per CPU: utilisation."""
    console = console or Console(width=None if Console().is_terminal else 140)
    t = Table(title=f"{r.scenario} — policy {r.policy}, seed {r.seed}, {r.measured_s:.3f} s measured")
    for col in ("tenant", "kind", "p50 µs", "p99 µs", "SLO p99 µs", "met", "Mb/s", "kpps", "drops"):
        t.add_column(col, justify="right" if col not in ("tenant", "kind") else "left")
    for x in r.tenants:
        lat = x.rtt_us if x.rtt_us else x.latency_us
        met = {True: "[green]yes[/]", False: "[red]NO[/]", None: "-"}[x.slo_met]
        kind = x.kind + (" (rtt)" if x.rtt_us else f" {x.direction}")
        t.add_row(x.name, kind, _f(lat["p50"]), _f(lat["p99"]), _f(x.slo_p99_us), met,
                  _f(x.throughput_bps / 1e6), _f(x.throughput_pps / 1e3), str(x.drops))
    console.print(t)
    for name in r.infeasible_tenants():
        reason = next((d["reason"] for d in reversed(r.decisions) if f"tenant {name}: infeasible" in d["reason"]), "")
        cause = reason.split(f"tenant {name}: infeasible: ", 1)[-1].split(";", 1)[0]
        console.print(f"[yellow]{name}: SLO infeasible[/] ({cause})")
    s = Table(title="coalescing sites")
    for col in ("site", "rx irq/s", "rx pkts/irq", "tx irq/s", "tx pkts/irq", "polls", "drops",
                "rx µs/frames tx µs/frames timer"):
        s.add_column(col, justify="left" if (col[0] in "sr" and " " in col) or col == "site" else "right")
    for x in r.sites:
        p = x.params_final
        params = f"{p['rx_usecs']}/{p['rx_frames']} {p['tx_usecs']}/{p['tx_frames']} {p['timer'][:3]}"
        if p["napi_defer_hard_irqs"]:
            params += f" defer {p['napi_defer_hard_irqs']}x{p['gro_flush_timeout_ns'] / 1000:g}"
        s.add_row(x.site, _f(x.rx.irq_per_s, 0), _f(x.rx.pkts_per_irq), _f(x.tx.irq_per_s, 0),
                  _f(x.tx.pkts_per_irq), str(x.rx.polls + x.tx.polls), str(x.rx.drops + x.tx.drops), params)
    console.print(s)
    c = Table(title="CPU utilisation (%)")
    for col in ("cpu", "irq", "softirq", "app", "idle"):
        c.add_column(col, justify="right" if col != "cpu" else "left")
    for x in r.cpus:
        c.add_row(x.name, _f(100 * x.irq), _f(100 * x.softirq), _f(100 * x.app), _f(100 * x.idle))
    console.print(c)
    console.print(
        f"interrupts/s (all sites): {r.irq_per_s():,.0f}   CPU per delivered packet: "
        f"{r.cpu_ns_per_packet() / 1e3:,.2f} µs   wall {r.meta.get('wall_s', 0):.2f} s"
    )
    delivered = sum(t.delivered for t in r.tenants)
    if r.meta.get("softirq_runs") is not None and delivered:
        console.print(f"softirq runs per delivered packet: {r.meta['softirq_runs'] / delivered:.3f} "
                      f"(the figure comparable with the kernel's NET_RX per packet)")
