"""TrialResult: what one trial (simulated or real) measured, as plain serialisable data.

Latencies are in microseconds (``latency_us`` with ``mean``, ``p50``, ``p90``, ``p99``, ``p99_9``,
``max``, ``count``); rates carry their unit in the name. The JSON form is ``to_dict()``; the
results package wraps it in a versioned file with provenance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class TenantResult:
    """Per tenant: latency (one-way; round trip for request-response), throughput, drops, SLO."""

    name: str
    kind: str
    direction: str
    slo_p99_us: float | None
    slo_min_throughput_bps: float | None
    latency_us: dict[str, float]
    rtt_us: dict[str, float] | None
    throughput_pps: float
    throughput_bps: float
    sent: int
    delivered: int
    drops: int
    slo_met: bool | None
    latency_cdf_us: list[tuple[float, float]] = field(default_factory=list)

    @property
    def p99_us(self) -> float:
        """The latency the SLO is judged on: round trip where it applies, else one way."""
        src = self.rtt_us if self.rtt_us else self.latency_us
        return src.get("p99", float("nan"))


@dataclass(slots=True)
class DirResult:
    """Per site and direction: rates over the measured period."""

    packets: int
    bytes: int
    interrupts: int
    polls: int
    drops: int
    irq_per_s: float
    pkts_per_irq: float


@dataclass(slots=True)
class SiteResult:
    """Per coalescing site (layer + instance)."""

    site: str
    layer: str
    rx: DirResult
    tx: DirResult
    cpu_ns: int
    params_final: dict[str, Any]


@dataclass(slots=True)
class CpuResult:
    """Per CPU (driver-domain core or guest vCPU): utilisation split, fractions of the period."""

    name: str
    irq: float
    softirq: float
    app: float
    idle: float


@dataclass(slots=True)
class TrialResult:
    """Everything one trial produced; reports and policies read only this."""

    scenario: str
    spec_hash: str
    seed: int
    policy: str
    policy_params: dict[str, Any]
    duration_s: float
    measured_s: float
    tenants: list[TenantResult]
    sites: list[SiteResult]
    cpus: list[CpuResult]
    windows: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def cpu_ns_per_packet(self) -> float:
        """Busy CPU time (all CPUs, all classes) per delivered packet."""
        busy = sum((c.irq + c.softirq + c.app) for c in self.cpus) * self.measured_s * 1e9
        delivered = sum(t.delivered for t in self.tenants)
        return busy / delivered if delivered else float("nan")

    def irq_per_s(self) -> float:
        """All interrupts (physical and virtual, both directions) per second."""
        return sum(s.rx.irq_per_s + s.tx.irq_per_s for s in self.sites)

    def infeasible_tenants(self) -> list[str]:
        """Tenants the policy named infeasible in its last window (decision input ``<tenant>.infeasible``)."""
        if not self.decisions:
            return []
        last = max(d["window"] for d in self.decisions)
        return sorted({k.removesuffix(".infeasible") for d in self.decisions if d["window"] == last
                       for k, v in d.get("inputs", {}).items() if k.endswith(".infeasible") and v})

    def all_slos_met(self) -> bool:
        """True when no tenant misses a declared SLO."""
        return all(t.slo_met is not False for t in self.tenants)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        d = dict(data)
        d["tenants"] = [
            TenantResult(**{**t, "latency_cdf_us": [tuple(p) for p in t.get("latency_cdf_us", [])]})
            for t in d["tenants"]
        ]
        d["sites"] = [
            SiteResult(**{**s, "rx": DirResult(**s["rx"]), "tx": DirResult(**s["tx"])}) for s in d["sites"]
        ]
        d["cpus"] = [CpuResult(**c) for c in d["cpus"]]
        return cls(**d)
