"""Golden runs of the event engine: the cases, their fingerprints, and the script that records them.

A fingerprint is what the engine's identity tests compared between two engines: the TrialResult
(every figure, window series and decision; wall time and engine name stripped), every delivered
packet ``(tenant, t0, delivered)`` and the raw counter samples, each as a SHA-256, plus a few
readable figures that say where a mismatch is. ``tests/golden/sim/goldens.json`` holds them;
``tests/golden/sim/README.md`` names the engine and commit that recorded them.

    PYTHONPATH=src:tests .venv/bin/python tests/sim_golden.py [--engine des] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np

from vcoal.policies import make_policy
from vcoal.sim import run_scenario
from vcoal.spec import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "sim" / "goldens.json"
SUITE = sorted((EXAMPLES / "suite").glob("*.toml"))
VALIDATION = sorted((EXAMPLES / "validation").glob("*.toml"))

OVERLOAD = {
    "duration_s": 0.004, "seed": 5, "nic": {"queues": 2, "rx_ring": 100_000, "tx_ring": 100_000},
    "cost": {"service_dist": "exp", "irq_dist": "exp", "nic_pkt_us": 0.05, "bridge_pkt_us": 0.05,
             "netback_pkt_us": 0.05, "byte_copy_ns": 0.0, "frontend_pkt_us": 0.05, "stack_pkt_us": 0.1},
    "guests": [
        {"name": "tx", "ring": 65536, "workload": {"kind": "poisson", "direction": "tx", "rate_pps": 2e6, "app_us": 0.2}},
        {"name": "rx", "ring": 65536, "workload": {"kind": "poisson", "rate_pps": 3e6, "packet_bytes": 64}},
    ],
}  # fmt: skip
PLACED = {
    "name": "pair", "duration_s": 0.01, "warmup_s": 0.001,
    "host": {"driver_domain_cores": 3}, "nic": {"queues": 2, "irq_cores": [0, 0]},
    "guests": [
        {"name": "rr", "nic_queue": 0, "backend_core": 0, "workload": {"kind": "request_response", "think_us": 20}},
        {"name": "bulk", "nic_queue": 1, "backend_core": 0, "workload": {"kind": "bulk", "pace_gbps": 0.5}},
        {"name": "pois", "nic_queue": 1, "backend_core": 0, "workload": {"kind": "poisson", "rate_pps": 20000}},
    ],
}  # fmt: skip


def _reference_exp():
    return load_scenario(EXAMPLES / "reference.toml").with_overrides(
        {"cost.service_dist": "exp", "cost.irq_dist": "exp", "guests.g3.workload.window_pkts": 512}
    )


def cases() -> dict[str, tuple[Callable, str | None, dict]]:
    """Case id -> (spec factory, policy name or None, run_scenario keywords)."""
    out: dict[str, tuple[Callable, str | None, dict]] = {
        "reference": (lambda: load_scenario(EXAMPLES / "reference.toml"), None, {"duration_s": 0.03}),
        "reference-exp/net_dim": (_reference_exp, "net_dim", {"duration_s": 0.01}),
        "overload": (lambda: parse_scenario(OVERLOAD), None, {}),
        "reference-event-windows/intel_itr": (
            lambda: load_scenario(EXAMPLES / "reference.toml").with_overrides({"window.events": 5000}),
            "intel_itr", {"duration_s": 0.01}),
        "placement-shared-core": (lambda: parse_scenario(PLACED), None, {}),
    }  # fmt: skip
    for path in SUITE:
        for policy in (None, "static", "qos"):
            spec = lambda p=path: load_scenario(p).with_overrides({"window.duration_us": 2000.0})  # noqa: E731
            out[f"suite/{path.stem}/{policy or 'scenario'}"] = (spec, policy, {"duration_s": 0.012})
    for path in VALIDATION:
        out[f"validation/{path.stem}"] = (lambda p=path: load_scenario(p), None, {"duration_s": 0.02})
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def strip(result) -> str:
    """The TrialResult as canonical JSON without wall time, engine name, the spec's hash (a
    function of the spec schema, not of the engine) and the softirq-run count (which the
    recording engine did not have) (NaN-safe)."""
    d = result.to_dict()
    d.pop("spec_hash")
    for key in ("wall_s", "engine", "softirq_runs", "softirq_runs_by_cpu"):
        d["meta"].pop(key, None)
    return json.dumps(d, sort_keys=True)


def samples_text(samples: list) -> str:
    """The counter samples as canonical text (site order kept: it is the engine's)."""
    return json.dumps([[t, [[str(site), *astuple(c)] for site, c in s.items()]] for t, s in samples])


def fingerprint(case: str, engine: str, **run_kw) -> dict:
    """Run ``case`` on ``engine`` and return its fingerprint (or the error it raised)."""
    factory, policy_name, kw = cases()[case]
    deliveries: list = []
    samples: list = []
    policy = make_policy(policy_name) if policy_name else None
    try:
        r = run_scenario(factory(), policy, engine=engine, deliveries=deliveries, samples=samples, **kw, **run_kw)
    except Exception as exc:  # a degenerate scenario a policy refuses: the error is the result
        return {"error": repr(exc)}
    return {
        "result_sha256": _sha(strip(r).encode()),
        "deliveries_sha256": _sha(np.array(deliveries, dtype=np.int64).tobytes()),
        "samples_sha256": _sha(samples_text(samples).encode()),
        "deliveries": len(deliveries),
        "events": r.meta["events"],
        "delivered": {t.name: t.delivered for t in r.tenants},
        "interrupts": {s.site: [s.rx.interrupts, s.tx.interrupts] for s in r.sites},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="des")
    ap.add_argument("--out", type=Path, default=GOLDEN)
    args = ap.parse_args()
    got = {case: fingerprint(case, args.engine) for case in cases()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    print(f"{len(got)} cases -> {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
