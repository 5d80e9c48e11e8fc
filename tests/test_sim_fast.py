"""The compiled one-layer path gives exactly what the event-driven engine gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcoal.sim import fast, run_scenario
from vcoal.spec import load_scenario

VALIDATION = Path(__file__).resolve().parents[1] / "examples" / "validation"


@pytest.mark.parametrize("name", ["base", "n-only", "packet-timer", "setup", "t-only"])
def test_fast_path_equals_event_engine(name):
    spec = load_scenario(VALIDATION / f"{name}.toml").with_overrides({"duration_s": 0.05, "warmup_s": 0.005})
    des = run_scenario(spec, engine="des")
    fst = run_scenario(spec, engine="fast")
    assert fst.meta["engine"] == "fast" and des.meta["engine"] == "des"
    a, b = des.tenants[0], fst.tenants[0]
    assert a.latency_us["count"] == b.latency_us["count"]
    assert a.latency_us["mean"] == b.latency_us["mean"]
    assert a.latency_us["p99"] == pytest.approx(b.latency_us["p99"], rel=0.021)  # at most one bucket apart
    assert des.sites[0].rx.interrupts == fst.sites[0].rx.interrupts
    assert des.cpus[0].softirq == pytest.approx(fst.cpus[0].softirq, rel=1e-3)


@pytest.mark.parametrize(("p99_us", "floor_bps", "met"), [(1000.0, None, True), (1.0, None, False),
                                                         (None, 1e12, False), (1000.0, 1e3, True)])
def test_fast_path_judges_every_slo_like_the_event_engine(p99_us, floor_bps, met):
    spec = load_scenario(VALIDATION / "base.toml").with_overrides(
        {"duration_s": 0.02, "warmup_s": 0.002, "guests.*.slo": {"p99_us": p99_us, "min_throughput_bps": floor_bps}})
    des, fst = run_scenario(spec, engine="des"), run_scenario(spec, engine="fast")
    assert des.tenants[0].slo_met is fst.tenants[0].slo_met is met


def test_compiled_kernel_equals_python_reference():
    spec = load_scenario(VALIDATION / "base.toml").with_overrides({"duration_s": 0.02, "warmup_s": 0.0})
    a = fast.simulate_one_layer(spec, jit=True)
    b = fast.simulate_one_layer(spec, jit=False)
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])


def test_auto_engine_picks_fast_only_when_eligible():
    spec = load_scenario(VALIDATION / "base.toml").with_overrides({"duration_s": 0.01, "warmup_s": 0.0})
    assert run_scenario(spec).meta["engine"] == "fast"
    assert run_scenario(spec, audit=True).meta["engine"] == "des"
    ref = load_scenario(VALIDATION.parent / "reference.toml")
    with pytest.raises(ValueError, match="engine='fast' needs"):
        run_scenario(ref, engine="fast", duration_s=0.01)
