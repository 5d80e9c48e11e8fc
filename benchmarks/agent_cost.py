"""CPU cost of the agent's loop per window: read counters + decide + apply, with N queues under control.

Needs root: builds a namespace with N/2 veth pairs (N interfaces, GRO on, so every one has a
NAPI), then re-runs itself inside it (``ip netns exec``) and runs the real agent parts (LinuxSource,
KnobApplier, LinuxKnobs on netdev netlink, run_loop on the monotonic clock) for a few seconds per
case:

- ``hold``: the policy sets every interface once, then keeps it (steady state: sample + verify +
  decide);
- ``flip``: the policy changes ``gro_flush_timeout`` of every interface every window (worst case:
  journal, napi-set and read-back on all N interfaces each window).

Reaction time (``--reaction``, default on): the ``dxzl`` policy controls a guest-side veth
(``frontend``) in the namespace; a UDP flood from a second namespace starts after 1 s; the figure is
the number of windows from the first window whose counters show the load to the window whose
read-back shows the new ``gro_flush_timeout`` (0 = set at the end of that same window), and the wall
time from the sender's start to that read-back.

Prints one line per case and ends with one JSON line of figures (units in the keys).
Usage: sudo .venv/bin/python benchmarks/agent_cost.py [--queues 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid


def _outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("agent_cost: needs root (creates a network namespace)", file=sys.stderr)
        return 2
    ns = "vct-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        batch = []
        for i in range(args.queues // 2):
            batch.append(f"link add vifa{i} type veth peer name vifb{i}")
            batch.append(f"link set vifa{i} up")
            batch.append(f"link set vifb{i} up")
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
        for i in range(args.queues // 2):
            for dev in (f"vifa{i}", f"vifb{i}"):
                subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"],
                               check=True, capture_output=True)
        peer = ns + "p"
        subprocess.run(["ip", "netns", "add", peer], check=True)
        for line in (
            f"ip -n {ns} link add gethr0 type veth peer name vifr0 netns {peer}",
            f"ip -n {ns} addr add 198.18.0.2/24 dev gethr0",
            f"ip -n {peer} addr add 198.18.0.1/24 dev vifr0",
            f"ip -n {ns} link set gethr0 up",
            f"ip -n {peer} link set vifr0 up",
            f"ip netns exec {ns} ethtool -K gethr0 gro on",
            f"ip netns exec {peer} ethtool -K vifr0 tso off",
        ):
            subprocess.run(line.split(), check=True, capture_output=True)
        cmd = ["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--peer", peer,
               "--queues", str(args.queues), "--seconds", str(args.seconds)]
        return subprocess.run(cmd).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", ns + "p"], check=False)


def _inner(args: argparse.Namespace) -> int:
    from vcoal.agent.config import parse_config
    from vcoal.agent.linux_io import KnobApplier, LinuxSource
    from vcoal.agent.loop import MonotonicClock, freeze_setup_objects, run_loop
    from vcoal.linux.journal import Journal
    from vcoal.linux.knobs import LinuxKnobs
    from vcoal.model.policy import Decision
    from vcoal.policies import make_policy
    from vcoal.policies.base import PolicyBase

    class Flip(PolicyBase):
        """Changes gro_flush_timeout of every site every window."""

        name = "bench-flip"

        @dataclasses.dataclass(frozen=True)
        class Params:
            pass

        def decide(self):
            if self.window is None:
                return None
            value = 20_000 if self.window.index % 2 else 30_000
            return Decision({s: st.params.with_changes(gro_flush_timeout_ns=value, napi_defer_hard_irqs=2)
                             for s, st in self.window.sites.items()})

    figures: dict[str, float] = {"queues": args.queues}
    tmp = tempfile.mkdtemp(prefix="vcoal-bench-")
    for hz in (10, 100):
        for case in ("hold", "flip"):
            cfg = parse_config({
                "window_ms": 1000 / hz,
                "journal_path": f"{tmp}/journal.json",
                "status_path": f"{tmp}/status.json",
                "policy": {"name": "static", "params": {"backend": {"napi_defer_hard_irqs": 2,
                                                                    "gro_flush_timeout_ns": 20000}}},
                "safety": {"max_changes_per_minute": 6000, "verify_every_windows": max(1, hz // 10) * 10},
                "metrics": {"enabled": False},
                "interfaces": [{"match": ["vif*"], "layer": "backend"}],
            })
            knobs = LinuxKnobs(None, Journal(cfg.journal_path))
            applier = KnobApplier(cfg, knobs)
            source = LinuxSource(cfg, applier)
            policy = Flip() if case == "flip" else make_policy("static", cfg.policy.params)
            parts = {"sample": 0.0, "apply": 0.0, "verify": 0.0, "context": 0.0}

            def timed(fn, key, parts=parts):
                def wrapper(*a):
                    t0 = time.thread_time()
                    try:
                        return fn(*a)
                    finally:
                        parts[key] += time.thread_time() - t0
                return wrapper

            source.sample = timed(source.sample, "sample")
            source.context = timed(source.context, "context")
            applier.apply = timed(applier.apply, "apply")
            applier.begin_window = timed(applier.begin_window, "verify")
            stop = threading.Event()
            marks: list[tuple[float, dict[str, float]]] = []  # CPU time and parts after each window

            def on_window(report, marks=marks, stop=stop, hz=hz, parts=parts):
                marks.append((time.thread_time(), dict(parts)))
                if len(marks) > hz * args.seconds + 1:
                    stop.set()

            freeze_setup_objects()  # as the daemon does before its loop
            res = run_loop(MonotonicClock(), source, policy, applier, stop, cfg.window_ns, on_window=on_window)
            knobs.restore()
            knobs.close()
            knobs.journal.release()  # the next case locks the same journal
            # from the end of the first window (setup, initial decision and first sample excluded)
            (t0, p0), (t1, p1) = marks[1], marks[-1]
            n = len(marks) - 2
            cpu_us = (t1 - t0) / n * 1e6
            key = f"{case}_{hz}hz"
            figures[f"cpu_us_per_window_{key}"] = round(cpu_us, 1)
            figures[f"cpu_percent_of_core_{key}"] = round(cpu_us * hz / 1e4, 3)
            for part in ("sample", "apply", "verify", "context"):
                figures[f"{part}_us_per_window_{key}"] = round((p1[part] - p0[part]) / n * 1e6, 1)
            figures[f"overruns_{key}"] = res.overruns
            print(f"{case:4s} {hz:3d} Hz, {len(applier.managed)} interfaces: {cpu_us:8.1f} µs CPU/window "
                  f"= {cpu_us * hz / 1e4:6.2f} % of a core (sample {figures[f'sample_us_per_window_{key}']} µs, "
                  f"apply {figures[f'apply_us_per_window_{key}']} µs, verify {figures[f'verify_us_per_window_{key}']} µs, "
                  f"context {figures[f'context_us_per_window_{key}']} µs), {res.overruns} overruns in {res.windows} windows")
    figures.update(_reaction(args.peer, tmp))
    print(json.dumps(figures, sort_keys=True))
    return 0


_FLOOD = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 3.0
payload = bytes(64)
while time.monotonic() < end:
    for _ in range(64):
        s.sendto(payload, ("198.18.0.2", 9))
"""


def _reaction(peer: str, tmp: str) -> dict[str, float]:
    """Windows from a load change to the new setting, with the dxzl policy on the frontend veth."""
    from vcoal.agent.config import parse_config
    from vcoal.agent.linux_io import KnobApplier, LinuxSource
    from vcoal.agent.loop import MonotonicClock, run_loop
    from vcoal.linux.journal import Journal
    from vcoal.linux.knobs import LinuxKnobs
    from vcoal.policies import make_policy

    window_ms = 100
    cfg = parse_config({
        "window_ms": window_ms,
        "journal_path": f"{tmp}/journal.json",
        "status_path": f"{tmp}/status.json",
        "policy": {"name": "dxzl", "params": {"lif_irq_per_s": 1000, "ring_buffers": 16}},
        "safety": {"max_changes_per_minute": 600},
        "metrics": {"enabled": False},
        "interfaces": [{"match": ["gethr0"], "layer": "frontend"}],
    })
    knobs = LinuxKnobs(None, Journal(cfg.journal_path))
    applier = KnobApplier(cfg, knobs)
    source = LinuxSource(cfg, applier)
    stop = threading.Event()
    rows: list[tuple[int, float, int]] = []  # window, rx pps, gro_flush_timeout_ns after the window
    start: list[float] = []
    sender: list[subprocess.Popen] = []

    def on_window(report) -> None:
        stats = next(iter(report.stats.sites.values()), None)
        if stats is None:
            return
        rows.append((report.stats.index, stats.pps("rx"), applier.managed["gethr0"].knob_values["gro_flush_timeout_ns"]))
        if report.stats.index == 10:
            start.append(time.monotonic())
            sender.append(subprocess.Popen(["ip", "netns", "exec", peer, sys.executable, "-c", _FLOOD]))
        if report.stats.index == 30:
            stop.set()

    run_loop(MonotonicClock(), source, make_policy("dxzl", cfg.policy.params), applier, stop, cfg.window_ns, on_window=on_window)
    for p in sender:
        p.wait()
    knobs.restore()
    knobs.close()
    knobs.journal.release()
    print("window rx_pps gro_flush_timeout_ns:", [(w, round(pps), g) for w, pps, g in rows])
    idle_pps = max(pps for w, pps, _ in rows if w <= 10)
    loaded = next(w for w, pps, _ in rows if w > 10 and pps > max(1000.0, 10 * idle_pps))
    before = next(g for w, _, g in rows if w == loaded - 1)
    changed = next(w for w, _, g in rows if w >= loaded and g != before)
    at = next(g for w, _, g in rows if w == changed)
    peak = max(pps for _, pps, _ in rows)
    print(f"reaction: load ({peak:.0f} pps peak) visible in window {loaded}, gro_flush_timeout {before} -> {at} ns "
          f"read back after window {changed}: {changed - loaded} window(s) after the first loaded window "
          f"(window {window_ms} ms)")
    return {
        "reaction_windows_after_first_loaded_window": changed - loaded,
        "reaction_window_ms": window_ms,
        "reaction_load_peak_pps": round(peak),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queues", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    return _inner(args) if args.inner else _outer(args)


if __name__ == "__main__":
    sys.exit(main())
