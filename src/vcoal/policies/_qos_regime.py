"""Tenant regimes of the ``qos`` controller: a small state machine per tenant and its delay budget.

States (``Regime``), re-evaluated every window from that window's evidence:

* ``throughput-seeking``: no p99 SLO; may add ``bulk_budget_us`` (a closed loop: delay slows it), or
  ``open_loop_budget_us`` when its load is open loop (``poisson``, ``trace``: delay does not slow it).
* ``latency-bound``: a p99 SLO with slack; may add ``p99 * (1 - slo_margin) - base``.
* ``capacity-bound``: drops or a busy consumer on its path; queueing dominates its latency and only
  coalescing frees CPU, so it gets at least ``min(bulk_budget_us, p99 * (1 - slo_margin))``.
* ``refuted``: was capacity-bound but its measured p99 rose above target and ``refute_ratio`` times
  what it was then: latency-bound after all; busy/drop evidence is ignored until its load leaves
  [0.5x, 2x] of the load at the refutation.
* ``infeasible``: the target cannot be met by any coalescing setting. Either the learned base
  (measured p99 minus the modelled added delay, never negative) is at least ``infeasible_ratio``
  times the target for ``infeasible_windows`` windows (budget 0: the least latency qos can give), or a
  capacity-bound tenant's measured p99 stays above target that long ("shared core saturated": it
  keeps its capacity budget, coalescing is what shortens its queues). It leaves the state when the
  base falls below ``feasible_ratio`` times the target (or the capacity evidence goes).

Throughput guard (request-response tenants without a throughput floor): added delay slows a closed
loop, so the tenant's budget is capped to keep its packet rate at least ``rr_throughput_floor`` of
its rate with the least added delay seen (its *reference*, learned from the windows whose modelled
added p99 is within ``thr_ref_tolerance_us`` of the least seen). The cap starts from the closed-loop
bound (a request cycle is at least the round trip, whose median is measured):
``2 * (1 / floor - 1) * p50`` µs of added p99 (a timer's mean delay is about half its p99 bound);
the rate ratio is smoothed (EWMA of gain ``rate_alpha``, so one noisy window does not move the cap);
below the floor with more delay than the reference it halves the excess delay of the cap,
comfortably above it (half the allowed loss) it loosens the cap by ``thr_recover``, but not beyond
``CEILING_FRACTION`` of the last excess delay that missed the floor (so the cap settles below it
instead of probing up and being cut again; a new reference or load forgets that ceiling). A
CPU-bound tenant (capacity-bound) is exempt, and so is one whose SLO declares a throughput floor
(that floor is enforced instead: the budget halves while it is missed without drops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vcoal.model.slo import Slo

LATENCY, CAPACITY, REFUTED, INFEASIBLE, SEEKING = (
    "latency-bound", "capacity-bound", "refuted", "infeasible", "throughput-seeking",
)  # fmt: skip
CAP_EXIT_LOAD = 0.8  # capacity-bound ends when the load falls below this fraction of its busy load
REFUTE_LOAD_BAND = (0.5, 2.0)  # a refutation holds while the load stays within this band of its load
OPEN_LOOP_KINDS = frozenset({"poisson", "trace"})  # workloads whose offered load does not wait for replies
FLOOR_SCALE_MIN = 1 / 16  # smallest budget scale of a tenant missing its throughput floor
FLOOR_SCALE_DOWN, FLOOR_SCALE_UP = 0.5, 1.25  # per window while the floor is missed / met
LOAD_CHANGE_MARGIN = 0.9  # a rate below this fraction of the closed-loop bound is a load change
TIMER_P99_OVER_MEAN = 2.0  # a timer's p99 bound over its mean added delay (uniform arrivals)
CEILING_FRACTION = 0.8  # a loosening cap stops at this fraction of the excess delay that missed the floor


@dataclass
class TenantState:
    """What the controller knows about one tenant; ``regime`` names its state."""

    slo: Slo
    kind: str
    regime: str = LATENCY
    cause: str = ""
    base_us: float | None = None
    last_residual: float | None = None  # the previous window's (learn_base)
    measured_p99: float | None = None
    scale: float = 1.0
    capacity_load: float | None = None
    capacity_p99: float | None = None
    refuted_load: float | None = None
    streak: int = 0
    ref_delay_us: float | None = None
    ref_pps: float | None = None
    ref_p50_us: float | None = None
    thr_cap_us: float | None = None
    thr_ratio: float | None = None
    thr_ceiling_us: float | None = None
    thr_delay_us: float | None = None  # added delay of the last window (the ratio's smoothing restarts on a new one)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.slo.p99_us is None:
            self.regime = SEEKING

    @property
    def guarded(self) -> bool:
        """Whether the throughput guard applies (request-response, no declared throughput floor)."""
        return self.kind == "request_response" and self.slo.min_throughput_bps is None

    # --- evidence ----------------------------------------------------------------------------------

    def capacity(self, p, busy: bool, load: float, p99: float | None) -> None:
        """Busy/drop evidence of one window (``busy``) at ``load`` packets/s; refutation by ``p99``."""
        if self.refuted_load is not None:
            lo, hi = REFUTE_LOAD_BAND
            if not lo * self.refuted_load <= load <= hi * self.refuted_load:
                self.refuted_load = None  # a new load phase: the evidence may hold now
            else:
                busy = False
        cap = self.capacity_load
        if busy:
            self.capacity_load = max(load, cap or 0.0)
            if cap is None or self.capacity_p99 is None:
                self.capacity_p99 = p99  # latency before coalescing for capacity
        elif cap is not None and load < CAP_EXIT_LOAD * cap:
            self.capacity_load = self.capacity_p99 = None
        ref, target = self.capacity_p99, self.slo.p99_us
        if (self.capacity_load is not None and target is not None and p99 is not None and ref is not None
                and p99 > target * (1.0 - p.slo_margin) and p99 > p.refute_ratio * ref):
            self.capacity_load = self.capacity_p99 = None
            self.refuted_load = max(load, 1.0)

    def learn_base(self, p, p99: float, predicted_us: float, prior_us: float) -> None:
        """Fold one window's residual (measured p99 - modelled added p99, at least 0) into the base:
        an EWMA with twice the gain while the residual stays above the base for a second window (a
        rise that persists; one window's spike, as a 2-vCPU host's scheduler gives, moves it at the
        normal gain). The first window moves it from the cost table's prior like any other."""
        residual = max(0.0, p99 - predicted_us)
        base = prior_us if self.base_us is None else self.base_us
        rising = residual > base and self.last_residual is not None and self.last_residual > base
        a = min(1.0, 2 * p.correction_alpha) if rising else p.correction_alpha
        self.base_us = base + a * (residual - base)
        self.last_residual = residual

    def floor(self, bps: float, dropped: bool) -> None:
        """The declared throughput floor: halve the budget while it is missed without drops."""
        floor = self.slo.min_throughput_bps
        if floor is None:
            return
        if bps < floor and not dropped:
            self.scale = max(FLOOR_SCALE_MIN, self.scale * FLOOR_SCALE_DOWN)
        else:
            self.scale = min(1.0, self.scale * FLOOR_SCALE_UP)

    def throughput(self, p, pps: float, p50: float | None, delay_us: float) -> None:
        """The throughput guard: one window's packet rate at ``delay_us`` of modelled added p99."""
        if not self.guarded or pps <= 0:
            return
        tol = p.thr_ref_tolerance_us
        if self.ref_delay_us is None or delay_us < self.ref_delay_us - tol:
            self.ref_delay_us, self.ref_pps, self.ref_p50_us, self.thr_ceiling_us = delay_us, pps, p50, None
        elif delay_us <= self.ref_delay_us + tol:
            self.ref_pps += p.rate_alpha * (pps - self.ref_pps)  # type: ignore[operator]
            if p50 is not None:
                self.ref_p50_us = p50 if self.ref_p50_us is None else self.ref_p50_us + p.rate_alpha * (p50 - self.ref_p50_us)
        if self.thr_cap_us is None and self.ref_p50_us is not None:
            slack = 1.0 / p.rr_throughput_floor - 1.0
            self.thr_cap_us = self.ref_delay_us + TIMER_P99_OVER_MEAN * slack * self.ref_p50_us
        raw = pps / self.ref_pps if self.ref_pps else None
        if raw is None:
            self.thr_ratio = None
            return
        # the ratio is smoothed (EWMA, gain rate_alpha): one noisy window of a closed loop (a few %
        # per 10 ms window) must not cut or loosen the cap, or the cap cycles with the noise
        # (among windows at the same added delay: a new delay restarts it from its own window)
        old, same = self.thr_ratio, self.thr_delay_us is not None and abs(delay_us - self.thr_delay_us) <= tol
        self.thr_ratio = old + p.rate_alpha * (raw - old) if old is not None and same else raw
        self.thr_delay_us = delay_us
        if self.capacity_load is not None:
            return
        excess = delay_us - self.ref_delay_us
        cycle = self.ref_p50_us if self.ref_p50_us else excess  # a request cycle is at least its round trip
        if excess > tol and raw < LOAD_CHANGE_MARGIN * cycle / (cycle + excess):
            # more loss than the added delay can cause in a closed loop: the offered load changed
            self.ref_delay_us, self.ref_pps, self.thr_ratio, self.thr_ceiling_us = delay_us, pps, 1.0, None
            return
        if self.thr_ratio < p.rr_throughput_floor and excess > tol:
            self.thr_ceiling_us = delay_us  # this much added delay costs too much throughput
            self.thr_cap_us = self.ref_delay_us + 0.5 * excess
        elif self.thr_cap_us is not None and self.thr_ratio >= 1.0 - (1.0 - p.rr_throughput_floor) / 2:
            cap = self.thr_cap_us * p.thr_recover
            if self.thr_ceiling_us is not None:  # loosen toward, not back to, a delay that missed the floor
                cap = min(cap, self.ref_delay_us + CEILING_FRACTION * (self.thr_ceiling_us - self.ref_delay_us))
            self.thr_cap_us = max(self.thr_cap_us, cap)

    def classify(self, p, p99: float | None, busy_site: str | None) -> None:
        """Move between regimes after a window's evidence (see the module docstring)."""
        target = self.slo.p99_us
        if target is None:
            self.regime, self.cause = SEEKING, ""
            return
        base = self.base_us
        if self.capacity_load is not None:
            over = p99 is not None and p99 >= target
            self.streak = self.streak + 1 if over else 0
            if self.streak >= p.infeasible_windows:
                where = f" at {busy_site}" if busy_site else ""
                self.regime = INFEASIBLE
                self.cause = (f"shared core saturated{where}: measured p99 {p99:.1f}us >= target {target:g}us "
                              "while coalescing for capacity")
            else:
                self.regime, self.cause = CAPACITY, ""
            return
        if self.regime == INFEASIBLE and base is not None and base >= p.feasible_ratio * target:
            self.cause = f"measured base p99 {base:.1f}us >= target {target:g}us"
            return  # stays until the base falls clearly below the target
        over = base is not None and base >= p.infeasible_ratio * target
        self.streak = self.streak + 1 if over else 0
        if over and self.streak >= p.infeasible_windows:
            self.regime = INFEASIBLE
            self.cause = f"measured base p99 {base:.1f}us >= target {target:g}us"
        else:
            self.regime = REFUTED if self.refuted_load is not None else LATENCY
            self.cause = ""

    # --- budget ------------------------------------------------------------------------------------

    def budget(self, p, prior_us: float) -> tuple[float, str]:
        """The added p99 (µs) this tenant may get, and why."""
        target = self.slo.p99_us
        if target is None and self.kind in OPEN_LOOP_KINDS:
            b, why = p.open_loop_budget_us, "throughput-seeking, open loop"
        elif target is None:
            b, why = p.bulk_budget_us, "throughput-seeking"
        else:
            base = self.base_us if self.base_us is not None else prior_us
            b = target * (1.0 - p.slo_margin) - base
            why = f"{self.regime}, p99 target {target:g}us, base {base:.1f}us"
            if self.regime == REFUTED:
                why += " (capacity-bound refuted: measured p99 rose while coalescing)"
            if b < 0 and self.regime != INFEASIBLE:
                why += f", no slack ({-b:.1f}us over target less margin)"
        b *= self.scale
        if self.scale < 1.0:
            why += f", throughput floor missed (budget x{self.scale:g})"
        if self.capacity_load is not None:
            slo_cap = target * (1.0 - p.slo_margin) if target else p.bulk_budget_us
            cap_b = min(p.bulk_budget_us, slo_cap)
            if b < cap_b:
                b = cap_b
                why = f"capacity-bound (drops or busy consumer on its path), budget {cap_b:g}us"
            if self.cause:
                why = f"infeasible: {self.cause}; " + why
            if self.guarded:
                why += "; throughput guard off: CPU-bound"
        elif self.regime == INFEASIBLE:
            return 0.0, f"infeasible: {self.cause}; least latency on its path"
        if self.guarded and self.capacity_load is None and self.thr_cap_us is not None and b > self.thr_cap_us:
            b = self.thr_cap_us
            ratio = f"{self.thr_ratio:.3f}" if self.thr_ratio is not None else "-"
            why += (f", throughput guard: added p99 <= {b:.1f}us keeps >= {p.rr_throughput_floor:g} of its "
                    f"least-delay rate (now {ratio})")
        return max(0.0, b), why
