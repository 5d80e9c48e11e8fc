"""Interleaved testbed measurements behind docs/testbed.md (run as root).

    .venv/bin/python examples/testbed/grid.py layers --reps 3 --out layers.jsonl
    .venv/bin/python examples/testbed/grid.py phys-grid --reps 2 --out phys.jsonl
    .venv/bin/python examples/testbed/grid.py bulk --reps 3 --out bulk.jsonl
    .venv/bin/python examples/testbed/grid.py policies --reps 3 --out policies.jsonl

``layers``: one UDP ping-pong tenant, NAPI deferral set on one layer (or all three) from the start
(scenario overrides, policy ``static`` without parameters = keep them). ``phys-grid``: the same
tenant, gro_flush_timeout x napi_defer_hard_irqs on peth0. ``bulk``: a lone paced TCP stream
under deferral on peth0 or all layers. ``policies``:
examples/testbed/mixed.toml under each registered policy of a list. Every repetition runs every
configuration once, in a shuffled order, each on a fresh topology; the table shows the median and
[min..max] over repetitions.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from vcoal.policies import POLICIES, make_policy
from vcoal.spec import load_scenario, parse_scenario
from vcoal.testbed.trial import TrialOptions, run_trial

HERE = Path(__file__).resolve().parent
PP = {
    "name": "pp",
    "duration_s": 2.0,
    "nic": {"queues": 1},
    "guests": [{"name": "g1", "workload": {"kind": "request_response"}}],
}


def _knobs(gft_us: int, defer: int) -> dict:
    return {"gro_flush_timeout_ns": gft_us * 1000, "napi_defer_hard_irqs": defer}


BULK = {
    "name": "bulk",
    "duration_s": 3.0,
    "nic": {"queues": 1},
    "guests": [{"name": "g1", "workload": {"kind": "bulk", "direction": "rx", "pace_gbps": 2.0}}],
}


def _all3(gft: int) -> dict[str, dict]:
    """The same deferral on all three layer hops."""
    return {k: {"coalesce": _knobs(gft, 2)} for k in ("nic", "backend", "frontend")}


def bulk_configs() -> dict[str, dict]:
    """A lone 2 Gbit/s TCP stream wire -> guest: NET_RX per packet under deferral."""
    out = {"none": {}}
    for gft in (50, 200):
        out[f"phys {gft}us/2"] = {"nic": {"coalesce": _knobs(gft, 2)}}
        out[f"all3 {gft}us/2"] = _all3(gft)
    return out


def _interleaved(reps: int, out, rng: random.Random, names: list[str], trial) -> list[dict]:
    """Every repetition runs every configuration once, in a shuffled order; ``trial(name)`` gives a
    row, which is stored with its config and repetition, written to ``out`` and echoed to stderr."""
    rows = []
    for rep in range(reps):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            row = {"config": name, "rep": rep, **trial(name)}
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            sys.stderr.write(f"{row}\n")
    return rows


def _cost(r) -> dict:
    """The CPU figures every row carries."""
    return {
        "net_rx_per_s": r.meta["net_rx_per_s"], "net_rx_per_packet": r.meta["net_rx_per_packet"],
        "cpu_us_per_packet": r.meta["tasks_cpu_ns_per_packet"] / 1e3, "background_cpu": r.meta["background_cpu_frac"],
    }


def run_static(reps: int, out, rng: random.Random, base: dict, configs: dict[str, dict], row) -> list[dict]:
    """Every config as scenario settings on ``base`` under ``static`` with no parameters (it keeps
    the scenario's settings; "off" would reset them to 0); ``row(tenant)`` gives the row's figures."""

    def trial(name: str) -> dict:
        r = run_trial(parse_scenario({**base, **configs[name]}), make_policy("static"), TrialOptions(window_s=1.0))
        return {**row(r.tenants[0]), **_cost(r)}

    return _interleaved(reps, out, rng, list(configs), trial)


def _bulk_row(t) -> dict:
    return {"gbps": t.throughput_bps / 1e9, "pps": t.throughput_pps}


def _rtt_row(t) -> dict:
    return {"p50_us": t.rtt_us["p50"], "p99_us": t.rtt_us["p99"], "tps": t.throughput_pps}


def phys_grid_configs() -> dict[str, dict]:
    """gro_flush_timeout x napi_defer_hard_irqs on peth0 (the physical layer)."""
    return {
        f"phys {gft}us/{defer}": {"nic": {"coalesce": _knobs(gft, defer)}} if gft or defer else {}
        for gft in (0, 20, 50, 100, 200)
        for defer in (0, 2, 10)
    }


def layer_configs() -> dict[str, dict]:
    out = {"none": {}}
    for gft, defer in ((50, 2), (200, 2), (200, 0)):
        out[f"phys {gft}us/{defer}"] = {"nic": {"coalesce": _knobs(gft, defer)}}
    for layer in ("backend", "frontend"):
        out[f"{layer} 50us/2"] = {layer: {"coalesce": _knobs(50, 2)}}
    for gft in (50, 200):
        out[f"all3 {gft}us/2"] = _all3(gft)
    return out


POLICY_SET = {
    "off": {},
    "static-phys50": {"nic": _knobs(50, 2)},
    "net_dim": {},
    "qos": {},
    "napi_defer": {},
}


def run_policies(reps: int, out, rng: random.Random, duration_s: float) -> list[dict]:
    spec = load_scenario(HERE / "mixed.toml")

    def trial(name: str) -> dict:
        pol = make_policy(name.split("-")[0], POLICY_SET[name])
        r = run_trial(spec, pol, TrialOptions(measure_s=duration_s, window_s=1.0))
        lat = next(t for t in r.tenants if t.name == "lat")
        bulk = next(t for t in r.tenants if t.name == "bulk")
        return {
            "lat_p50_us": lat.rtt_us["p50"], "lat_p99_us": lat.rtt_us["p99"],
            "slo_p99_us": lat.slo_p99_us, "slo_met": lat.slo_met, "bulk_gbps": bulk.throughput_bps / 1e9,
            "lat_tap_p99_us": (r.meta.get("tap") or {}).get("lat", {}).get("p99_us"), **_cost(r),
            "final": {s: (p["napi_defer_hard_irqs"], p["gro_flush_timeout_ns"]) for s, p in r.meta["final_params"].items()},
        }

    return _interleaved(reps, out, rng, [n for n in POLICY_SET if n.split("-")[0] in POLICIES], trial)


def table(rows: list[dict], metrics: list[str]) -> str:
    """Markdown table: median [min..max] per config and metric."""
    configs = list(dict.fromkeys(r["config"] for r in rows))
    lines = ["| config | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for c in configs:
        cells = []
        for m in metrics:
            vals = [r[m] for r in rows if r["config"] == c and r[m] is not None]
            if not vals:
                cells.append("-")
                continue
            med = statistics.median(vals)
            fmt = "{:.3g}" if abs(med) < 10 else "{:.0f}"
            cells.append(f"{fmt.format(med)} [{fmt.format(min(vals))}..{fmt.format(max(vals))}]")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("layers", "phys-grid", "bulk", "policies"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="policies: measured seconds per trial")
    ap.add_argument("--seed", type=int, default=1, help="shuffle seed")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with a.out.open("w") as out:
        if a.what in ("layers", "phys-grid"):
            configs = layer_configs() if a.what == "layers" else phys_grid_configs()
            rows = run_static(a.reps, out, rng, PP, configs, _rtt_row)
            sys.stdout.write(table(rows, ["p50_us", "p99_us", "tps", "net_rx_per_s", "net_rx_per_packet", "cpu_us_per_packet", "background_cpu"]) + "\n")
        elif a.what == "bulk":
            rows = run_static(a.reps, out, rng, BULK, bulk_configs(), _bulk_row)
            sys.stdout.write(table(rows, ["gbps", "pps", "net_rx_per_s", "net_rx_per_packet", "cpu_us_per_packet", "background_cpu"]) + "\n")
        else:
            rows = run_policies(a.reps, out, rng, a.duration)
            sys.stdout.write(table(rows, ["lat_p50_us", "lat_p99_us", "lat_tap_p99_us", "bulk_gbps", "net_rx_per_s", "net_rx_per_packet", "cpu_us_per_packet", "background_cpu"]) + "\n")


if __name__ == "__main__":
    main()
