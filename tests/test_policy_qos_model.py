"""The ``qos`` prediction model and planner against the exact formulas and a brute-force search."""

from __future__ import annotations

import itertools
import math

import pytest

from vcoal.model.params import CoalesceParams, TimerMode
from vcoal.model.queueing import zero_cost_delay
from vcoal.model.units import Site
from vcoal.policies._qos_model import (
    Costs,
    Gate,
    chain_gates,
    defer_levels,
    defer_stage,
    erlang_q99_us,
    timer_levels,
    timer_stage,
)
from vcoal.policies._qos_plan import Chain, Planner

NIC = Site.parse("nic:q0")


@pytest.mark.parametrize(("usecs", "frames"), [(20, 32), (10, 0), (0, 8), (64, 64)])
def test_timer_stage_uses_the_exact_batch_terms(usecs, frames):
    lam = 0.5
    p = CoalesceParams(rx_usecs=usecs, rx_frames=frames)
    pred = timer_stage(p, "rx", lam)
    mean, irq = zero_cost_delay(lam, frames or None, usecs or None)
    assert pred.mean_us == pytest.approx(mean) and pred.out_per_us == pytest.approx(irq)
    assert pred.p99_us <= (usecs or math.inf)
    assert pred.p99_us >= pred.mean_us


def test_timer_stage_bounds():
    off = timer_stage(CoalesceParams(), "rx", 0.2)
    assert (off.p99_us, off.mean_us, off.out_per_us) == (0.0, 0.0, 0.2)
    # time-only: every packet waits at most the timer, a trickle waits exactly it
    assert timer_stage(CoalesceParams(rx_usecs=50, rx_frames=0), "rx", 0.001).p99_us == 50
    # a frame cap that fills fast bounds the wait below the timer
    assert timer_stage(CoalesceParams(rx_usecs=200, rx_frames=8), "rx", 1.0).p99_us < 20
    # ITR: the gap bounds the wait
    assert timer_stage(CoalesceParams(rx_usecs=30, timer=TimerMode.ITR), "rx", 0.1).p99_us == 30


def test_erlang_quantile():
    # the time to 100 arrivals at rate 1 has mean 100, sd 10: the 0.99 quantile is about 124
    assert erlang_q99_us(100, 1.0) == pytest.approx(124.0, abs=1.5)
    assert erlang_q99_us(0, 1.0) == 0.0 and erlang_q99_us(3, 0.0) == math.inf


def test_deferral_cuts_interrupts_more_with_a_longer_timeout():
    lam = 0.1
    outs = [defer_stage(CoalesceParams(napi_defer_hard_irqs=2, gro_flush_timeout_ns=t * 1000), lam) for t in (5, 20, 100)]
    assert outs[0].out_per_us > outs[1].out_per_us > outs[2].out_per_us
    assert [o.p99_us for o in outs] == [5, 20, 100]
    off = defer_stage(CoalesceParams(), lam)
    assert off.out_per_us == lam and off.polls_per_us == 0


def test_levels_respect_supported_fields():
    g = Gate(NIC, "rx", "rx")
    assert timer_levels(g, (8, 16), 64, frozenset({"napi_defer_hard_irqs", "gro_flush_timeout_ns"})) == []
    assert defer_levels((10,), 2, frozenset({"rx_usecs"})) == []
    lv = timer_levels(g, (8, 16), 64, None)
    assert lv[0] == {"rx_usecs": 0, "rx_frames": 1} and lv[-1]["rx_usecs"] == 16


def _planner(lam_a: float, lam_b: float) -> Planner:
    """One NIC queue shared by a and b, plus a's guest RX chain."""
    be, fe = Site.parse("backend:a"), Site.parse("frontend:a")
    chains = [
        Chain("nic_rx:q0", "nic_rx", chain_gates("nic_rx", NIC, None), ("a", "b"), lam_a + lam_b),
        Chain("guest_rx:a", "guest_rx", chain_gates("guest_rx", NIC, "a"), ("a",), lam_a),
    ]
    gates = {g.key: g for c in chains for g in c.gates}
    grid = (4, 16, 64)
    levels = {
        k: (defer_levels(grid, 2, None) if g.knob == "napi" else timer_levels(g, grid, 64, None)) for k, g in gates.items()
    }
    current = {s: CoalesceParams() for s in (NIC, be, fe)}
    return Planner(chains, levels, gates, current, {s: None for s in current}, Costs())


@pytest.mark.parametrize(("budget_a", "budget_b"), [(10.0, 200.0), (40.0, 40.0), (100.0, 20.0), (0.0, 100.0)])
def test_greedy_plan_is_feasible_and_close_to_the_brute_force_optimum(budget_a, budget_b):
    planner = _planner(0.05, 0.15)
    budgets = {"a": budget_a, "b": budget_b}
    _, ev = planner.optimise(budgets, 0.0)
    assert all(ev.tenant_p99_us[t] <= budgets[t] + 1e-9 for t in budgets)
    best = math.inf
    keys = planner.gate_order
    for combo in itertools.product(*(range(len(planner.levels[k])) for k in keys)):
        e = planner.evaluate(planner.params_for(dict(zip(keys, combo, strict=True))))
        if all(e.tenant_p99_us[t] <= budgets[t] + 1e-9 for t in budgets):
            best = min(best, e.cost)
    assert ev.cost <= best * 1.10 + 1e-9
    if budget_a == 0.0:
        assert ev.tenant_p99_us["a"] == 0.0


def _plain_poisson_min_moments(mean: float, cap: int) -> tuple[float, float]:
    """E[min(M, cap)] and E[K'(K'+1)], M ~ Poisson(mean): every term of the sum, no early stop."""
    if cap <= 0:
        return 0.0, 0.0
    pmf, e1, e2, mass = math.exp(-mean), 0.0, 0.0, 0.0
    for m in range(cap):
        e1 += m * pmf
        e2 += m * (m + 1) * pmf
        mass += pmf
        pmf *= mean / (m + 1)
    tail = max(0.0, 1.0 - mass)
    return e1 + cap * tail, e2 + cap * (cap + 1) * tail


def test_poisson_min_moments_stop_early_with_the_very_floats_of_the_full_sums():
    import random

    from vcoal.model.queueing import _poisson_min_moments

    rng = random.Random(14)
    cases = [(10 ** rng.uniform(-6, 3), rng.randint(0, 1024)) for _ in range(20_000)]
    cases += [(mean, cap) for mean in (0.0, 1e-300, 0.5, 1.0, 2.0, 700.0, 746.0) for cap in (1, 2, 31, 63, 255)]
    for mean, cap in cases:
        assert _poisson_min_moments(mean, cap) == _plain_poisson_min_moments(mean, cap), (mean, cap)
    e1, _ = _poisson_min_moments(0.9, 63)  # and the sum is the mean it should be (cap far above it)
    assert e1 == pytest.approx(0.9, rel=1e-12)


def test_a_planner_that_has_searched_predicts_every_assignment_as_a_fresh_one_does():
    """The planner keeps whole chain predictions (corrected) for its lifetime: after a search, every
    assignment still evaluates to the very floats of a planner that has computed nothing yet, with
    a fed chain (its input rate follows the feeding chain's levels) and a correction that reads the
    setting and its changed gates."""
    be, fe = Site.parse("backend:a"), Site.parse("frontend:a")
    chains = [
        Chain("nic_rx:q0", "nic_rx", chain_gates("nic_rx", NIC, None), ("a", "b"), 0.2),
        Chain("guest_rx:a", "guest_rx", chain_gates("guest_rx", NIC, "a"), ("a",), 0.05, feed="nic_rx:q0"),
    ]
    gates = {g.key: g for c in chains for g in c.gates}
    grid = (4, 16, 64)
    levels = {k: (defer_levels(grid, 2, None) if g.knob == "napi" else timer_levels(g, grid, 64, None))
              for k, g in gates.items()}
    current = {s: CoalesceParams() for s in (Site.parse("nic:q0"), be, fe)}  # equal sites, other objects

    def correct(key, model, ref_model, changed):
        return model * (1.0 + 0.1 * len(changed)) + 1e-3 * ref_model + 1e-6 * sum(v for v in key[1:] if isinstance(v, int))

    def planner():
        return Planner(chains, levels, gates, current, {s: None for s in current}, Costs(), correct=correct)

    searched = planner()
    searched.optimise({"a": 30.0, "b": 60.0}, 0.0)
    keys = searched.gate_order
    combos = list(itertools.product(*(range(len(searched.levels[k])) for k in keys)))
    assert len(combos) > 100
    rates = set()
    for combo in combos:
        params = searched.params_for(dict(zip(keys, combo, strict=True)))
        got, want = searched.evaluate(params), planner().evaluate(params)
        assert got == want, combo
        rates.add(want.chains["nic_rx:q0"].out_per_us)
    assert len(rates) > 3  # the fed chain's input rate did vary with the NIC's levels
