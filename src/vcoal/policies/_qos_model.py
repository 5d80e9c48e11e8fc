"""Prediction model of the ``qos`` controller: gates, chains, per-stage delay and interrupt rate.

A *gate* is one knob group at one site that can hold packets back or merge interrupts. The gates
come from the host profile's hops (``vcoal.model.hostpath``, the table the simulator compiles
too): a hop's gate site timer (``{rx,tx}_usecs/frames/timer``) then its NAPI site's deferral
form the hop's *chain* (xen: ``nic_rx`` nic:qN rx then napi; ``nic_txc`` nic:qN tx, which delays
nothing; ``guest_rx`` backend:G rx then frontend:G napi; ``guest_tx`` frontend:G tx then
backend:G napi). Each output event (wake-up) of a chain costs what the profile charges for its hop
(``chain_event_cost``: xen, the interrupt or virtual interrupt, the sender's notification and a
poll; veth, a softirq run, or only a poll inside a run already going).

A chain's input is a rate of events (packets for the first stage); each stage turns its input
events into output events (interrupts) and adds delay. The cost of a chain is its output event
rate times the chain's event cost plus the deferral timer polls times the poll cost. The guest RX
chain of a tenant is fed by its share of the NIC batches (a NIC interrupt carries a packet of the
tenant with probability ``1 - (1 - f)^K``).

Per stage (rates per µs):

- timer gate (absolute timer T, frame cap N): mean coalescing delay and interrupt rate from the
  exact batch terms (``vcoal.model.queueing.zero_cost_delay``; ``napi_min_nt`` with the observed
  per-packet work for the first NIC stage); the p99 bound used for budgets is
  ``min(T, q99 of the time for N-1 more arrivals)`` (Wilson–Hilferty Erlang quantile).
- NAPI deferral (``napi_defer_hard_irqs`` n, ``gro_flush_timeout`` T): after a poll with work the
  interrupt stays masked and NAPI re-polls every T until n consecutive empty polls. With
  ``p = exp(-λT)`` a session makes ``P = (1 - p^n) / ((1 - p) p^n)`` timer polls, interrupts occur at
  ``1 / (1/λ + P T)``; a packet arriving in a session waits up to T (p99 bound T when more than
  1 % of the packets arrive in sessions).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from vcoal.model.costs import DEFAULT_COSTS
from vcoal.model.hostpath import SOFTIRQ_RUNS, fed_in_run, hop_kind, profile_of
from vcoal.model.params import CoalesceParams, TimerMode
from vcoal.model.queueing import napi_min_nt, zero_cost_delay
from vcoal.model.units import Site

Z99 = 2.3263478740408408  # standard normal 0.99 quantile
MAX_SESSION_POLLS = 1e6
TIMER_STAGE_MEMO = 1 << 14  # timer-stage predictions kept (each a few hundred bytes)


@dataclass(frozen=True, slots=True)
class Gate:
    """One controllable (or fixed) knob group at one site."""

    site: Site
    knob: str  # "rx" | "tx" | "napi"
    delays: str | None  # direction whose packets wait ("rx", "tx") or None (cost only)

    @property
    def key(self) -> str:
        return f"{self.site}.{self.knob}"

    @property
    def is_timer(self) -> bool:
        return self.knob in ("rx", "tx")

    def fields(self) -> tuple[str, ...]:
        """The CoalesceParams fields this gate owns."""
        if self.knob == "napi":
            return ("napi_defer_hard_irqs", "gro_flush_timeout_ns")
        return (f"{self.knob}_usecs", f"{self.knob}_frames", "timer")

    def hold_us(self, p: CoalesceParams) -> float:
        """The gate's timer in µs (usecs, or the gro flush timeout), 0 when off."""
        if self.knob == "napi":
            return p.gro_flush_timeout_ns / 1000.0 if p.napi_defer_hard_irqs > 0 else 0.0
        return float(p.usecs(self.knob))


@dataclass(frozen=True, slots=True)
class Costs:
    """Per-event CPU costs (µs) the planner charges, from the context's cost table, and the host
    profile that says which events start a softirq run of their own (``chain_event_cost``)."""

    irq_us: float = DEFAULT_COSTS["irq_us"]
    virq_us: float = DEFAULT_COSTS["virq_us"]
    evtchn_send_us: float = DEFAULT_COSTS["evtchn_send_us"]
    poll_us: float = DEFAULT_COSTS["poll_us"]
    profile: str = "xen"

    @classmethod
    def from_mapping(cls, cost: Mapping[str, float] | None, profile: str = "xen") -> Costs:
        """The table's event costs; names it lacks take ``DEFAULT_COSTS``."""
        c = {**DEFAULT_COSTS, **(cost or {})}
        return cls(float(c["irq_us"]), float(c["virq_us"]), float(c["evtchn_send_us"]), float(c["poll_us"]), profile)

    @property
    def run_us(self) -> float:
        """One softirq run started from outside softirq context (a wake-up or a timer): irq + poll."""
        return self.irq_us + self.poll_us

    @property
    def timer_poll_us(self) -> float:
        """A NAPI deferral timer's poll: a poll inside the timer's run (xen: the hrtimer interrupt is
        not charged, as the simulator's engine does); on veth a softirq run of its own."""
        return self.run_us if self.profile == "veth" else self.poll_us


@dataclass(frozen=True, slots=True)
class StagePred:
    """Prediction for one stage at one input rate."""

    p99_us: float  # delay bound used for budgets
    mean_us: float  # mean added delay (exact model)
    out_per_us: float  # output events (interrupts) per µs
    polls_per_us: float  # deferral timer polls per µs


def erlang_q99_us(k: int, lam_per_us: float) -> float:
    """0.99 quantile of the time until ``k`` more Poisson arrivals (inf when λ = 0)."""
    if k <= 0:
        return 0.0
    if lam_per_us <= 0:
        return math.inf
    c = 1.0 / (9.0 * k)
    return k * (1.0 - c + Z99 * math.sqrt(c)) ** 3 / lam_per_us


def timer_stage(
    p: CoalesceParams, direction: str, lam: float, pkts_per_event: float = 1.0, work_us: float | None = None,
    event_cost_us: float = 0.0,
) -> StagePred:
    """A timer/frame gate fed by ``lam`` events per µs of ``pkts_per_event`` packets each.

    ``work_us`` (per-packet CPU work, when known) selects the exact NAPI Min(N,T) queue with setup
    cost ``event_cost_us``; otherwise the zero-cost limit.
    """
    return _timer_stage(p.usecs(direction), p.frames(direction), p.timer, lam, pkts_per_event, work_us, event_cost_us)


@functools.lru_cache(maxsize=TIMER_STAGE_MEMO)
def _timer_stage(usecs_int: int, frames_pkts: int, mode: TimerMode, lam: float, pkts_per_event: float,
                 work_us: float | None, event_cost_us: float) -> StagePred:
    """``timer_stage`` of a gate's own fields (a pure function: the planner asks for the same
    stages again and again, within a decision and from one decision to the next)."""
    usecs = float(usecs_int)
    k = max(1.0, pkts_per_event)
    if mode is TimerMode.ITR:
        # minimum gap between interrupts; no closed form, the absolute timer is a close stand-in
        frames_ev: int | None = None
        bound = usecs
    elif (usecs == 0 and frames_pkts <= 1) or (usecs > 0 and frames_pkts == 1):
        return StagePred(0.0, 0.0, lam, 0.0)
    else:
        frames_ev = None if frames_pkts == 0 else max(2, math.ceil(frames_pkts / k))
        more = math.inf if frames_ev is None else erlang_q99_us(frames_ev - 1, lam)
        if mode is TimerMode.PACKET:
            grow = math.exp(min(lam * usecs, 5.0))
            bound = min(usecs * grow if usecs > 0 else math.inf, more)
            frames_ev = None
        else:
            bound = min(usecs if usecs > 0 else math.inf, more)
    if lam <= 0:
        return StagePred(0.0 if math.isinf(bound) else bound, 0.0, 0.0, 0.0)
    timer = "packet" if mode is TimerMode.PACKET else "absolute"
    t = None if usecs == 0 else usecs
    if timer == "packet" and t is None:
        timer, t = "absolute", None
    if work_us is not None and work_us > 0 and lam * work_us * k < 0.98:
        # per-event service: k packets of work_us each (first moments; deterministic second moment)
        s = work_us * k
        pred = napi_min_nt(lam, frames_ev, t, event_cost_us, event_cost_us**2, s, s * s, timer)
        mean_coal = pred.mean_coalescing_delay
        out = pred.irq_rate
    else:
        mean_coal, out = zero_cost_delay(lam, frames_ev, t, timer)
    return StagePred(bound, mean_coal, min(out, lam), 0.0)


def defer_stage(p: CoalesceParams, lam: float) -> StagePred:
    """NAPI deferral fed by ``lam`` interrupts per µs."""
    n = p.napi_defer_hard_irqs
    t = p.gro_flush_timeout_ns / 1000.0
    if n <= 0 or t <= 0:
        return StagePred(0.0, 0.0, lam, 0.0)
    if lam <= 0:
        return StagePred(t, 0.0, 0.0, 0.0)
    q = math.exp(-lam * t)  # an empty poll
    if q <= 0.0:
        polls = MAX_SESSION_POLLS
    else:
        try:
            polls = min(MAX_SESSION_POLLS, (1.0 - q**n) / ((1.0 - q) * q**n))
        except (OverflowError, ZeroDivisionError):
            polls = MAX_SESSION_POLLS
    session_us = polls * t
    out = 1.0 / (1.0 / lam + session_us)
    frac = lam * session_us / (1.0 + lam * session_us)  # packets that arrive inside a session
    bound = t if frac >= 0.01 else 0.0
    return StagePred(bound, frac * t / 2.0, out, out * polls)


def stage(
    gate: Gate, p: CoalesceParams, lam: float, pkts_per_event: float = 1.0, work_us: float | None = None,
    event_cost_us: float = 0.0,
) -> StagePred:
    """Dispatch on the gate kind."""
    if gate.knob == "napi":
        return defer_stage(p, lam)
    return timer_stage(p, gate.knob, lam, pkts_per_event, work_us, event_cost_us)


def chain_event_cost(kind: str, costs: Costs) -> float:
    """CPU µs per output event (wake-up) of the chain of hop ``kind`` on the host profile, from the
    hop's row (``vcoal.model.hostpath``), as the simulator's engine charges it.

    Xen: the (virtual) interrupt, the sender's event-channel notification and the poll. Veth (the
    testbed: one NET_RX run drains every NAPI scheduled on its CPU): what costs is a softirq run, so
    a wake-up from outside softirq context costs a run, and a hop whose packets are handed over
    inside a run that is already going (a guest's receive NAPI, fed by the NIC's poll) only its
    poll. A hop the profile lacks (veth: NIC TX completions) costs nothing.
    """
    hop = hop_kind(costs.profile, kind)
    if hop is None:
        return 0.0
    if profile_of(costs.profile).charges == SOFTIRQ_RUNS:
        return costs.poll_us if fed_in_run(costs.profile, hop) else costs.run_us
    notify = costs.evtchn_send_us if hop.sender is not None else 0.0
    return notify + (costs.virq_us if hop.virtual_irq else costs.irq_us) + costs.poll_us


def chain_gates(kind: str, nic: Site, guest: str | None, profile: str = "xen") -> tuple[Gate, ...]:
    """The gates of the chain of hop ``kind`` (of NIC queue ``nic``, or of ``guest``), in order:
    the gate site's timer, then the NAPI site's deferral (``hostpath``'s row)."""
    hop = hop_kind(profile, kind)
    if hop is None:
        return ()
    inst = nic.instance if hop.per == "queue" else guest or ""
    d = hop.direction
    timer = Gate(Site(hop.gate, inst), d, d if hop.delays else None)
    return (timer, Gate(Site(hop.napi, inst), "napi", d)) if hop.napi_gate else (timer,)


def share_events(total_events: float, total_pkts: float, own_pkts: float) -> float:
    """Rate of NIC batches that carry at least one packet of a tenant with ``own_pkts``."""
    if own_pkts <= 0 or total_events <= 0:
        return 0.0
    if total_pkts <= own_pkts:
        return total_events
    k = total_pkts / total_events
    f = own_pkts / total_pkts
    return min(own_pkts, total_events * (1.0 - (1.0 - f) ** k))


def level_params(base: CoalesceParams, level: dict, supported: frozenset[str] | None) -> CoalesceParams:
    """``base`` with a level's fields applied (only supported fields)."""
    changes = {k: v for k, v in level.items() if supported is None or k in supported}
    return base.with_changes(**changes) if changes else base


def timer_levels(gate: Gate, grid_us: tuple[int, ...], frames_cap: int, supported: frozenset[str] | None) -> list[dict]:
    """Candidate settings of a timer gate, least delay first (empty when not settable)."""
    u, f = f"{gate.knob}_usecs", f"{gate.knob}_frames"
    ok = lambda name: supported is None or name in supported  # noqa: E731
    if ok(u):
        out = [{u: 0, f: 1} if ok(f) else {u: 0}]
        for t in grid_us:
            if t <= 0:
                continue
            lv: dict = {u: t}
            if ok(f):
                lv[f] = frames_cap
            if ok("timer"):
                lv["timer"] = TimerMode.ABSOLUTE
            out.append(lv)
        return out
    if ok(f):
        return [{f: n} for n in (1, 2, 4, 8, 16, 32, 64) if n <= max(1, frames_cap)]
    return []


def defer_levels(grid_us: tuple[int, ...], defer_irqs: int, supported: frozenset[str] | None) -> list[dict]:
    """Candidate NAPI deferral settings, least delay first (empty when not settable)."""
    if supported is not None and not {"napi_defer_hard_irqs", "gro_flush_timeout_ns"} <= supported:
        return []
    out = [{"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}]
    out += [{"napi_defer_hard_irqs": defer_irqs, "gro_flush_timeout_ns": t * 1000} for t in grid_us if t > 0]
    return out


def no_higher(gate: Gate, levels: list[dict], current: Mapping[Site, CoalesceParams],
              supported: Mapping[Site, frozenset[str] | None]) -> list[dict]:
    """A frozen gate's levels: none that holds longer than the setting in force (it may tighten)."""
    cur, sup = current[gate.site], supported.get(gate.site)
    return [lv for lv in levels if gate.hold_us(level_params(cur, lv, sup)) <= gate.hold_us(cur)]
