"""Counters and window statistics: what a policy observes each window.

Raw counters (``CounterSample``) are monotonic and may wrap (32-bit in many kernel interfaces,
16-bit event counters in lib/dim); ``WindowStats`` carries wrap-safe deltas over one window,
computed once, the way lib/dim's ``dim_calc_stats`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vcoal.model.params import CoalesceParams
from vcoal.model.slo import Slo
from vcoal.model.units import NS_PER_S, Site


def wrap_delta(new: int, old: int, bits: int = 64) -> int:
    """Difference of two readings of a counter that wraps at ``2**bits``."""
    return (new - old) % (1 << bits)


@dataclass(frozen=True, slots=True)
class DirStats:
    """Per-direction counts over one window at one site."""

    packets: int = 0
    bytes: int = 0
    interrupts: int = 0
    polls: int = 0
    drops: int = 0

    def __add__(self, other: DirStats) -> DirStats:
        return DirStats(
            self.packets + other.packets,
            self.bytes + other.bytes,
            self.interrupts + other.interrupts,
            self.polls + other.polls,
            self.drops + other.drops,
        )


@dataclass(frozen=True, slots=True)
class CounterSample:
    """Raw monotonic counters of one site at one instant (simulator probe, /proc, netlink)."""

    t_ns: int
    rx: DirStats
    tx: DirStats
    cpu_ns: int = 0


def _delta(new: DirStats, old: DirStats, bits: int) -> DirStats:
    return DirStats(
        wrap_delta(new.packets, old.packets, bits),
        wrap_delta(new.bytes, old.bytes, bits),
        wrap_delta(new.interrupts, old.interrupts, bits),
        wrap_delta(new.polls, old.polls, bits),
        wrap_delta(new.drops, old.drops, bits),
    )


@dataclass(frozen=True, slots=True)
class SiteStats:
    """What happened at one site during one window, and the parameters that were in force."""

    site: Site
    interval_ns: int
    rx: DirStats
    tx: DirStats
    cpu_ns: int
    params: CoalesceParams

    @classmethod
    def from_samples(
        cls, site: Site, old: CounterSample, new: CounterSample, params: CoalesceParams, bits: int = 64
    ) -> SiteStats:
        """Wrap-safe deltas between two samples; a zero or negative interval gives interval 0."""
        return cls(
            site=site,
            interval_ns=max(0, new.t_ns - old.t_ns),
            rx=_delta(new.rx, old.rx, bits),
            tx=_delta(new.tx, old.tx, bits),
            cpu_ns=wrap_delta(new.cpu_ns, old.cpu_ns, bits),
            params=params,
        )

    def pps(self, direction: str = "rx") -> float:
        """Packets per second in one direction (0 for an empty interval)."""
        d = self.rx if direction == "rx" else self.tx
        return d.packets * NS_PER_S / self.interval_ns if self.interval_ns else 0.0

    def bps(self, direction: str = "rx") -> float:
        """Bits per second in one direction."""
        d = self.rx if direction == "rx" else self.tx
        return d.bytes * 8 * NS_PER_S / self.interval_ns if self.interval_ns else 0.0

    def irq_per_s(self, direction: str = "rx") -> float:
        """Interrupts per second in one direction."""
        d = self.rx if direction == "rx" else self.tx
        return d.interrupts * NS_PER_S / self.interval_ns if self.interval_ns else 0.0


@dataclass(frozen=True, slots=True)
class TenantStats:
    """A tenant's measured service over one window, when the environment can measure it."""

    tenant: str
    slo: Slo
    packets: int = 0
    bytes: int = 0
    p50_us: float | None = None
    p99_us: float | None = None


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Everything a policy observes at the end of one window."""

    index: int
    t_ns: int
    interval_ns: int
    sites: Mapping[Site, SiteStats]
    tenants: Mapping[str, TenantStats] = field(default_factory=dict)


def window_to_dict(w: WindowStats) -> dict:
    """JSON-friendly form of a window (result files, recorded traces for differential tests)."""
    return {
        "index": w.index,
        "t_ns": w.t_ns,
        "interval_ns": w.interval_ns,
        "sites": {
            str(site): {
                "interval_ns": s.interval_ns,
                "rx": list(_dir_tuple(s.rx)),
                "tx": list(_dir_tuple(s.tx)),
                "cpu_ns": s.cpu_ns,
                "params": s.params.to_dict(),
            }
            for site, s in w.sites.items()
        },
        "tenants": {
            name: {
                "p99_us_slo": t.slo.p99_us,
                "min_throughput_bps_slo": t.slo.min_throughput_bps,
                "packets": t.packets,
                "bytes": t.bytes,
                "p50_us": t.p50_us,
                "p99_us": t.p99_us,
            }
            for name, t in w.tenants.items()
        },
    }


def window_from_dict(d: dict) -> WindowStats:
    """Inverse of ``window_to_dict``."""
    sites = {}
    for key, s in d["sites"].items():
        site = Site.parse(key)
        sites[site] = SiteStats(
            site=site,
            interval_ns=s["interval_ns"],
            rx=DirStats(*s["rx"]),
            tx=DirStats(*s["tx"]),
            cpu_ns=s["cpu_ns"],
            params=CoalesceParams.from_dict(s["params"]),
        )
    tenants = {
        name: TenantStats(
            tenant=name,
            slo=Slo(t["p99_us_slo"], t["min_throughput_bps_slo"]),
            packets=t["packets"],
            bytes=t["bytes"],
            p50_us=t["p50_us"],
            p99_us=t["p99_us"],
        )
        for name, t in d.get("tenants", {}).items()
    }
    return WindowStats(d["index"], d["t_ns"], d["interval_ns"], sites, tenants)


def _dir_tuple(d: DirStats) -> tuple[int, int, int, int, int]:
    return (d.packets, d.bytes, d.interrupts, d.polls, d.drops)
