"""The compiled one-layer path against the event-driven engine: same latency count, mean and
interrupts, p99 within one histogram bucket; its chunking, trace input, memory and SLO verdicts."""

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


def test_a_timer_semantics_the_recursion_lacks_runs_on_the_engine(monkeypatch):
    spec = load_scenario(VALIDATION / "t-only.toml").with_overrides(
        {"duration_s": 0.01, "warmup_s": 0.0, "nic.coalesce.timer": "itr"})
    assert run_scenario(spec).meta["engine"] == "fast"
    monkeypatch.setattr(fast, "MODE", {k: v for k, v in fast.MODE.items() if k.value != "itr"})
    assert run_scenario(spec).meta["engine"] == "compiled"


CHUNK_CASES = [
    ("base", {}),
    ("n-only", {}),  # frame cap 8 with no timer: the look-ahead crosses chunk ends
    ("packet-timer", {}),  # inactivity runs cross chunk ends
    ("packet-timer", {"nic.coalesce.rx_frames": 5}),
    ("t-only", {"nic.coalesce.timer": "itr"}),
    ("base", {"cost.irq_dist": "exp", "cost.service_dist": "exp", "nic.coalesce.rx_frames": 200}),
]


@pytest.mark.parametrize(("name", "overrides"), CHUNK_CASES)
def test_chunked_path_equals_the_whole_path(name, overrides):
    """Streaming the path in small chunks (state carried, look-ahead respected) changes nothing."""
    spec = load_scenario(VALIDATION / f"{name}.toml").with_overrides({"duration_s": 0.01, "warmup_s": 0.0, **overrides})
    whole = fast.simulate_one_layer(spec, chunk=10**7)
    for chunk in (1, 7, 100):
        part = fast.simulate_one_layer(spec, chunk=chunk)
        assert all(np.array_equal(a, b) for a, b in zip(whole[:6], part[:6], strict=True)), chunk
        assert whole[6] == part[6] and len(whole[0]) > 1000
    py = fast.simulate_one_layer(spec, jit=False, chunk=37)
    assert all(np.array_equal(a, b) for a, b in zip(whole[:6], py[:6], strict=True))


def test_chunked_trace_equals_the_whole_path():
    rows = [[float(5 * i + (i % 3)), 64 + i % 7, "rx" if i % 5 else "tx"] for i in range(3000)]
    spec = load_scenario(VALIDATION / "n-only.toml").with_overrides(
        {"duration_s": 0.02, "warmup_s": 0.0, "guests.*.workload": {"kind": "trace", "trace_rows": rows}})
    whole, part = fast.simulate_one_layer(spec, chunk=10**7), fast.simulate_one_layer(spec, chunk=13)
    assert len(whole[0]) == 2400 and whole[1].shape[0] == 2400  # per-packet sizes
    assert all(np.array_equal(a, b) for a, b in zip(whole[:6], part[:6], strict=True))


def test_fast_path_memory_does_not_grow_with_run_length():
    import tracemalloc

    base = load_scenario(VALIDATION / "base.toml")
    fast.run_fast(base.with_overrides({"duration_s": 0.001, "warmup_s": 0.0}))  # compile / load first
    peak = {}
    for dur in (0.4, 1.6):  # 200 k and 800 k packets
        tracemalloc.start()
        r = fast.run_fast(base.with_overrides({"duration_s": dur, "warmup_s": 0.0}))
        peak[dur] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert r.tenants[0].delivered > dur * 0.45e6
    # an array per packet would be 4x larger on the longer run (800 k packets x 8 B = 6.4 MB each)
    assert peak[1.6] < 1.2 * peak[0.4] and peak[1.6] < 6e6, peak
