"""``net_dim``: Linux DIM (lib/dim, "net_dim") per NIC queue and direction, as the kernel runs it.

Each (site, direction) is its own ``struct dim`` (mlx5 runs one per RQ and one per SQ; virtio-net
one per receive queue). The algorithm itself is a port of the kernel code in ``_dim.py``; this
module feeds it and turns its profile index into coalescing parameters.

How a WindowStats maps to the kernel's ``struct dim_sample``
------------------------------------------------------------
The kernel samples cumulative counters (packets and bytes as u32, events as u16, ktime) after each
NAPI completion. vcoal sees per-window deltas, so every instance keeps its own cumulative counters,
adding each window's ``packets``, ``bytes`` and ``interrupts`` of its direction modulo 2**32 /
2**32 / 2**16, and its clock advances by the site's ``interval_ns``. At the end of every window one
sample is taken and handed to ``net_dim``: windows accumulate until the u16 event gap reaches
DIM_NEVENTS (64), exactly as in the kernel; a window with >= 64 events but no elapsed microsecond is
discarded (``dim_calc_stats`` fails) and measurement continues. Events are the site's interrupts in
that direction (mlx5 ``cq.event_ctr``, virtio-net ``rq->calls``).

Consequences of window granularity (stated, not hidden): a decision is taken at most once per
window, even if the window holds several multiples of 64 events; a single window with more than
65535 events of one direction would alias in the u16 counter, as it would in the kernel.

Profile application
-------------------
On the first ``decide`` the driver's default profile (index ``start_profile``, kernel default 1) is
applied, as drivers do when adaptive moderation is switched on. After a profile change the kernel
restarts the measurement once the work item has applied it: here, if the next window reports the
new profile in force (``SiteStats.params``) the new window opens at that window's start (the
instant the caller applied it); otherwise that window is discarded and the window opens at its end.
EQE mode uses the ``absolute`` timer, CQE mode the ``packet`` timer (every packet restarts it).

By default only ``nic`` sites run DIM; ``layers="nic,backend"`` also runs it on the backend sites,
which is what virtio-net's guest-side rx DIM does (it programs the device's, i.e. the backend's,
notification coalescing through VIRTIO_NET_CTRL_NOTF_COAL).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vcoal.model.params import CoalesceParams, TimerMode
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext
from vcoal.model.stats import SiteStats, WindowStats
from vcoal.model.units import Site
from vcoal.policies._common import apply_changes, can_set, check_choice, check_int, parse_layers
from vcoal.policies._dim import (
    NUM_PROFILES,
    PROFILES,
    Dim,
    DimOutcome,
    DimSample,
    MeasureState,
)
from vcoal.policies.base import PolicyBase

_DIRECTIONS = ("rx", "tx")
_TIMER = {"eqe": TimerMode.ABSOLUTE, "cqe": TimerMode.PACKET}


@dataclass(slots=True)
class _Instance:
    """One DIM instance: the kernel state plus the cumulative counters fed to it."""

    site: Site
    direction: str
    dim: Dim
    sample: DimSample = field(default_factory=lambda: DimSample(0, 0, 0, 0))
    enabled: bool = False  # the default profile has been handed out
    outcome: DimOutcome | None = None  # of the latest window, until decide() consumes it


class NetDim(PolicyBase):
    """Linux net_dim: hill-climbing over the 5-entry (usec, pkts) profile table, per queue."""

    name = "net_dim"
    description = "Linux DIM (lib/dim): throughput-seeking hill climb over 5 profiles, per queue"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``mode``: eqe|cqe profile table and timer; ``rx``/``tx``: directions under DIM;
        ``layers``: comma-separated layers whose sites run DIM; ``start_profile``: index 0-4."""

        mode: str = "eqe"
        rx: bool = True
        tx: bool = True
        layers: str = "nic"
        start_profile: int = 1

        def __post_init__(self) -> None:
            check_choice("mode", self.mode, tuple(_TIMER))
            for name in ("rx", "tx"):
                if not isinstance(getattr(self, name), bool):
                    raise ValueError(f"{name}={getattr(self, name)!r}: must be true or false")
            if not (self.rx or self.tx):
                raise ValueError("rx=false, tx=false: enable DIM in at least one direction")
            parse_layers("layers", self.layers)
            check_int("start_profile", self.start_profile, 0, NUM_PROFILES - 1)

    def reset(self, context: PolicyContext, rng) -> None:
        super().reset(context, rng)
        layers = set(parse_layers("layers", self.params.layers))
        self._current: dict[Site, CoalesceParams] = {}
        self._instances: list[_Instance] = []
        for site, info in context.sites.items():
            if site.layer not in layers:
                continue
            for d in _DIRECTIONS:
                if getattr(self.params, d) and (can_set(info, f"{d}_usecs") or can_set(info, f"{d}_frames")):
                    self._instances.append(_Instance(site, d, Dim(self.params.start_profile)))
                    self._current[site] = info.initial

    # ---- helpers ------------------------------------------------------------------------------
    def profile(self, direction: str, ix: int) -> tuple[int, int]:
        """(usec, pkts) of profile ``ix`` in this policy's table for ``direction``."""
        return PROFILES[(direction, self.params.mode)][ix]

    def _changes(self, inst: _Instance) -> dict:
        usec, pkts = self.profile(inst.direction, inst.dim.profile_ix)
        return {
            f"{inst.direction}_usecs": usec,
            f"{inst.direction}_frames": pkts,
            "timer": _TIMER[self.params.mode],
        }

    def _in_force(self, stats: SiteStats, inst: _Instance) -> bool:
        info = self.context.sites[inst.site]
        want = apply_changes(stats.params, info, self._changes(inst))
        return want == stats.params

    # ---- protocol -----------------------------------------------------------------------------
    def observe(self, stats: WindowStats) -> None:
        """Advance each instance's counters by the window and run the kernel's ``net_dim``."""
        super().observe(stats)
        for inst in self._instances:
            s = stats.sites.get(inst.site)
            if s is None:
                continue
            d = s.rx if inst.direction == "rx" else s.tx
            old = inst.sample
            inst.sample = DimSample(
                old.time_ns + s.interval_ns,
                (old.pkt_ctr + d.packets) % (1 << 32),
                (old.byte_ctr + d.bytes) % (1 << 32),
                (old.event_ctr + d.interrupts) % (1 << 16),
            )
            if not inst.enabled:
                continue
            if inst.dim.state is MeasureState.APPLY_NEW_PROFILE:
                inst.dim.work_done(old if self._in_force(s, inst) else None)
            inst.outcome = inst.dim.net_dim(inst.sample)

    def decide(self) -> Decision | None:
        """Hand out the default profile once, then the profile of every window that changed it."""
        if self.context is None or not self._instances:
            return None
        index = self.window.index if self.window is not None else 0
        notes: dict[Site, list[str]] = {}
        inputs: dict[Site, dict[str, float]] = {}
        changed_sites: set[Site] = set()
        for inst in self._instances:
            if not inst.enabled:
                inst.enabled = True
                inst.dim.state = MeasureState.APPLY_NEW_PROFILE
                usec, pkts = self.profile(inst.direction, inst.dim.profile_ix)
                notes.setdefault(inst.site, []).append(
                    f"{inst.direction}: adaptive moderation on, default profile {inst.dim.profile_ix} "
                    f"({usec} us, {pkts} pkts)"
                )
                changed_sites.add(inst.site)
                continue
            out, inst.outcome = inst.outcome, None
            if out is None or not (out.closed or out.discarded):
                continue
            d = inst.direction
            if out.discarded:
                notes.setdefault(inst.site, []).append(f"{d}: >= 64 events in 0 us, window kept open")
                continue
            assert out.stats is not None
            usec, pkts = self.profile(d, out.new_ix)
            cmp = out.cmp.value if out.cmp is not None else "tired countdown"
            notes.setdefault(inst.site, []).append(
                f"{d}: {cmp}, {out.old_tune.value} -> {out.new_tune.value}, "
                f"profile {out.old_ix} -> {out.new_ix} ({usec} us, {pkts} pkts)"
            )
            inputs.setdefault(inst.site, {}).update(
                {
                    f"{d}_bpms": float(out.stats.bpms),
                    f"{d}_ppms": float(out.stats.ppms),
                    f"{d}_epms": float(out.stats.epms),
                    f"{d}_nevents": float(out.stats.nevents),
                    f"{d}_delta_us": float(out.stats.delta_us),
                    f"{d}_profile_ix": float(out.new_ix),
                    f"{d}_tired": float(inst.dim.tired),
                }
            )
            if out.changed:
                changed_sites.add(inst.site)
        if not notes:
            return None
        before = dict(self._current)
        for inst in self._instances:
            if inst.site in changed_sites:
                info = self.context.sites[inst.site]
                self._current[inst.site] = apply_changes(self._current[inst.site], info, self._changes(inst))
        params = {site: self._current[site] for site in changed_sites}
        records = tuple(
            DecisionRecord(
                index,
                site,
                self._current[site],
                self._current[site] != before[site],
                "net_dim " + "; ".join(text),
                inputs.get(site, {}),
            )
            for site, text in notes.items()
        )
        return Decision(params, records)
