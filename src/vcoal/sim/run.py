"""Entry point of the simulator."""

from __future__ import annotations

from collections.abc import Callable

from vcoal.model.policy import Policy
from vcoal.model.result import TrialResult
from vcoal.spec.scenario import ScenarioSpec


def run_scenario(
    spec: ScenarioSpec,
    policy: Policy | None = None,
    *,
    seed: int | None = None,
    duration_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    audit: bool = False,
    deliveries: list | None = None,
    samples: list | None = None,
    engine: str = "auto",
) -> TrialResult:
    """Simulate ``spec`` under ``policy`` (None: the scenario's own static settings).

    Parameters
    ----------
    spec: the scenario.
    policy: a ``vcoal.model.Policy``; consulted before the first window and after every window.
    seed: overrides ``spec.seed``; every random stream is split from it by name.
    duration_s: overrides ``spec.duration_s`` (a warm-up as long is cut to a tenth of it).
    progress: called with the fraction done after every window.
    audit: track every packet (slower) so that loss or duplication raises.
    deliveries: if a list is given, ``(tenant, t0_ns, delivered_ns)`` of every delivered packet
        is appended to it (for sample-path tests; memory grows with the run).
    samples: if a list is given, ``(t_ns, {site: CounterSample})`` is appended at the start and
        at every window end: the raw counters a real host would show, for replay through the agent.
    engine: ``des`` (the event engine interpreted: the reference, any scenario), ``compiled`` (the
        same engine source compiled with numba: identical results), ``fast`` (compiled one-layer
        recursion; only for eligible scenarios, see ``vcoal.sim.fast.eligible``) or ``auto`` (fast
        when eligible and nothing per-packet was asked for, else des for an audit, else compiled).

    Returns
    -------
    TrialResult with per-tenant latency (µs), throughput, drops and SLO verdicts, per-site
    interrupt rates, per-CPU utilisation, the per-window series and the policy's decisions.
    """
    from vcoal.sim.simulation import Simulation

    overrides: dict = {}
    if duration_s is not None:
        overrides["duration_s"] = duration_s
        if spec.warmup_s >= duration_s:
            overrides["warmup_s"] = duration_s * 0.1  # keep the warm-up a small part of a short run
    if seed is not None:
        overrides["seed"] = seed
    if overrides:
        spec = spec.with_overrides(overrides)
    from vcoal.sim import fast

    if engine not in ("auto", "des", "fast", "compiled"):
        raise ValueError(f"engine={engine!r}: must be auto, des, compiled or fast")
    can_fast = fast.eligible(spec, policy) and not audit and deliveries is None and samples is None
    if engine == "fast" and not can_fast:
        raise ValueError("engine='fast' needs a one-layer, one-queue, one-guest open-loop scenario without a policy")
    if engine == "fast" or (engine == "auto" and can_fast):
        result = fast.run_fast(spec, policy=policy)
        if progress is not None:
            progress(1.0)
        return result
    sim = Simulation(spec, policy, spec.seed, compiled=engine == "compiled" or (engine == "auto" and not audit),
                     audit=audit)
    sim.deliveries = deliveries
    sim.samples = samples
    return sim.run(progress)
