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
    sim = Simulation(spec, policy, spec.seed, audit=audit)
    sim.deliveries = deliveries
    return sim.run(progress)
