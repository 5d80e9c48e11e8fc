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
) -> TrialResult:
    """Simulate ``spec`` under ``policy`` (None: the scenario's own static settings).

    Parameters
    ----------
    spec: the scenario.
    policy: a ``vcoal.model.Policy``; consulted before the first window and after every window.
    seed: overrides ``spec.seed``; every random stream is split from it by name.
    duration_s: overrides ``spec.duration_s``.
    progress: called with the fraction done after every window.
    audit: track every packet (slower) so that loss or duplication raises.

    Returns
    -------
    TrialResult with per-tenant latency (µs), throughput, drops and SLO verdicts, per-site
    interrupt rates, per-CPU utilisation, the per-window series and the policy's decisions.
    """
    from vcoal.sim.simulation import Simulation

    overrides = {}
    if duration_s is not None:
        overrides["duration_s"] = duration_s
    if seed is not None:
        overrides["seed"] = seed
    if overrides:
        spec = spec.model_copy(update=overrides)
        spec = type(spec).model_validate(spec.model_dump())
    sim = Simulation(spec, policy, spec.seed, audit=audit)
    return sim.run(progress)
