"""CPU cost of the ``qos`` controller's decisions: what one window's ``observe`` + ``decide`` takes.

Runs each public-suite scenario (or the given ones) in the simulator (compiled engine) with the
``qos`` policy and times, with the process's CPU clock, every window's ``observe`` plus ``decide``
(the policy's whole work per window: learning from the window, planning, choosing). One process,
one core (pin it: ``taskset -c 1``). Reported per scenario: tenants, decisions, the median and the
maximum CPU ms per decision, and the policy's share of the trial's CPU (the baseline run in the
same process: the simulator that produced the windows). The JSON line adds, for the agent, the
share of a core the median decision takes at the agent's default window (``window_ms`` = 100).

Ends with one JSON line of figures (units in the keys). Usage:
    taskset -c 1 .venv/bin/python benchmarks/qos_decide.py [--seed 1] [SCENARIO.toml ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT_WINDOW_MS = 100.0  # the agent's default window (docs/agent.md, window_ms)


class TimedPolicy:
    """A policy whose ``observe`` + ``decide`` CPU time is recorded per window."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.window_cpu_s: list[float] = []

    def reset(self, context, rng) -> None:
        self.policy.reset(context, rng)

    def observe(self, stats) -> None:
        t0 = time.process_time()
        self.policy.observe(stats)
        self.window_cpu_s.append(time.process_time() - t0)

    def decide(self):
        t0 = time.process_time()
        decision = self.policy.decide()
        if self.window_cpu_s:  # the first decide (before any window) is the initial setting
            self.window_cpu_s[-1] += time.process_time() - t0
        return decision

    def __getattr__(self, name):
        return getattr(self.policy, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", type=Path, help="scenario TOMLs (default: examples/suite)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from vcoal.policies import make_policy
    from vcoal.sim import run_scenario
    from vcoal.spec import load_scenario

    paths = args.scenarios or sorted((ROOT / "examples/suite").glob("*.toml"))
    warm = load_scenario(paths[0])
    run_scenario(warm, make_policy("qos", {}), duration_s=0.01, engine="compiled")  # compile / load first
    rows = []
    for path in paths:
        spec = load_scenario(path)
        policy = TimedPolicy(make_policy("qos", {}))
        t0 = time.process_time()
        run_scenario(spec, policy, seed=args.seed, engine="compiled")
        trial_s = time.process_time() - t0
        w = policy.window_cpu_s
        row = {"scenario": spec.name, "tenants": len(spec.guests), "decisions": len(w),
               "median_ms": 1e3 * statistics.median(w), "max_ms": 1e3 * max(w),
               "policy_cpu_s": sum(w), "trial_cpu_s": trial_s}
        rows.append(row)
        print(f"{row['scenario']:18s} tenants {row['tenants']:2d} decisions {row['decisions']:3d} "
              f"median {row['median_ms']:6.1f} ms  max {row['max_ms']:6.1f} ms  "
              f"policy {row['policy_cpu_s']:5.2f} s of the trial's {trial_s:5.2f} s CPU", flush=True)
    medians = [r["median_ms"] for r in rows]
    policy_s = sum(r["policy_cpu_s"] for r in rows)
    trial_s = sum(r["trial_cpu_s"] for r in rows)
    figures = {
        "scenarios": len(rows),
        "seed": args.seed,
        "decision_median_ms_median": statistics.median(medians),
        "decision_median_ms_max": max(medians),
        "decision_max_ms": max(r["max_ms"] for r in rows),
        "policy_cpu_s": policy_s,
        "policy_share_of_trial_cpu": policy_s / trial_s,
        "agent_core_share_at_default_window_median": statistics.median(medians) / AGENT_WINDOW_MS,
        "agent_core_share_at_default_window_max": max(medians) / AGENT_WINDOW_MS,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
