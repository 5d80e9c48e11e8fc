"""Acceptance of ``qos`` on a suite against the static oracle and ``off`` (issue 12), from rows.

Usage: ``vcoal compare examples/suite --policies qos,off --oracle --json rows.json`` then
``python benchmarks/qos_acceptance.py rows.json``. Per scenario: qos CPU per packet / the oracle's,
/ off's; whether qos meets every SLO the oracle meets; the smallest request-response throughput
ratio qos / off (off: uncoalesced); the tenants qos named infeasible. Exit status 1 on a failure.

The oracle is the cheapest static setting meeting every p99 SLO; it may buy its CPU per packet by
slowing a closed request-response loop (fewer, cheaper packets), which ``qos`` may not (it keeps
``RR_THROUGHPUT_MIN`` of the least-delay rate). ``python benchmarks/qos_acceptance.py --floor-oracle
examples/suite rows.json`` adds, per scenario, the oracle under that constraint too (policy
``oracle-rr95``: the same search, a grid point counting as feasible only when every request-response
tenant keeps ``RR_THROUGHPUT_MIN`` of its throughput under ``off``; the rows must hold ``off``'s), and
the table then judges qos against it (column ``qos/rr95``); the plain oracle's ratio is shown as well.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

CPU_RATIO_MAX = 1.05
RR_THROUGHPUT_MIN = 0.95
FLOOR_ORACLE = "oracle-rr95"


def rr_ratios(row: dict, off: dict) -> list[float]:
    """Throughput of every request-response tenant of ``row`` over its throughput under ``off``."""
    return [t["throughput_bps"] / u["throughput_bps"] for t, u in zip(row["tenants"], off["tenants"], strict=True)
            if t["kind"] == "request_response" and u["throughput_bps"] > 0]


def floor_oracle(suite: str, rows_path: str, workers: int = 2) -> None:
    """Append the throughput-floor oracle of every scenario of ``suite`` to the rows file."""
    from vcoal.experiments.compare import run_rows, suite_paths
    from vcoal.experiments.oracle import best_feasible, descend, expand, search_grid, wants_descent
    from vcoal.spec import load_scenario

    with open(rows_path) as f:
        rows = json.load(f)
    offs = {r["scenario"]: r for r in rows if r["policy"] == "off"}
    out = [r for r in rows if r["policy"] != FLOOR_ORACLE]
    for path in suite_paths(suite):
        spec = load_scenario(path)
        off = offs[spec.name]

        def run(tables: list[dict], spec=spec, off=off) -> list[dict]:
            got = run_rows([(spec, "static", t) for t in tables], workers=workers)
            for r in got:  # feasible: every SLO met and every request-response tenant at the floor
                r["all_slos_met"] = bool(r["all_slos_met"]) and all(x >= RR_THROUGHPUT_MIN for x in rr_ratios(r, off))
                r["policy"] = FLOOR_ORACLE
            return got

        grid = search_grid(spec)
        first = run(grid)
        best = best_feasible(first)
        if best is not None and wants_descent(spec):
            start = expand(spec, grid[next(i for i, r in enumerate(first) if r is best)])
            best = descend(spec, start, best, run).row
        out.append(best or {"scenario": spec.name, "policy": FLOOR_ORACLE, "tenants": [], "error": "none feasible",
                            "cpu_ns_per_packet": math.nan})
    with open(rows_path, "w") as f:
        json.dump(out, f)


def main(path: str) -> int:
    with open(path) as f:
        rows = json.load(f)
    by = {(r["scenario"], r["policy"]): r for r in rows}
    bad = 0
    print(f"{'scenario':18} {'qos/oracle':>10} {'qos/rr95':>8} {'qos/off':>8} {'SLOs':>6} {'rr thr':>7}  infeasible")
    for scenario in sorted({s for s, _ in by}):
        q, o, off = by.get((scenario, "qos")), by.get((scenario, "oracle")), by.get((scenario, "off"))
        f = by.get((scenario, FLOOR_ORACLE))
        if q is None or off is None:
            continue
        feasible = o is not None and not o.get("error")
        ratio = q["cpu_ns_per_packet"] / o["cpu_ns_per_packet"] if feasible else float("nan")
        f_ok = f is not None and not f.get("error")
        f_ratio = q["cpu_ns_per_packet"] / f["cpu_ns_per_packet"] if f_ok else float("nan")
        judged = f_ratio if f is not None else ratio  # the floor oracle when it was searched
        vs_off = q["cpu_ns_per_packet"] / off["cpu_ns_per_packet"]
        met = all(t["slo_met"] is not False for t in q["tenants"])
        thr = rr_ratios(q, off)
        named = ",".join(q.get("infeasible", [])) or "-"
        ok = (not feasible or (met and (math.isnan(judged) or judged <= CPU_RATIO_MAX))) and vs_off <= 1.0
        ok = ok and (not thr or min(thr) >= RR_THROUGHPUT_MIN)
        bad += not ok
        print(f"{scenario:18} {ratio:10.3f} {f_ratio:8.3f} {vs_off:8.3f} {'yes' if met else 'NO':>6} "
              f"{min(thr) if thr else float('nan'):7.3f}  {named}{'' if ok else '   <- FAIL'}")
    return 1 if bad else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  vcoal compare examples/suite --policies qos,off --oracle --json rows.json\n"
               "  .venv/bin/python benchmarks/qos_acceptance.py rows.json\n"
               "  .venv/bin/python benchmarks/qos_acceptance.py --floor-oracle examples/suite rows.json")
    ap.add_argument("rows", help="the JSON rows `vcoal compare --json` wrote")
    ap.add_argument("--floor-oracle", metavar="SUITE",
                    help="append to ROWS, per scenario of SUITE, the oracle that keeps request-response "
                         "throughput (its own search), then stop; run again without it to judge")
    args = ap.parse_args()
    if args.floor_oracle:
        floor_oracle(args.floor_oracle, args.rows)
        sys.exit(0)
    sys.exit(main(args.rows))
