"""``vcoal testbed compare``: interleaved reps, the oracle grid, medians [min..max], the testbed oracle.

The trials here are stand-ins (no root needed): a function of the configuration that plays a
kernel where deferring the shared hop saves NET_RX and deferring a tenant's own path does not, and
where deferring the latency tenant's path costs it its SLO.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vcoal.experiments.testbed_compare import (
    ORACLE_TIMEOUTS_US,
    configs,
    oracle_grid,
    run_testbed_compare,
    spread,
)
from vcoal.model.result import CpuResult, DirResult, SiteResult, TenantResult, TrialResult
from vcoal.results.store import iter_documents
from vcoal.spec import load_scenario

SPEC = load_scenario(Path(__file__).resolve().parents[1] / "examples" / "testbed" / "mixed.toml")


def _deferred_us(policy, site: str) -> int:
    table = {**getattr(policy.params, site.split(":")[0], {}), **getattr(policy.params, "sites", {}).get(site, {})}
    return table.get("gro_flush_timeout_ns", 0) // 1000 if table.get("napi_defer_hard_irqs") else 0


def fake_kernel(calls: list):
    def trial(spec, policy, duration_s, window_s):
        key = (policy.name, repr(getattr(policy, "params", None)))
        rep = calls.count(key)  # 0, 1, 2: this configuration's rep
        calls.append(key)
        nic_us = _deferred_us(policy, "nic:q0") if policy.name == "static" else 0
        lat_us = _deferred_us(policy, "frontend:lat") if policy.name == "static" else 0
        net_rx = 0.4 / (1 + nic_us / 25) + 0.001 * rep  # the shared hop saves; reps differ a little
        p99 = 90 + 1.2 * nic_us + 3 * lat_us
        tenants = [
            TenantResult("lat", "request_response", "rx", 300.0, None, {"p99": p99}, {"p99": p99}, 1e4, 1e7,
                         1000, 1000, 0, p99 <= 300.0),
            TenantResult("bulk", "bulk", "rx", None, None, {}, None, 1e5, 2e9, 10_000, 10_000, 0, None),
        ]
        d = DirResult(1000, 64_000, 500, 500, 0, 100.0, 2.0)
        sites = [SiteResult(s, s.split(":")[0], d, d, 0, {}) for s in ("nic:q0", "backend:lat", "frontend:lat")]
        return TrialResult(spec.name, "h", 1, policy.name, {}, 4.0, 4.0, tenants, sites, [CpuResult("t", 0, 0, 0, 1)],
                           meta={"net_rx_per_packet": net_rx, "tasks_cpu_ns_per_packet": 3000.0 * net_rx / 0.4,
                                 "wall_s": 7.0, "attribution": {"source": "napi_poll tracepoint"}})
    return trial


def test_grid_covers_the_shared_hop_each_tenant_path_and_every_hop():
    grid = oracle_grid(SPEC)
    assert grid[0].params == {} and all(c.grid and c.policy == "static" for c in grid)
    labels = [c.label for c in grid]
    for group in ("shared hop", "lat path", "bulk path", "every hop"):
        assert [lb for lb in labels if lb.startswith(f"grid: {group} ")] == [f"grid: {group} {t} us" for t in ORACLE_TIMEOUTS_US]
    lat_path = next(c for c in grid if c.label == "grid: lat path 50 us").params["sites"]
    assert lat_path == {s: {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000} for s in ("backend:lat", "frontend:lat")}
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        configs(SPEC, ["off", "nope"], False)


def test_interleaved_reps_stored_aggregated_and_the_cheapest_feasible_grid_point_is_the_oracle(tmp_path):
    calls: list = []
    seen: list[str] = []
    out = run_testbed_compare([SPEC], ["off", "qos"], trial_fn=fake_kernel(calls), oracle=True, reps=3,
                              out_dir=tmp_path / "res", on_done=lambda done, total, label: seen.append(label))
    n = 2 + len(oracle_grid(SPEC))
    assert out.trials == 3 * n and out.failed == 0 and not out.interrupted
    # interleaved: every configuration's rep 1 before any rep 2
    assert [lb.rsplit(" rep ", 1)[1] for lb in seen] == ["1"] * n + ["2"] * n + ["3"] * n
    rows = {r["label"]: r for r in out.rows}
    off = rows["off"]
    assert off["reps"] == 3 and off["all_met_reps"] == 3 and off["tenants"]["lat"]["slo_met_reps"] == 3
    assert off["net_rx_per_packet"] == pytest.approx({"median": 0.401, "min": 0.400, "max": 0.402})
    # deferring the shared hop 200 us costs lat its SLO (p99 330 > 300): infeasible; 100 us is the cheapest that holds
    assert rows["grid: shared hop 200 us"]["all_met_reps"] == 0
    best = out.oracle[SPEC.name]
    assert best["label"] == "grid: shared hop 100 us"
    assert best["net_rx_per_packet"]["median"] == pytest.approx(0.4 / 5 + 0.001)
    docs = list(iter_documents(tmp_path / "res"))
    assert len(docs) == 3 * n and {d.doc["trial"]["axes"]["rep"] for d in docs} == {1, 2, 3}


def test_a_failing_trial_is_counted_and_kept_in_its_row(tmp_path):
    def broken(spec, policy, duration_s, window_s):
        raise RuntimeError("sockperf exited early (1)")
    out = run_testbed_compare([SPEC], ["off"], trial_fn=broken, reps=2, out_dir=tmp_path / "r")
    assert out.failed == 2 and out.rows[0]["ok"] == 0 and out.rows[0]["errors"][0].startswith("RuntimeError: sockperf")
    assert out.oracle == {SPEC.name: None}
    assert [d.doc["status"] for d in iter_documents(tmp_path / "r")] == ["failed", "failed"]


def test_spread_ignores_missing_values():
    assert spread([3.0, float("nan"), 1.0, None, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([float("nan")]) is None
