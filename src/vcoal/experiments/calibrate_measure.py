"""Calibration, step 1 (root): measure a grid of NAPI deferral settings on the testbed.

``measure`` runs every grid point (``calibrate.GridPoint``) on the real-kernel testbed in short
interleaved repetitions (each repetition runs every point once, in a shuffled order, each on a
fresh topology) and returns the per-run rows and per-point medians as a grid document
(``calibrate.GRID_FORMAT``), which ``calibrate.load_grid`` reads for the fit.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence

from vcoal.experiments.calibrate import GRID_FORMAT, GridPoint, check_spec
from vcoal.spec import ScenarioSpec
from vcoal.testbed.measure import load_tools_running


def measure(
    spec: ScenarioSpec,
    points: Sequence[GridPoint],
    reps: int = 3,
    measure_s: float = 2.0,
    seed: int = 1,
    log: Callable[[str], None] | None = None,
    trial_fn: Callable | None = None,
    wait_quiet_s: float = 0.0,
) -> dict:
    """Run the grid on the testbed: ``reps`` interleaved repetitions, shuffled order per repetition.

    NET_RX softirqs are host-wide, so other people's load tools distort them: with
    ``wait_quiet_s`` > 0 every run first waits (up to that long) until no sockperf/iperf3 process
    is left on the host (ours are all ended when a trial returns); each row records how many
    others were running at its start (``others``).
    """
    check_spec(spec)
    if trial_fn is None:
        from vcoal.policies import make_policy
        from vcoal.testbed.trial import TrialOptions, run_trial

        def trial_fn(s: ScenarioSpec):
            return run_trial(s, make_policy("static"), TrialOptions(measure_s=measure_s, window_s=1.0))

    rng = random.Random(seed)
    runs: dict[str, list[dict]] = {p.name: [] for p in points}
    t0 = time.time()
    for rep in range(reps):
        order = list(points)
        rng.shuffle(order)
        for p in order:
            s = spec.with_overrides(p.overrides())
            others = _wait_quiet(wait_quiet_s)
            r = trial_fn(s)
            t = r.tenants[0]
            row = {
                "rep": rep,
                "t": round(time.time() - t0, 2),
                "p50_us": t.rtt_us["p50"],
                "p99_us": t.rtt_us["p99"],
                "tps": t.throughput_pps,
                "net_rx_per_s": r.meta["net_rx_per_s"],
                "net_rx_per_rt": r.meta["net_rx_per_s"] / t.throughput_pps if t.throughput_pps else None,
                "background_cpu": r.meta.get("background_cpu_frac"),
                "others": others,
            }
            runs[p.name].append(row)
            if log:
                log(f"rep {rep} {p.name}: p50 {row['p50_us']:.1f} µs p99 {row['p99_us']:.1f} µs "
                    f"NET_RX/s {row['net_rx_per_s']:.0f} bg {row['background_cpu']:.2f} others {others}")
    from vcoal.linux.hostinfo import host_info

    return {
        "format": GRID_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec": spec.model_dump(mode="json"),
        "reps": reps,
        "measure_s": measure_s,
        "host": host_info().to_dict(),
        "points": [{**p.to_json(), **_medians(runs[p.name]), "runs": runs[p.name]} for p in points],
    }


def _wait_quiet(limit_s: float) -> int:
    deadline = time.monotonic() + limit_s
    n = len(load_tools_running())
    while n and time.monotonic() < deadline:
        time.sleep(0.5)
        n = len(load_tools_running())
    return n


def _medians(rows: list[dict]) -> dict:
    out = {}
    for k in ("p50_us", "p99_us", "tps", "net_rx_per_s", "background_cpu"):
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
        if k in ("p50_us", "net_rx_per_s") and vals:
            out[f"{k}_range"] = [min(vals), max(vals)]
    return out
