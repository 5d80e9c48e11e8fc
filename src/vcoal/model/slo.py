"""Per-tenant service level objectives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Slo:
    """A tenant's objective: p99 latency target and an optional minimum throughput.

    ``p99_us`` is None for a throughput-seeking tenant without a latency target.
    """

    p99_us: float | None = None
    min_throughput_bps: float | None = None

    def latency_met(self, p99_us: float) -> bool | None:
        """True/False when a latency target exists, None otherwise."""
        if self.p99_us is None:
            return None
        return p99_us <= self.p99_us

    def throughput_met(self, throughput_bps: float) -> bool | None:
        """True/False when a throughput floor exists, None otherwise."""
        if self.min_throughput_bps is None:
            return None
        return throughput_bps >= self.min_throughput_bps

    def verdict(self, p99_us: float, measured: bool, throughput_bps: float) -> bool | None:
        """Every declared objective met (None when none is declared); ``measured`` is False when
        no latency sample exists, which fails a latency target."""
        latency = self.latency_met(p99_us) if measured else (False if self.p99_us is not None else None)
        verdicts = [v for v in (latency, self.throughput_met(throughput_bps)) if v is not None]
        return all(verdicts) if verdicts else None
