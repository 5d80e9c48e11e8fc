"""Slo.verdict: every declared objective must hold; no latency sample fails a latency target."""

import pytest

from vcoal.model.slo import Slo


@pytest.mark.parametrize(
    ("slo", "p99_us", "measured", "bps", "want"),
    [
        (Slo(), 50.0, True, 1e9, None),
        (Slo(p99_us=100.0), 100.0, True, 0.0, True),
        (Slo(p99_us=100.0), 100.1, True, 0.0, False),
        (Slo(p99_us=100.0), 1.0, False, 0.0, False),  # nothing measured
        (Slo(min_throughput_bps=1e9), 1e6, False, 1e9, True),  # no latency target: samples irrelevant
        (Slo(min_throughput_bps=1e9), 1.0, True, 0.99e9, False),
        (Slo(p99_us=100.0, min_throughput_bps=1e9), 50.0, True, 2e9, True),
        (Slo(p99_us=100.0, min_throughput_bps=1e9), 150.0, True, 2e9, False),
        (Slo(p99_us=100.0, min_throughput_bps=1e9), 50.0, True, 0.5e9, False),
        (Slo(p99_us=100.0, min_throughput_bps=1e9), 50.0, False, 2e9, False),
    ],
)
def test_verdict(slo, p99_us, measured, bps, want):
    assert slo.verdict(p99_us, measured, bps) is want
