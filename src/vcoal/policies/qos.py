"""``qos``: the QoS-aware multi-layer coalescing controller (issue 3).

Design
------
Every window the controller

1. **Measures rates.** For every site and direction the offered packet rate (packets + drops) is
   smoothed by an EWMA (``rate_alpha``) that *snaps* to the new value when a window differs from the
   estimate by more than ``phase_change_ratio``: at once for a rise, after two windows for a fall (a
   lull between bursts is not a phase change), so the plan follows a phase change within 1-3 windows.
2. **Builds the chains of gates** of every tenant (``_qos_model``): the NIC RX chain of its queue
   (``nic:qN`` rx timer, then the dom0 NAPI deferral; shared by every tenant of the queue), its guest
   RX chain (``backend:G`` rx timer = virtual interrupt, then ``frontend:G`` NAPI deferral) and its
   guest TX chain (``frontend:G`` tx timer = notification, then ``backend:G`` NAPI deferral);
   NIC TX completions (``nic:qN`` tx) delay nobody and only cost CPU. Each stage's mean delay and
   interrupt rate come from the exact Min(N,T) batch terms of ``vcoal.model.queueing`` at the
   observed rates; its p99 contribution is bounded by its timer (or the time to fill its frame cap).
3. **Learns a latency correction.** When the environment measures a tenant's window p99 the
   residual ``measured - predicted added p99 (parameters in force)`` is the part the model does not
   see (processing, application, queueing, model error); an EWMA of it (fast when it grows, slow
   when it shrinks) is the tenant's *base*. With a model error proportional to the added delay this
   additive correction converges to measured p99 = target. Without measurements the base is a prior
   from the cost table (the per-packet work of both directions).
4. **Sets budgets.** A latency tenant may add ``p99_slo * (1 - slo_margin) - base`` µs; a tenant
   without a p99 SLO is throughput-seeking and may add ``bulk_budget_us``; a tenant whose path
   dropped packets or whose consumer CPU is busy (inferred by inverting the exact interrupt-rate
   formula, ``_qos_observe.busy_sites``) is capacity-bound: queueing dominates its latency and only
   more coalescing frees CPU, so it gets at least ``min(bulk_budget_us, p99_slo * (1 - slo_margin))``
   until its load falls below 80 % of the load at which it was busy. The measured p99 tests this
   hypothesis: coalescing a capacity-bound path should shorten its queues, so when a latency
   tenant's measured p99 is above its target and more than ``refute_ratio`` times what it was when
   the tenant became capacity-bound, the evidence (a drop count, or an interrupt count that does not
   mean what the inversion assumes, e.g. host-wide softirqs on the real-kernel testbed) is
   *refuted*: the tenant is treated as latency-bound again (its correction is learned, its budget
   shrinks, the planner tightens) and busy/drop evidence is ignored for it until its load leaves
   [0.5x, 2x] of the load at the refutation. A tenant missing its
   throughput floor while not dropping has its budget halved (window-limited flow), recovering by
   25 % per window once it is met again.
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
   it and at least ``min_change_cpu``. Increases of any timer are bounded per window
   (``max_step_factor``, first step ``first_step_us``); decreases are immediate. Under steady load
   the inputs settle, so does the plan, and nothing oscillates.
   Stage predictions are cached on a quantised rate (5 significant digits), so decisions are exact
   functions of the recorded windows: a replayed counter trace reproduces them bit for bit.
7. **Explains.** Every site gets a DecisionRecord each window: the observed rates, interrupt rates,
   CPU and tenants' p99, budgets and bases as inputs; per gate the predicted p99 bound, mean delay,
   interrupt rate and CPU cost as predictions; and the reason.

The policy is pure: no clock, no I/O, no randomness.
"""

from __future__ import annotations

import dataclasses
import math

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext
from vcoal.model.stats import WindowStats
from vcoal.model.units import NS_PER_S, Layer, Site
from vcoal.policies._qos_model import Costs, Gate, chain_gates, defer_levels, timer_levels
from vcoal.policies._qos_observe import (
    busy_sites,
    dropped_on,
    nic_work_us,
    prior_base_us,
    update_rate,
    window_rates,
)
from vcoal.policies._qos_plan import Chain, Evaluation, Planner
from vcoal.policies.base import PolicyBase

DEFER_GRID_US = (5, 10, 20, 50, 100, 200)


def _check(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    bad = value <= lo if lo_open else value < lo
    if bad or value > hi or (isinstance(value, float) and math.isnan(value)):
        left = "(" if lo_open else "["
        raise ValueError(f"{name}={value}: out of range {left}{lo}, {hi}]")


# Qos.Params ranges: name -> (low, high[, low excluded])
_PARAM_RANGES: dict[str, tuple] = {
    "slo_margin": (0.0, 0.9),
    "bulk_budget_us": (0.0, 100_000.0),
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
}


class Qos(PolicyBase):
    """The QoS-aware multi-layer controller (see the module docstring for the design)."""

    name = "qos"
    description = "per-tenant p99 SLOs: model-predicted delay budgets split across layers, cheapest CPU"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """Tunables of the controller.

        slo_margin: fraction of the p99 target kept in reserve.
        bulk_budget_us: added delay a tenant without a p99 SLO (or capacity-bound) may get.
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
        """

        slo_margin: float = 0.15
        bulk_budget_us: float = 150.0
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
        min_change_cpu: float = 0.005
        util_max: float = 0.9
        latency_price: float = 0.0002
        correct_latency: bool = True
        refute_ratio: float = 1.25

        def __post_init__(self) -> None:
            for name, limits in _PARAM_RANGES.items():
                _check(name, getattr(self, name), *limits)

    # --- lifecycle -------------------------------------------------------------------------------

    def reset(self, context: PolicyContext, rng) -> None:
        super().reset(context, rng)
        self.costs = Costs.from_mapping(dict(context.cost))
        self.current: dict[Site, CoalesceParams] = {s: i.initial for s, i in context.sites.items()}
        self.supported = {s: i.supported for s, i in context.sites.items()}
        self.rates: dict[tuple[Site, str], float] = {}
        self._low_streak: dict[tuple[Site, str], int] = {}
        self.work_us: dict[Site, float] = {}
        self.base_us: dict[str, float | None] = {t: None for t in context.tenants}
        self.scale: dict[str, float] = {t: 1.0 for t in context.tenants}
        self.capacity_load: dict[str, float | None] = {t: None for t in context.tenants}
        # measured p99 when a tenant became capacity-bound; load at which that was refuted
        self.capacity_p99: dict[str, float | None] = {t: None for t in context.tenants}
        self.refuted_load: dict[str, float | None] = {t: None for t in context.tenants}
        self.measured: dict[str, float | None] = {t: None for t in context.tenants}
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
            for g in chain_gates(kind, nic, guest):
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
        out: list[tuple[str, Site, str | None]] = []
        for site in sorted(context.sites):
            if site.layer is Layer.NIC:
                out += [("nic_rx", site, None), ("nic_txc", site, None)]
        for name in sorted(context.tenants):
            t = context.tenants[name]
            nic = next((s for s in t.path if s.layer is Layer.NIC), None)
            if nic is None:
                continue
            if any(s.layer is Layer.BACKEND for s in t.path):
                out += [("guest_rx", nic, name), ("guest_tx", nic, name)]
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
                old_w = self.work_us.get(site)
                self.work_us[site] = w if old_w is None else old_w + p.rate_alpha * (w - old_w)
        self._learn(stats)

    def _load_pps(self, tenant: str) -> float:
        t = self.context.tenants[tenant]
        return max((self.rates.get((s, "rx"), 0.0) + self.rates.get((s, "tx"), 0.0) for s in t.path), default=0.0)

    def _learn(self, stats: WindowStats) -> None:
        """Update capacity flags, throughput scales and the latency correction from one window."""
        p = self.params
        ev = self._planner(stats_rates=window_rates(stats)).evaluate(self.current)
        saturated = busy_sites(stats, self.costs, p.util_max)
        self.saturated = saturated
        for name, info in self.context.tenants.items():
            dropped = dropped_on(stats, info.path)
            busy = dropped or any(s in saturated for s in info.path)
            load = self._load_pps(name)
            refuted = self.refuted_load[name]
            if refuted is not None and not 0.5 * refuted <= load <= 2.0 * refuted:
                self.refuted_load[name] = refuted = None  # a new load phase: the evidence may hold now
            if refuted is not None:
                busy = dropped = False
            cap = self.capacity_load[name]
            ts = stats.tenants.get(name)
            p99 = ts.p99_us if ts is not None and ts.packets >= p.min_samples else None
            if busy:
                self.capacity_load[name] = max(load, cap or 0.0)
                if cap is None or self.capacity_p99[name] is None:
                    self.capacity_p99[name] = p99  # latency before coalescing for capacity
            elif cap is not None and load < 0.8 * cap:
                self.capacity_load[name] = self.capacity_p99[name] = None
            ref = self.capacity_p99[name]
            if (self.capacity_load[name] is not None and info.slo.p99_us is not None and p99 is not None
                    and ref is not None and p99 > info.slo.p99_us * (1.0 - p.slo_margin)
                    and p99 > p.refute_ratio * ref):
                # coalescing for capacity made the tail worse, not better: latency-bound after all
                self.capacity_load[name] = self.capacity_p99[name] = None
                self.refuted_load[name] = max(load, 1.0)
            if ts is None:
                continue
            floor = info.slo.min_throughput_bps
            if floor is not None and stats.interval_ns:
                bps = ts.bytes * 8 * NS_PER_S / stats.interval_ns
                if bps < floor and not dropped:
                    self.scale[name] = max(1 / 16, self.scale[name] * 0.5)
                else:
                    self.scale[name] = min(1.0, self.scale[name] * 1.25)
            self.measured[name] = ts.p99_us
            if (not p.correct_latency or ts.p99_us is None or ts.packets < p.min_samples
                    or self.capacity_load[name] is not None):
                continue
            residual = ts.p99_us - ev.tenant_p99_us.get(name, 0.0)
            base = self.base_us[name]
            if base is None:
                self.base_us[name] = residual
            else:
                a = min(1.0, 2 * p.correction_alpha) if residual > base else p.correction_alpha
                self.base_us[name] = base + a * (residual - base)

    # --- planning --------------------------------------------------------------------------------

    def _planner(self, stats_rates: dict[tuple[Site, str], float] | None = None) -> Planner:
        rates = self.rates if stats_rates is None else stats_rates
        per_us = lambda site, d: rates.get((site, d), 0.0) / 1e6  # noqa: E731
        chains: list[Chain] = []
        for kind, nic, guest in self._chain_specs(self.context):
            gates = tuple(g for g in self._chain_gates(kind, nic, guest))
            if kind == "nic_rx":
                tenants = self.context.sites[nic].tenants
                chains.append(Chain(f"{kind}:{nic.instance}", kind, gates, tuple(tenants), per_us(nic, "rx"),
                                    None, self.work_us.get(nic)))
            elif kind == "nic_txc":
                chains.append(Chain(f"{kind}:{nic.instance}", kind, gates, (), per_us(nic, "tx")))
            elif kind == "guest_rx":
                be = Site(Layer.BACKEND, guest or "")
                # netback copies packet by packet, so the event channel gate sees packets, not NIC batches
                chains.append(Chain(f"{kind}:{guest}", kind, gates, (guest or "",), per_us(be, "rx")))
            else:
                fe = Site(Layer.FRONTEND, guest or "")
                chains.append(Chain(f"{kind}:{guest}", kind, gates, (guest or "",), per_us(fe, "tx")))
        return Planner(chains, self.levels, self.gates, self.current, self.supported, self.costs, self._memo)

    def _chain_gates(self, kind: str, nic: Site, guest: str | None) -> tuple[Gate, ...]:
        return tuple(g for g in chain_gates(kind, nic, guest) if g.key in self.gates)

    def _budgets(self) -> tuple[dict[str, float], dict[str, str]]:
        p = self.params
        budgets: dict[str, float] = {}
        why: dict[str, str] = {}
        for name, info in self.context.tenants.items():
            if info.slo.p99_us is None:
                b = p.bulk_budget_us
                why[name] = "throughput-seeking"
            else:
                base = self.base_us[name] if self.base_us[name] is not None else self.prior_us
                b = info.slo.p99_us * (1.0 - p.slo_margin) - base
                why[name] = f"p99 target {info.slo.p99_us:g}us, base {base:.1f}us"
                if self.refuted_load[name] is not None:
                    why[name] += " (capacity-bound refuted: measured p99 rose while coalescing)"
            b *= self.scale[name]
            if self.capacity_load[name] is not None:
                # queueing dominates the measured latency; only coalescing frees CPU. Allow up to the
                # bulk budget, but not beyond the SLO itself.
                slo_cap = info.slo.p99_us * (1.0 - p.slo_margin) if info.slo.p99_us else p.bulk_budget_us
                cap_b = min(p.bulk_budget_us, slo_cap)
                if b < cap_b:
                    b = cap_b
                    why[name] = "capacity-bound (drops or busy consumer on its path)"
            budgets[name] = max(0.0, b)
        return budgets, why

    def decide(self) -> Decision | None:
        if self.context is None:
            return None
        index = self.window.index if self.window else 0
        if self.window is None:
            records = tuple(
                DecisionRecord(index, s, self.current[s], False, "keep: no window observed yet")
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
            t: p.latency_price if info.slo.p99_us is not None and self.capacity_load[t] is None else 0.0
            for t, info in self.context.tenants.items()
        }
        idx, _ = planner.optimise(plan_budgets, p.min_gain_cpu, prices)
        idx = self._bounded(planner, idx)
        target = planner.params_for(idx)
        plan = planner.evaluate(target)
        # objective: CPU plus the price of latency tenants' added delay (what the planner minimises)
        j_cur = cur.cost + sum(prices[t] * d for t, d in cur.tenant_p99_us.items())
        j_plan = plan.cost + sum(prices[t] * d for t, d in plan.tenant_p99_us.items())
        gain = j_cur - j_plan
        saving = cur.cost - plan.cost
        if violations:
            adopt = True
            reason = "tighten: predicted p99 over budget for " + ", ".join(violations)
        elif gain > max(p.hysteresis * j_cur, p.min_change_cpu):
            adopt = True
            if saving >= 0:
                reason = f"relax: predicted saving {saving * 100:.2f}% of a CPU"
            else:
                reason = f"cut delay: worth its {-saving * 100:.2f}% of a CPU at the latency price"
        else:
            adopt = False
            reason = f"keep: within hysteresis (objective gain {gain * 100:.2f}% of a CPU)"
        new_params = target if adopt else dict(self.current)
        final = plan if adopt else cur
        changed = {s: q for s, q in new_params.items() if q != self.current.get(s)}
        records = self._records(index, planner, final, changed, reason, budgets, why)
        self.current.update(changed)
        return Decision(changed, records)

    def _bounded(self, planner: Planner, idx: dict[str, int]) -> dict[str, int]:
        """Limit every timer increase to ``max_step_factor`` (first step ``first_step_us``)."""
        p = self.params
        out = {}
        for key, i in idx.items():
            g = self.gates[key]
            cur_hold = g.hold_us(self.current[g.site])
            limit = max(cur_hold * p.max_step_factor, float(p.first_step_us))
            j = i
            while j > 0:
                hold = g.hold_us(planner.params_for({key: j})[g.site])
                if hold <= cur_hold or hold <= limit:
                    break
                j -= 1
            out[key] = j
        return out

    def _records(
        self, index: int, planner: Planner, ev: Evaluation, changed: dict[Site, CoalesceParams], reason: str,
        budgets: dict[str, float], why: dict[str, str],
    ) -> tuple[DecisionRecord, ...]:
        preds: dict[Site, dict[str, float]] = {}
        for c in planner.chains:
            cp = ev.chains[c.key]
            for g, sp in zip(c.gates, cp.stages, strict=True):
                d = preds.setdefault(g.site, {})
                d[f"{g.knob}.p99_us"] = sp.p99_us
                d[f"{g.knob}.mean_delay_us"] = sp.mean_us
                d[f"{g.knob}.irq_per_s"] = sp.out_per_us * 1e6
            first = c.gates[0].site
            preds.setdefault(first, {})[f"{c.kind}.cpu_frac"] = cp.cost
        records = []
        for site in sorted(self.context.sites):
            info = self.context.sites[site]
            inputs: dict[str, float] = {
                "rx_pps": self.rates.get((site, "rx"), 0.0),
                "tx_pps": self.rates.get((site, "tx"), 0.0),
            }
            s = self.window.sites.get(site) if self.window else None
            if s is not None:
                inputs["rx_irq_per_s"] = s.irq_per_s("rx")
                inputs["tx_irq_per_s"] = s.irq_per_s("tx")
                inputs["cpu_util"] = s.cpu_ns / s.interval_ns if s.interval_ns else 0.0
            predicted = dict(preds.get(site, {}))
            notes = []
            for t in info.tenants:
                inputs[f"{t}.budget_us"] = budgets.get(t, 0.0)
                predicted[f"{t}.added_p99_us"] = ev.tenant_p99_us.get(t, 0.0)
                if self.base_us.get(t) is not None:
                    inputs[f"{t}.base_us"] = float(self.base_us[t])
                if self.measured.get(t) is not None:
                    inputs[f"{t}.measured_p99_us"] = float(self.measured[t])
                notes.append(f"{t}: {why.get(t, '')}")
            text = reason + ("; " + "; ".join(notes) if notes else "")
            params = changed.get(site, self.current[site])
            records.append(DecisionRecord(index, site, params, site in changed, text, inputs, predicted))
        return tuple(records)
