"""The simulator against the exact NAPI Min(N,T) results (shared/reference/simulation.md B.1).

Each examples/validation/*.toml is one row of the B.1 table, run through the normal ScenarioSpec
path (400k packets, 5 % warm-up). Tolerance: 3x the reference's 95 % half-width scaled to our
run length, h * sqrt(n_ref / n) (n_ref = 8 x 2e7 packets, 16 x 2e7 for n-binding); with a floor
of 0.5 % for rows whose reference interval is tiny. Interrupt rate within 2 % and CPU
utilisation within 1 % (relative; both have far lower variance than the mean sojourn).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vcoal.model.queueing import napi_min_nt
from vcoal.sim import run_scenario
from vcoal.spec import load_scenario

VALIDATION = Path(__file__).resolve().parents[1] / "examples" / "validation"

# name: (lam/us, N, T, U, S mean, S dist, analytic E[W], ref 95% half-width, ref packets, timer)
ROWS = {
    "base": (0.5, 32, 20, 2, 1, "det", 13.416667, 0.0031, 1.6e8, "absolute"),
    "n-binding": (0.5, 4, 50, 2, 1, "det", 5.7, 0.0005, 3.2e8, "absolute"),
    "t-only": (0.2, None, 10, 1, 2, "det", 9.885417, 0.0011, 1.6e8, "absolute"),
    "n-only": (0.3, 8, None, 0.5, 2, "exp", 16.947342, 0.0043, 1.6e8, "absolute"),
    "setup": (0.4, 1, 0, 1, 1, "det", 2.190476, 0.0003, 1.6e8, "absolute"),
    "high-load": (0.9, 64, 30, 0.2, 1, "det", 21.135841, 0.0183, 1.6e8, "absolute"),
    "md1": (0.5, 1, 0, 0, 1, "det", 1.5, 0.0004, 1.6e8, "absolute"),
    "packet-timer": (0.3, None, 2, 1, 1, "det", 4.4966, 0.0016, 1.6e8, "packet"),
    "packet-timer-zero-cost": (0.5, None, 1, 0, 0, "det", 1.2974, 0.0002, 1.6e8, "packet"),
    "zero-cost": (0.5, 32, 20, 0, 0, "det", 10.909091, 0.003, 1.6e8, "absolute"),
}


def test_every_b1_row_has_a_spec():
    assert {p.stem for p in VALIDATION.glob("*.toml")} == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_b1_vector(name):
    lam, n, t, u, s, dist, expected_w, h_ref, n_ref, timer = ROWS[name]
    s_m2 = 2 * s * s if dist == "exp" else s * s
    exact = napi_min_nt(lam, n, t, u, u * u, s, s_m2, timer)
    assert exact.mean_sojourn == pytest.approx(expected_w, rel=1e-4), "the formula module itself"

    result = run_scenario(load_scenario(VALIDATION / f"{name}.toml"), engine="des")
    tenant = result.tenants[0]
    npk = tenant.latency_us["count"]
    assert npk > 300_000
    tol = max(3 * h_ref * math.sqrt(n_ref / npk), 0.005 * expected_w)
    assert tenant.latency_us["mean"] == pytest.approx(exact.mean_sojourn, abs=tol)

    site = result.sites[0]
    irq_per_us = site.rx.irq_per_s / 1e6
    assert irq_per_us == pytest.approx(exact.irq_rate, rel=0.02)
    if u > 0 or s > 0:
        cpu = result.cpus[0]
        assert cpu.irq + cpu.softirq == pytest.approx(exact.cpu_util, rel=0.01)
        assert cpu.irq == pytest.approx(exact.irq_rate * u, rel=0.02)
