"""Discrete-event simulator of the virtualized network path.

``run_scenario(spec, policy)`` builds the scenario's topology (NIC queues, driver-domain cores,
per-guest backend and frontend, vCPUs), runs its workloads with the policy consulted every window,
and returns a ``TrialResult``. Nothing here reads files, argv or environment variables.
"""

from vcoal.sim.run import run_scenario

__all__ = ["run_scenario"]
