"""``qos``: the QoS-aware multi-layer coalescing controller (issue 3).

Design
------
Every window the controller

1. **Measures rates.** For every site and direction the offered packet rate (packets + drops) is
   smoothed by an EWMA (``rate_alpha``) that *snaps* to the new value when a window differs from the
   estimate by more than ``phase_change_ratio``: at once for a rise, after two windows for a fall (a
   lull between bursts is not a phase change), so the plan follows a phase change within 1-3 windows.
2. **Builds the chains of gates** of every tenant from the host profile's hops
   (``vcoal.model.hostpath``, the table the simulator compiles; ``_qos_model.chain_gates``): on xen
   the NIC RX chain of its queue (``nic:qN`` rx timer, then the dom0 NAPI deferral; shared by the
   queue's tenants), its guest RX chain (``backend:G`` rx timer, then ``frontend:G`` deferral), its
   guest TX chain (``frontend:G`` tx timer, then ``backend:G`` deferral); NIC TX completions delay
   nobody and only cost CPU. A wake-up costs what the profile charges (``chain_event_cost``: on
   ``veth`` a softirq run). Each stage's mean delay and interrupt rate come from the exact Min(N,T)
   batch terms of ``vcoal.model.queueing`` at the observed rates; its p99 contribution is bounded
   by its timer (or the time to fill its frame cap).
3. **Learns a latency correction.** When the environment measures a tenant's window p99 the
   residual ``measured - predicted added p99 (parameters in force)``, never below 0, is the part the
   model does not see (processing, application, queueing); an EWMA of it (fast when it grows, slow
   when it shrinks) is the tenant's *base*. Without measurements the base is a prior from the cost
   table (the per-packet work of both directions).
4. **Classifies every tenant and sets budgets** (``_qos_regime``): latency-bound, capacity-bound
   (drops, or a busy consumer inferred by inverting the exact interrupt-rate formula,
   ``_qos_observe.busy_sites``), refuted (capacity evidence contradicted by the measured p99),
   infeasible (base at or above the target: budget 0, the least latency; or a saturated shared core)
   or throughput-seeking (no p99 SLO); request-response tenants are capped to keep
   ``rr_throughput_floor`` of their least-delay throughput unless CPU-bound.
   **Learns the measured response** (``_qos_evidence``, on by default): per chain the measured CPU
   (wake-ups and polls from the counters) over the model's prediction, per setting and per chain,
   shrunk toward the model (``prior_weight`` windows); a setting not yet in force is predicted by the
   model's change from the measured one, scaled by the gates' learned *efficacy*. Every change that
   should save CPU is verified per chain (``_qos_verify``: sequential, noise-aware, against a
   counterfactual at the window's own rates) and reverted, its gates' efficacy corrected and the gates
   held for ``retry_windows``, when it does not deliver. **Sees bursts** (``_qos_burst``): per chain
   an on-rate / mean-rate factor inferred from the measured packets per interrupt at the setting in
   force; the model runs at the on-rate and scales events by the duty cycle.
5. **Plans** (``_qos_plan``): greedy minimisation of predicted interrupt + poll CPU cost over a
   small candidate grid per gate (powers of two up to ``max_usecs`` for timers, 5-200 µs for the
   NAPI deferral), keeping every tenant's summed stage bounds within its budget. A move that adds
   delay to latency tenants must also save ``latency_price`` (CPU per µs) for every µs it adds, so
   slack is spent only where coalescing pays (bulk traffic), not on a trickle of requests. Shared NIC
   gates add delay to every tenant of the queue, so the tightest tenant binds them. Only fields in
   ``SiteInfo.supported`` are ever set; gates without settable fields stay as they are and are still
   modelled.
6. **Decides with hysteresis.** Plans are made against budgets shrunk by ``budget_deadband``; the
   parameters in force are kept unless they violate a (full) budget, or the plan improves the
   objective (CPU + ``latency_price`` x latency tenants' added p99) by more than ``hysteresis`` of
   the CPU in force and at least ``min_change_cpu``. Increases of any timer are bounded per window
   (``max_step_factor``, first step ``first_step_us``), except that first steps saving nothing by
   themselves take their planned levels (``_bounded``); decreases are immediate. Under steady load
   the inputs settle, so does the plan, and nothing oscillates.
   Stage predictions are cached on a quantised rate (5 significant digits), so decisions are exact
   functions of the recorded windows: a replayed counter trace reproduces them bit for bit.
7. **Explains.** Every site gets a DecisionRecord each window naming that site and its tenants: the
   observed rates, interrupt rates, CPU, tenants' p99, budgets, bases, regimes (``T.infeasible`` 1/0)
   and throughput ratios as inputs; per gate the predicted p99 bound, mean delay, interrupt rate,
   CPU cost and measured correction as predictions; the action at that site with its signed
   predicted gain; and each tenant's regime and budget.

The policy is pure: no clock, no I/O, no randomness.
"""

from __future__ import annotations

import dataclasses
import math

from vcoal.model.hostpath import fed_in_run, hop_kind, profile_of
from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext
from vcoal.model.stats import WindowStats
from vcoal.model.units import NS_PER_S, Layer, Site
from vcoal.policies._qos_burst import update_bursts
from vcoal.policies._qos_evidence import MIN_EVIDENCE_PACKETS, Evidence, measured_chain, setting_key
from vcoal.policies._qos_explain import site_records
from vcoal.policies._qos_model import Costs, Gate, chain_gates, defer_levels, no_higher, timer_levels
from vcoal.policies._qos_observe import (
    busy_sites,
    dropped_on,
    nic_work_us,
    prior_base_us,
    update_rate,
    window_rates,
)
from vcoal.policies._qos_plan import Chain, Evaluation, Planner
from vcoal.policies._qos_regime import TenantState
from vcoal.policies._qos_verify import ChainCheck, one_layer, start, track
from vcoal.policies.base import PolicyBase

DEFER_GRID_US = (5, 10, 20, 50, 100, 200)
P99_HISTORY = 4  # windows of measured p99 averaged as a change's "before"


def _check(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    bad = value <= lo if lo_open else value < lo
    if bad or value > hi or (isinstance(value, float) and math.isnan(value)):
        left = "(" if lo_open else "["
        raise ValueError(f"{name}={value}: out of range {left}{lo}, {hi}]")


# Qos.Params ranges: name -> (low, high[, low excluded])
_PARAM_RANGES: dict[str, tuple] = {
    "slo_margin": (0.0, 0.9),
    "bulk_budget_us": (0.0, 100_000.0),
    "open_loop_budget_us": (0.0, 100_000.0),
    "max_usecs": (0, 100_000),
    "frames_cap": (0, 65_535),
    "max_defer_us": (0, 100_000),
    "defer_hard_irqs": (1, 1_000_000),
    "nic_tx_usecs": (0, 100_000),
    "rate_alpha": (0.0, 1.0, True),
    "phase_change_ratio": (0.0, 100.0, True),
    "correction_alpha": (0.0, 1.0, True),
    "min_samples": (1, 1_000_000_000),
    "hysteresis": (0.0, 1.0),
    "budget_deadband": (0.0, 0.9),
    "max_step_factor": (1.0, 1_000_000.0),
    "first_step_us": (1, 100_000),
    "min_gain_cpu": (0.0, 1.0),
    "min_change_cpu": (0.0, 1.0),
    "util_max": (0.0, 1.0, True),
    "latency_price": (0.0, 1.0),
    "refute_ratio": (1.0, 100.0),
    "infeasible_ratio": (0.5, 10.0),
    "feasible_ratio": (0.1, 1.0),
    "infeasible_windows": (1, 1000),
    "rr_throughput_floor": (0.0, 1.0, True),
    "thr_ref_tolerance_us": (0.0, 1000.0),
    "thr_recover": (1.0, 2.0),
    "prior_weight": (0.0, 1000.0),
    "evidence_windows": (1.0, 1000.0),
    "verify_windows": (1, 100),
    "verify_fraction": (0.0, 1.0),
    "verify_slack_us": (0.0, 100_000.0),
    "retry_windows": (0, 1_000_000),
}


class Qos(PolicyBase):
    """The QoS-aware multi-layer controller (see the module docstring for the design)."""

    name = "qos"
    description = "per-tenant p99 SLOs: model-predicted delay budgets split across layers, cheapest CPU"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """Tunables of the controller.

        slo_margin: fraction of the p99 target kept in reserve.
        bulk_budget_us: added delay a closed-loop tenant without a p99 SLO (or capacity-bound) may get.
        open_loop_budget_us: added delay an open-loop tenant (poisson, trace) without a p99 SLO may get.
        max_usecs: largest timer candidate (µs); candidates are 0 and powers of two up to it.
        frames_cap: frame cap used with every timer candidate (0 = no cap).
        max_defer_us: largest gro_flush_timeout candidate (µs) of the NAPI deferral.
        defer_hard_irqs: napi_defer_hard_irqs used by the deferral candidates.
        nic_tx_usecs: cap on the NIC TX-completion timer (no packet waits for it).
        rate_alpha: EWMA gain of the rate estimates.
        phase_change_ratio: relative change of a window's rate that resets its estimate.
        correction_alpha: EWMA gain of the latency correction (doubled when the residual grows).
        min_samples: packets a tenant needs in a window for its measured p99 to be used.
        hysteresis: relative predicted saving needed to leave a feasible setting.
        budget_deadband: fraction of a budget kept free when planning (against flip-flops).
        max_step_factor: a timer may grow by at most this factor per window.
        first_step_us: largest first step of a timer that is off.
        min_gain_cpu: smallest saving (fraction of a CPU) worth a planner move.
        min_change_cpu: smallest objective gain (fraction of a CPU) worth changing a feasible setting.
        util_max: consumer utilisation (inferred from interrupts per packet) that marks a path busy.
        latency_price: CPU fraction one µs of added p99 of a latency tenant must save (0: use all slack).
        correct_latency: learn the additive correction from measured p99.
        refute_ratio: a capacity-bound latency tenant whose measured p99 exceeds its target and this
            multiple of its p99 when it became capacity-bound is latency-bound after all.
        infeasible_ratio: a base at least this multiple of the p99 target marks the tenant infeasible...
        infeasible_windows: ...after this many windows in a row.
        feasible_ratio: an infeasible tenant is feasible again when its base falls below this multiple.
        rr_throughput_floor: request-response tenants keep this fraction of their least-delay rate.
        thr_ref_tolerance_us: modelled added p99 within this of the least seen counts as the reference.
        thr_recover: factor by which a throughput cap loosens per window comfortably above the floor.
        prior_weight: weight (windows) of the model's prediction against measured CPU (``_qos_evidence``).
        evidence_windows: measured windows after which a measured ratio becomes an EWMA.
        verify_windows: windows over which a change's realised saving and latency are measured.
        verify_fraction: a change realising less than this fraction of its predicted saving (beyond the
            counters' noise) is reverted.
        verify_slack_us: p99 rise beyond the predicted one (µs) that reverts a change.
        retry_windows: windows a reverted change's gates stay where the revert put them (cool-down).
        measured_response: plan with the measured response (CPU per chain and setting, gate efficacy)
            and verify every CPU-saving change (``_qos_evidence``).
        burst_aware: model every chain's input as bursts at the measured on-rate (``_qos_burst``).
        """

        slo_margin: float = 0.15
        bulk_budget_us: float = 150.0
        open_loop_budget_us: float = 1000.0
        max_usecs: int = 256
        frames_cap: int = 64
        max_defer_us: int = 200
        defer_hard_irqs: int = 2
        nic_tx_usecs: int = 64
        rate_alpha: float = 0.5
        phase_change_ratio: float = 0.5
        correction_alpha: float = 0.3
        min_samples: int = 20
        hysteresis: float = 0.05
        budget_deadband: float = 0.1
        max_step_factor: float = 4.0
        first_step_us: int = 16
        min_gain_cpu: float = 0.002
        min_change_cpu: float = 0.003
        util_max: float = 0.9
        latency_price: float = 0.00003
        correct_latency: bool = True
        refute_ratio: float = 1.25
        infeasible_ratio: float = 1.0
        feasible_ratio: float = 0.85
        infeasible_windows: int = 2
        rr_throughput_floor: float = 0.95
        thr_ref_tolerance_us: float = 0.5
        thr_recover: float = 1.1
        prior_weight: float = 2.0
        evidence_windows: float = 4.0
        verify_windows: int = 3
        verify_fraction: float = 0.5
        verify_slack_us: float = 20.0
        retry_windows: int = 50
        measured_response: bool = True
        burst_aware: bool = True

        def __post_init__(self) -> None:
            for name, limits in _PARAM_RANGES.items():
                _check(name, getattr(self, name), *limits)

    # --- lifecycle -------------------------------------------------------------------------------

    def reset(self, context: PolicyContext, rng) -> None:
        super().reset(context, rng)
        self.costs = Costs.from_mapping(dict(context.cost), context.profile)
        self.current: dict[Site, CoalesceParams] = {s: i.initial for s, i in context.sites.items()}
        self.supported = {s: i.supported for s, i in context.sites.items()}
        self.rates: dict[tuple[Site, str], float] = {}
        self._low_streak: dict[tuple[Site, str], int] = {}
        self.work_us: dict[Site, float] = {}
        self.state = {t: TenantState(i.slo, i.kind) for t, i in context.tenants.items()}
        self.evidence = Evidence(self.params.prior_weight, self.params.evidence_windows)
        self.checks: dict[str, ChainCheck] = {}  # chain key -> the check of a change on it (_qos_verify)
        self.owed = False  # last window adopted one half of a split change
        self.last_x: dict[str, tuple[tuple, float]] = {}  # chain -> (setting, last measured / predicted)
        self.burst: dict[str, float] = {}  # chain key -> on-rate / mean rate (_qos_burst)
        self.p99_recent: dict[str, list[float]] = {}  # tenant -> measured p99 since the last change
        self.revert: tuple[dict[Site, CoalesceParams], str] | None = None
        self.verdict: str = ""
        self.frozen: dict[str, int] = {}  # gate key -> last window it is held after a revert
        self.saturated: set[Site] = set()
        self._memo: dict = {}
        self.gates, self.levels = self._gates_and_levels(context)
        self.prior_us = prior_base_us(dict(context.cost))

    def _gates_and_levels(self, context: PolicyContext) -> tuple[dict[str, Gate], dict[str, list[dict]]]:
        p = self.params
        grid = tuple(2**i for i in range(0, 18) if 2**i <= p.max_usecs)
        tx_grid = tuple(t for t in grid if t <= p.nic_tx_usecs)
        dgrid = tuple(t for t in DEFER_GRID_US if t <= p.max_defer_us)
        gates: dict[str, Gate] = {}
        levels: dict[str, list[dict]] = {}
        for kind, nic, guest in self._chain_specs(context):
            for g in chain_gates(kind, nic, guest, context.profile):
                if g.site not in context.sites or g.key in gates:
                    continue
                gates[g.key] = g
                sup = self.supported.get(g.site)
                if g.knob == "napi":
                    levels[g.key] = defer_levels(dgrid, p.defer_hard_irqs, sup)
                elif g.delays is None:
                    levels[g.key] = timer_levels(g, tx_grid, p.frames_cap, sup)
                else:
                    levels[g.key] = timer_levels(g, grid, p.frames_cap, sup)
        return gates, levels

    @staticmethod
    def _chain_specs(context: PolicyContext) -> list[tuple[str, Site, str | None]]:
        """(hop, NIC site, guest or None) of every chain: the profile's per-queue hops on each NIC
        site, its per-guest hops for each tenant with a backend on its path."""
        hops = profile_of(context.profile).hops
        out: list[tuple[str, Site, str | None]] = []
        for site in sorted(context.sites):
            if site.layer is Layer.NIC:
                out += [(h.chain, site, None) for h in hops if h.per == "queue"]
        for name in sorted(context.tenants):
            t = context.tenants[name]
            nic = next((s for s in t.path if s.layer is Layer.NIC), None)
            if nic is not None and any(s.layer is Layer.BACKEND for s in t.path):
                out += [(h.chain, nic, name) for h in hops if h.per == "guest"]
        return out

    # --- observation -----------------------------------------------------------------------------

    def observe(self, stats: WindowStats) -> None:
        super().observe(stats)
        p = self.params
        for site, s in stats.sites.items():
            if site in self.current:
                self.current[site] = s.params
            if not s.interval_ns:
                continue
            for d, ds in (("rx", s.rx), ("tx", s.tx)):
                key = (site, d)
                x = (ds.packets + ds.drops) * NS_PER_S / s.interval_ns
                self.rates[key], self._low_streak[key] = update_rate(
                    self.rates.get(key), x, self._low_streak.get(key, 0), p.rate_alpha, p.phase_change_ratio
                )
            w = nic_work_us(s, self.costs) if site.layer is Layer.NIC else None
            if w is not None:
                old_w = self.work_us.get(site, w)
                self.work_us[site] = old_w + p.rate_alpha * (w - old_w)
        self._learn(stats)

    def _load_pps(self, tenant: str) -> float:
        t = self.context.tenants[tenant]
        return max((self.rates.get((s, "rx"), 0.0) + self.rates.get((s, "tx"), 0.0) for s in t.path), default=0.0)

    def _learn(self, stats: WindowStats) -> None:
        """Update regimes, throughput references, the latency correction and the measured response."""
        p = self.params
        planner = self._planner(stats_rates=window_rates(stats), corrected=False)
        ev = planner.evaluate(self.current)
        self._measure(stats, planner, ev)
        self.saturated = saturated = busy_sites(stats, self.costs, p.util_max)
        for name, info in self.context.tenants.items():
            st = self.state[name]
            dropped = dropped_on(stats, info.path)
            busy_at = next((s for s in info.path if s in saturated), None)
            ts = stats.tenants.get(name)
            p99 = ts.p99_us if ts is not None and ts.packets >= p.min_samples else None
            st.capacity(p, dropped or busy_at is not None, self._load_pps(name), p99)
            if ts is not None and stats.interval_ns:
                st.floor(ts.bytes * 8 * NS_PER_S / stats.interval_ns, dropped)
                st.measured_p99 = ts.p99_us
                pps = ts.packets * NS_PER_S / stats.interval_ns
                st.throughput(p, pps, ts.p50_us, ev.tenant_p99_us.get(name, 0.0))
                if p.correct_latency and p99 is not None and st.capacity_load is None:
                    st.learn_base(p, p99, ev.tenant_p99_us.get(name, 0.0), self.prior_us)
            st.classify(p, p99, str(busy_at) if busy_at is not None else ("drops" if dropped else None))

    def _measure(self, stats: WindowStats, planner: Planner, ev: Evaluation) -> None:
        """Per chain: advance the open checks, update the burst factors (not of chains under check:
        their model stays fixed), then fold measured / predicted CPU (at the updated factors) into the
        evidence."""
        p = self.params
        measured = {c.key: m for c in planner.chains if (m := measured_chain(c.kind, c.gates, stats, self.costs))}
        for t, ts in stats.tenants.items():
            if ts.p99_us is not None and ts.packets >= p.min_samples:
                self.p99_recent[t] = ([*self.p99_recent.get(t, []), ts.p99_us])[-P99_HISTORY:]
        if self.checks and stats.interval_ns:
            track(self, stats, planner, ev, measured)
        if p.burst_aware and stats.interval_ns and update_bursts(self, stats, planner, measured):
            planner = self._planner(stats_rates=window_rates(stats), corrected=False)
            ev = planner.evaluate(self.current)
        for c in planner.chains:
            m = measured.get(c.key)
            if m is not None and m[1] >= MIN_EVIDENCE_PACKETS:
                key = setting_key(c.key, c.gates, self.current)
                self.last_x[c.key] = (key, self.evidence.add(key, m[0], ev.chains[c.key].cost))

    # --- planning --------------------------------------------------------------------------------

    def _planner(self, stats_rates: dict[tuple[Site, str], float] | None = None, corrected: bool = True) -> Planner:
        rates = self.rates if stats_rates is None else stats_rates
        per_us = lambda site, d: rates.get((site, d), 0.0) / 1e6  # noqa: E731
        chains: list[Chain] = []
        profile = self.context.profile
        for kind, nic, guest in self._chain_specs(self.context):
            hop = hop_kind(profile, kind)
            inst = nic.instance if guest is None else guest
            key = f"{kind}:{inst}"
            b = self.burst.get(key, 1.0) if self.params.burst_aware else 1.0
            tenants = () if not hop.delays else (guest,) if guest else tuple(self.context.sites[nic].tenants)
            work = self.work_us.get(nic) if hop.cost == "nic_rx" else None
            work = None if work is None else float(f"{work:.3g}")
            # a hop fed inside its feeder's softirq run (veth: the bridge forwards a NIC poll's
            # packets at once) sees that chain's polls; netback copies packet by packet
            fed = fed_in_run(profile, hop)
            feed = None if fed is None else f"{fed.chain}:{nic.instance}"
            lam = per_us(Site(hop.gate, inst), hop.direction)
            chains.append(Chain(key, kind, self._chain_gates(kind, nic, guest), tenants, lam, feed, work, b))
        correct = self.evidence.correct if corrected and self.params.measured_response else None
        now = self.window.index if self.window is not None else 0
        levels = {k: v if self.frozen.get(k, -1) < now else no_higher(self.gates[k], v, self.current, self.supported)
                  for k, v in self.levels.items()}
        return Planner(chains, levels, self.gates, self.current, self.supported, self.costs, self._memo, correct)

    def _chain_gates(self, kind: str, nic: Site, guest: str | None) -> tuple[Gate, ...]:
        return tuple(g for g in chain_gates(kind, nic, guest, self.context.profile) if g.key in self.gates)

    def _budgets(self) -> tuple[dict[str, float], dict[str, str]]:
        budgets: dict[str, float] = {}
        why: dict[str, str] = {}
        for name, st in self.state.items():
            budgets[name], why[name] = st.budget(self.params, self.prior_us)
        return budgets, why

    def decide(self) -> Decision | None:
        if self.context is None:
            return None
        index = self.window.index if self.window else 0
        if self.window is None:
            records = tuple(
                DecisionRecord(index, s, self.current[s], False, f"keep {s}: no window observed yet")
                for s in sorted(self.context.sites)
            )
            return Decision({}, records)
        p = self.params
        planner = self._planner()
        budgets, why = self._budgets()
        cur = planner.evaluate(self.current)
        violations = sorted(t for t, d in cur.tenant_p99_us.items() if d > budgets[t] + 1e-6)
        plan_budgets = {t: b * (1.0 - p.budget_deadband) for t, b in budgets.items()}
        prices = {
            t: p.latency_price if st.slo.p99_us is not None and st.capacity_load is None else 0.0
            for t, st in self.state.items()
        }
        idx, _ = planner.optimise(plan_budgets, p.min_gain_cpu, prices)
        target = planner.params_for(self._bounded(planner, idx, cur.cost))
        # objective: CPU plus the price of latency tenants' added delay (what the planner minimises)
        j = lambda e: e.cost + sum(prices[t] * d for t, d in e.tenant_p99_us.items())  # noqa: E731
        plan = planner.evaluate(target)
        gain = j(cur) - j(plan)  # a split change (one_layer) is worth it when the whole or its half is
        owed, self.owed = self.owed, False  # the second half of last window's split: its whole was worth it
        threshold = 0.0 if owed else max(p.hysteresis * cur.cost, p.min_change_cpu)
        if p.measured_response and not violations:
            cands = one_layer(self, planner, cur, target)
            self.owed = len(cands) > 1
            target, plan = max(((c, planner.evaluate(c)) for c in cands), key=lambda tp: -j(tp[1]))
            gain = max(gain, j(cur) - j(plan))
        saving = cur.cost - plan.cost
        verdict, self.verdict = self.verdict, ""
        if self.revert is not None:  # first, even under a violation: its gates are frozen at the old fields
            target, reason = {**self.current, **self.revert[0]}, self.revert[1]
            adopt, plan = True, planner.evaluate({**self.current, **self.revert[0]})
        elif violations:
            adopt, reason = True, "tighten: predicted p99 over budget for " + ", ".join(violations)
        elif gain > threshold:
            adopt = True
            if saving >= 0:
                added = ", ".join(f"{t} +{plan.tenant_p99_us[t] - d:.1f}us" for t, d in sorted(cur.tenant_p99_us.items())
                                  if plan.tenant_p99_us[t] - d > 0.05)
                reason = f"relax: predicted saving {saving * 100:+.2f}% of a CPU, added p99 {added or 'none'}"
            else:
                reason = f"cut delay: costs {-saving * 100:.2f}% of a CPU, worth it at the latency price"
        else:
            adopt = False
            reason = (f"keep: objective gain {gain * 100:+.2f}% of a CPU "
                      f"({'below' if gain > 0 else 'no gain over'} the change threshold)")
        self.revert = None
        self.owed = self.owed and adopt and reason.startswith("relax")  # a half was adopted: the other is owed
        if verdict:
            reason = f"{reason} [{verdict}]"
        new_params = target if adopt else dict(self.current)
        final = plan if adopt else cur
        changed = {s: q for s, q in new_params.items() if q != self.current.get(s)}
        if changed:
            moved = {k for k, g in self.gates.items() if g.site in changed and any(
                getattr(changed[g.site], f) != getattr(self.current[g.site], f) for f in g.fields())}
            for k in [k for k in self.checks if any(g.key in moved for g in planner.by_key[k].gates)]:
                del self.checks[k]  # its chain moved again (a tightening, a revert): the check is void
            if saving > 0 and p.measured_response and reason.startswith("relax"):
                self.checks.update(start(self, index, planner, cur, plan, changed))
        records = site_records(self, index, planner, final, changed, reason, budgets, why, cur)
        self.current.update(changed)
        if changed:
            self.p99_recent = {}
        return Decision(changed, records)

    def _bounded(self, planner: Planner, idx: dict[str, int], in_force: float) -> dict[str, int]:
        """Limit every timer increase to ``max_step_factor`` (first step ``first_step_us``); none on a
        chain under check. First steps (of gates that are off) that together with the other bounded
        steps would not save CPU (a NAPI deferral shorter than the packet gap only adds empty timer
        polls) are no step toward a plan that does: those gates then take their planned levels (the
        budgets hold them, and the change is verified like any other)."""
        p = self.params
        out = {}
        checked = {g.key for k in self.checks for g in planner.by_key[k].gates}
        for key, i in idx.items():
            g = self.gates[key]
            cur_hold = g.hold_us(self.current[g.site])
            # a gate of a chain under check grows no further until the check concludes
            limit = cur_hold if key in checked else max(cur_hold * p.max_step_factor, float(p.first_step_us))
            j = i
            while j > 0:
                hold = g.hold_us(planner.params_for({key: j})[g.site])
                if hold <= cur_hold or hold <= limit:
                    break
                j -= 1
            out[key] = j
        short = [k for k, j in out.items() if j < idx[k] and k not in checked
                 and self.gates[k].hold_us(self.current[self.gates[k].site]) == 0.0]
        if short and planner.evaluate(planner.params_for(idx)).cost >= in_force:
            short = []  # the plan itself saves nothing (a tightening): nothing to lift toward
        if short and planner.evaluate(planner.params_for(out)).cost >= in_force:
            out.update({k: idx[k] for k in short})
        return out
