"""Acceptance of ``qos`` on a suite against the static oracle and ``off`` (issue 12), from rows.

Usage: ``vcoal compare examples/suite --policies qos,off --oracle --json rows.json`` then
``python benchmarks/qos_acceptance.py rows.json``. Per scenario: qos CPU per packet / the oracle's,
/ off's; whether qos meets every SLO the oracle meets; the smallest request-response throughput
ratio qos / off (off: uncoalesced); the tenants qos named infeasible. Exit status 1 on a failure.
"""

from __future__ import annotations

import json
import sys

CPU_RATIO_MAX = 1.05
RR_THROUGHPUT_MIN = 0.95


def main(path: str) -> int:
    with open(path) as f:
        rows = json.load(f)
    by = {(r["scenario"], r["policy"]): r for r in rows}
    bad = 0
    print(f"{'scenario':18} {'qos/oracle':>10} {'qos/off':>8} {'SLOs':>6} {'rr thr':>7}  infeasible")
    for scenario in sorted({s for s, _ in by}):
        q, o, off = by.get((scenario, "qos")), by.get((scenario, "oracle")), by.get((scenario, "off"))
        if q is None or off is None:
            continue
        feasible = o is not None and not o.get("error")
        ratio = q["cpu_ns_per_packet"] / o["cpu_ns_per_packet"] if feasible else float("nan")
        vs_off = q["cpu_ns_per_packet"] / off["cpu_ns_per_packet"]
        met = all(t["slo_met"] is not False for t in q["tenants"])
        thr = [t["throughput_bps"] / u["throughput_bps"] for t, u in zip(q["tenants"], off["tenants"], strict=True)
               if t["kind"] == "request_response" and u["throughput_bps"] > 0]
        named = ",".join(q.get("infeasible", [])) or "-"
        ok = (not feasible or (met and ratio <= CPU_RATIO_MAX)) and vs_off <= 1.0
        ok = ok and (not thr or min(thr) >= RR_THROUGHPUT_MIN)
        bad += not ok
        print(f"{scenario:18} {ratio:10.3f} {vs_off:8.3f} {'yes' if met else 'NO':>6} "
              f"{min(thr) if thr else float('nan'):7.3f}  {named}{'' if ok else '   <- FAIL'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
