"""Simulator speed: vcoal vs a SimPy model of the same one-layer NAPI queue, and the reference.

Runs on one core, in one process, and prints:
- one-layer model (B.1 "base": absolute min(N,T), lambda = 0.5/us): packets/s of a SimPy
  implementation, of vcoal's event engine interpreted (``des``), and of vcoal's compiled path (end to end,
  arrivals and histogram included), with the ratio to SimPy; SimPy's departures are checked
  against vcoal's on the same arrival and service arrays;
- the one-layer model on the compiled event engine (``engine="compiled"``);
- the reference scenario (3 layers, 4 guests, both directions) on the event engine interpreted
  and compiled (same results; packets/s = packets the tenants sent, packet-hops/s
  = packets through every site, events/s = simulator events), wall clock and CPU time;
- where the reference run's events go, per packet sent: CPU jobs that come once per packet
  whatever the coalescing (per-hop packet jobs, the netback copy, application work), link and
  workload events, and events per interrupt or poll; and the packets/s the first two kinds allow
  at the measured events/s (interrupts and polls free), and the second kind alone;
- the floor under any engine of that model: bare event loops (``event_floor.py``) holding the
  reference run's mean number of pending events and running its sequence of event kinds, and the
  packets/s the faster allows at the reference's events per packet if every handler were free, and
  the compiled engine's events/s as a fraction of each loop's (``engine_*_loop_fraction``), and the
  share of the reference run's CPU time spent inside the engine's ``run`` with its events/s over that
  time alone (``reference_engine_cpu_fraction``, ``engine_own_heap_loop_fraction``);
- peak memory of the reference run (compiled) and of the one-layer fast path at two lengths each
  (streaming histograms, chunked fast path: it must not grow);
- the simulator's size: lines of ``src/vcoal/sim`` (``sim_loc``).
Ends with one JSON line of the figures.

    .venv/bin/python benchmarks/sim_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import simpy

from event_floor import floor_events_per_s
from vcoal.sim import fast, run_scenario
from vcoal.sim.engine import layout as L
from vcoal.sim.simulation import Simulation
from vcoal.spec import load_scenario

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_GOAL_PPS = 10e6  # issue 2's goal for the reference scenario


def simpy_napi(t_ns, s_ns, u_ns: int, usecs_ns: int, frames: int) -> np.ndarray:
    """The B.1 NAPI Min(N,T) queue in SimPy: processes, a Store and an AnyOf timer."""
    env = simpy.Environment()
    ring = simpy.Store(env)
    n = len(t_ns)
    dep = np.empty(n, dtype=np.int64)
    state = {"armed": True, "count": 0, "nth": None}

    def source():
        last = 0
        for i in range(n):
            yield env.timeout(int(t_ns[i]) - last)
            last = int(t_ns[i])
            ring.put(i)
            if state["armed"]:
                state["count"] += 1
                if state["count"] == frames and state["nth"] is not None and not state["nth"].triggered:
                    state["nth"].succeed()
            if state.get("first") is not None and not state["first"].triggered:
                state["first"].succeed()

    def napi():
        while True:
            if not ring.items:
                state["first"] = env.event()
                yield state["first"]
            state["count"] = len(ring.items)
            state["nth"] = env.event()
            if state["count"] >= frames:
                state["nth"].succeed()
            yield env.any_of([env.timeout(usecs_ns), state["nth"]])
            state["armed"] = False
            yield env.timeout(u_ns)
            while ring.items and t_ns[ring.items[0]] < env.now:  # B.1: an arrival at D_(i-1) starts a new batch
                i = yield ring.get()
                yield env.timeout(int(s_ns[i]))
                dep[i] = int(env.now)
            state["armed"] = True

    env.process(source())
    env.process(napi())
    env.run()
    return dep


# what each event of the reference run is: once per packet on a CPU ("cpu"), once per packet on
# the link or in the workload ("io"), or once per interrupt or poll ("irq"); CPU jobs are named by
# their kind and class
EVENT_ROLES = {
    ("job", L.K_DONE_PKT, L.SOFTIRQ): ("cpu", "per-packet job at a hop"),
    ("job", L.K_HOP_PUSH, L.SOFTIRQ): ("cpu", "netback copy into the guest ring"),
    ("job", L.K_SENT_BY_APP, L.APP): ("cpu", "application send"),
    ("job", L.K_NOOP, L.APP): ("cpu", "application receive"),
    ("event", L.E_WIRE_RX, None): ("io", "arrival from the wire"),
    ("event", L.E_WIRE_OUT, None): ("io", "departure to the wire"),
    ("event", L.E_PUMP_AT, None): ("io", "bulk sender pacing"),
    ("event", L.E_REQUEST, None): ("io", "request issued"),
    ("job", L.K_POLL_START, L.IRQ): ("irq", "interrupt handler"),
    ("job", L.K_POLL_BODY, L.SOFTIRQ): ("irq", "NAPI poll"),
    ("job", L.K_NOOP, L.SOFTIRQ): ("irq", "notification cost on the sender"),
    ("event", L.E_HOP_TIMER, None): ("irq", "coalescing timer"),
    ("event", L.E_HOP_POLL, None): ("irq", "deferred re-poll"),
}
EVENT_NAMES = {v: k for k, v in vars(L).items() if k.startswith("E_")}


KINDS_LEN = 1 << 16  # event kinds event_breakdown keeps, in order, for the bare loops


def event_breakdown(spec, duration_s: float) -> tuple[dict, int, float, np.ndarray]:
    """Events of a run of ``spec`` (the engine's event trace), counted by role; returns
    ({(kind, name, class): count}, packets sent, mean number of events pending when one runs,
    the first 64 k events' kinds as small integers in order of first use)."""
    counts: dict = {}
    kind_ids: dict = {}
    kinds: list[int] = []
    pending = [0]

    def trace(rows):
        for _t, _key, kind, job, npend in rows.tolist():
            key = ("job", job >> 2, job & 3) if kind == L.E_CPU_DONE else ("event", kind, None)
            counts[key] = counts.get(key, 0) + 1
            pending[0] += npend  # the event being run included
            if len(kinds) < KINDS_LEN:
                kinds.append(kind_ids.setdefault(key, len(kind_ids)))

    sim = Simulation(spec.with_overrides({"duration_s": duration_s}), None, spec.seed, trace=trace)
    sim.run()
    n_events = sum(counts.values())
    return counts, sum(t.sent for t in sim.tenants), pending[0] / n_events, np.array(kinds, dtype=np.int64)


class _TimedEngine:
    """An engine module whose ``run`` calls add up their CPU time."""

    def __init__(self, engine) -> None:
        self.start = engine.start
        self._run = engine.run
        self.cpu_s = 0.0

    def run(self, *args):
        c0 = time.process_time()
        try:
            return self._run(*args)
        finally:
            self.cpu_s += time.process_time() - c0


def timed_engine_run(spec):
    """The compiled run of ``spec`` (as ``run_scenario`` makes it) and the CPU seconds spent inside the
    engine's ``run`` (the rest is the Python between windows: counters, statistics, the series)."""
    sim = Simulation(spec, None, spec.seed)
    sim.engine = engine = _TimedEngine(sim.engine)
    return sim.run(), engine.cpu_s


def sim_loc() -> int:
    """Lines of the simulator package's Python sources (``src/vcoal/sim``, subpackages included)."""
    return sum(len(p.read_text().splitlines()) for p in (ROOT / "src/vcoal/sim").rglob("*.py"))


def main(quick: bool = False) -> None:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    base = load_scenario(ROOT / "examples/validation/base.toml")
    # SimPy on the same arrays as vcoal's compiled path
    n_simpy = 50_000 if quick else 200_000
    short = base.with_overrides({"duration_s": n_simpy / 0.5e6, "warmup_s": 0.0})
    t, _sizes, dep_vcoal, _f, _u, s, _p, params = fast.simulate_one_layer(short)
    s = np.broadcast_to(s, t.shape)  # a constant service time comes back as one value
    t0 = time.perf_counter()
    dep_simpy = simpy_napi(t, s, 2000, 1000 * params.rx_usecs, params.rx_frames)
    simpy_s = time.perf_counter() - t0
    agree = float(np.mean(dep_simpy == dep_vcoal))  # 1.0: the same sample path, packet for packet
    simpy_pps = len(t) / simpy_s

    fast.run_fast(short)  # JIT compile or cache load, excluded from the timing
    n_fast = 2_000_000 if quick else 20_000_000
    long = base.with_overrides({"duration_s": n_fast / 0.5e6, "warmup_s": 0.01})
    t0 = time.perf_counter()
    r = fast.run_fast(long)
    fast_pps = r.meta["site_packets"] / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    tt, _sz, dep, _fire, u, ss, _polls, p = fast.simulate_one_layer(long)
    dep2 = np.empty_like(dep)
    fire2 = np.empty_like(dep)
    fast.napi_path(tt[:1000], ss, u[:1000], 0, 1000 * p.rx_usecs, p.rx_frames, p.napi_budget, 0, dep2, fire2)
    t1 = time.perf_counter()
    fast.napi_path(tt, ss, u, 0, 1000 * p.rx_usecs, p.rx_frames, p.napi_budget, 0, dep2, fire2)
    kernel_pps = len(tt) / (time.perf_counter() - t1)

    n_des = 100_000 if quick else 400_000
    t0 = time.perf_counter()
    rd = run_scenario(base.with_overrides({"duration_s": n_des / 0.5e6, "warmup_s": 0.0}), engine="des")
    des_pps = rd.meta["site_packets"] / (time.perf_counter() - t0)

    one = base.with_overrides({"duration_s": 0.01, "warmup_s": 0.0})
    run_scenario(one, engine="compiled")  # JIT compile or cache load, excluded from the timing
    n_comp = 1_000_000 if quick else 4_000_000
    t0 = time.perf_counter()
    rc = run_scenario(base.with_overrides({"duration_s": n_comp / 0.5e6, "warmup_s": 0.0}), engine="compiled")
    comp_one_pps = rc.meta["site_packets"] / (time.perf_counter() - t0)

    ref = load_scenario(ROOT / "examples/reference.toml")
    t0 = time.perf_counter()
    c0 = time.process_time()
    rr = run_scenario(ref, duration_s=0.1 if quick else 0.3, engine="des")
    wall = time.perf_counter() - t0
    des_cpu = time.process_time() - c0
    ref_pps = rr.meta["site_packets"] / wall
    ref_sent_pps = sum(x.sent for x in rr.tenants) / wall
    run_scenario(ref, duration_s=0.002, engine="compiled")  # JIT compile or cache load
    t0 = time.perf_counter()
    c0 = time.process_time()
    rk, engine_cpu = timed_engine_run(ref.with_overrides({"duration_s": 1.0 if quick else 3.0}))
    kwall = time.perf_counter() - t0
    kcpu = time.process_time() - c0
    k_sent = sum(x.sent for x in rk.tenants)
    comp = {
        "reference_compiled_pkts_per_s": round(k_sent / kwall),
        "reference_compiled_packet_hops_per_s": round(rk.meta["site_packets"] / kwall),
        "reference_compiled_events_per_s": round(rk.meta["events"] / kwall),
        "reference_compiled_pkts_per_cpu_s": round(k_sent / kcpu),
        "reference_compiled_packet_hops_per_cpu_s": round(rk.meta["site_packets"] / kcpu),
        "reference_des_pkts_per_cpu_s": round(sum(x.sent for x in rr.tenants) / des_cpu),
        "reference_des_events_per_s": round(rr.meta["events"] / wall),
        "reference_compiled_speedup_x": round((k_sent / kcpu) / (sum(x.sent for x in rr.tenants) / des_cpu), 1),
        "one_layer_compiled_pkts_per_s": round(comp_one_pps),
    }
    roles, bd_sent, mean_pending, kinds = event_breakdown(ref, 0.05 if quick else 0.1)
    floor = floor_events_per_s(round(mean_pending), kinds, 5_000_000 if quick else 20_000_000)
    bare_ev_s = max(floor.values())
    per_role = {"cpu": 0.0, "io": 0.0, "irq": 0.0, "other": 0.0}
    rows = []
    for key, n in sorted(roles.items(), key=lambda kv: -kv[1]):
        role, what = EVENT_ROLES.get(key, ("other", f"{key[0]} {EVENT_NAMES.get(key[1], key[1])}"))
        per_role[role] += n / bd_sent
        rows.append((what, role, n / bd_sent))
    ev_s = rk.meta["events"] / kwall
    bound_free_irq_pps = ev_s / (per_role["cpu"] + per_role["io"])
    bound_io_only_pps = ev_s / per_role["io"]
    bound_bare_pps = bare_ev_s / (rk.meta["events"] / k_sent)
    mem = {}
    for dur in (0.02, 0.08):
        tracemalloc.start()
        run_scenario(ref, duration_s=dur, engine="compiled")
        mem[dur] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"reference {dur:.2f} s simulated (compiled): peak traced memory {mem[dur]:.2f} MiB")
    fast_mem = {}
    for dur in (0.4, 4.0):  # 0.2 M and 2 M packets through the one-layer fast path
        tracemalloc.start()
        fast.run_fast(base.with_overrides({"duration_s": dur, "warmup_s": 0.0}))
        fast_mem[dur] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"one-layer fast path, {dur:.1f} s simulated: peak traced memory {fast_mem[dur]:.2f} MiB")

    print(f"one-layer model, SimPy 4.1.2:            {simpy_pps:14,.0f} pkts/s  (departures identical to vcoal: {100 * agree:.2f} %)")
    print(f"one-layer model, vcoal event engine:     {des_pps:14,.0f} pkts/s  ({des_pps / simpy_pps:.1f}x SimPy)")
    print(f"one-layer model, vcoal compiled, e2e:    {fast_pps:14,.0f} pkts/s  ({fast_pps / simpy_pps:.0f}x SimPy)")
    print(f"one-layer model, compiled kernel alone:  {kernel_pps:14,.0f} pkts/s  ({kernel_pps / simpy_pps:.0f}x SimPy)")
    print(f"one-layer model, compiled event engine:  {comp_one_pps:14,.0f} pkts/s  ({comp_one_pps / simpy_pps:.0f}x SimPy)")
    print(f"reference scenario (3 layers, 4 guests): {ref_pps:14,.0f} packet-hops/s, {ref_sent_pps:,.0f} packets/s (event engine)")
    print(
        f"reference scenario, compiled engine:     {comp['reference_compiled_packet_hops_per_s']:14,} packet-hops/s, "
        f"{comp['reference_compiled_pkts_per_s']:,} packets/s, {comp['reference_compiled_events_per_s']:,} events/s "
        f"(per CPU second: {comp['reference_compiled_pkts_per_cpu_s']:,} packets/s, "
        f"{comp['reference_compiled_speedup_x']}x the event engine's {comp['reference_des_pkts_per_cpu_s']:,})"
    )
    print(
        f"reference goal {REFERENCE_GOAL_PPS / 1e6:.0f} M packets/s: "
        f"{100 * comp['reference_compiled_pkts_per_s'] / REFERENCE_GOAL_PPS:.0f} % of it "
        f"({rk.meta['events'] / k_sent:.1f} events per packet)"
    )
    print("reference events per packet sent, by what they are (the engine's event trace):")
    for what, role, v in rows:
        print(f"  {v:5.2f}  {role:5s}  {what}")
    print(
        f"  per packet: {per_role['cpu']:.2f} CPU jobs + {per_role['io']:.2f} link/workload events + "
        f"{per_role['irq']:.2f} interrupt/poll events; at the measured {ev_s / 1e6:.1f} M events/s this model "
        f"cannot exceed {bound_free_irq_pps / 1e6:.1f} M packets/s even if interrupts and polls were free, "
        f"nor {bound_io_only_pps / 1e6:.1f} M if all CPU work were too"
    )
    print(
        f"  bare event loops (pop the earliest, branch on its kind, schedule one; no model work) holding the "
        f"reference's mean {mean_pending:.1f} pending events and running its sequence of event kinds: "
        f"binary heap {floor['bare_heap_loop_events_per_s'] / 1e6:.1f} M events/s, branch-free scan "
        f"{floor['bare_scan_loop_events_per_s'] / 1e6:.1f} M; at {rk.meta['events'] / k_sent:.1f} events per "
        f"packet the faster allows {bound_bare_pps / 1e6:.1f} M packets/s with every handler free"
    )
    heap_frac = ev_s / floor["bare_heap_loop_events_per_s"]
    scan_frac = ev_s / floor["bare_scan_loop_events_per_s"]
    own_ev_s = rk.meta["events"] / engine_cpu
    own_frac = own_ev_s / floor["bare_heap_loop_events_per_s"]
    print(f"  the compiled engine: {ev_s / 1e6:.1f} M events/s, {100 * heap_frac:.0f} % of the bare heap loop's "
          f"({100 * scan_frac:.0f} % of the scan's)")
    print(f"  of the run's CPU time, {100 * engine_cpu / kcpu:.0f} % is inside the engine's run() (over that time "
          f"alone {own_ev_s / 1e6:.1f} M events/s, {100 * own_frac:.0f} % of the bare heap loop's); the rest is "
          "the Python between windows")
    figures = {
        "simpy_pkts_per_s": round(simpy_pps),
        "des_pkts_per_s": round(des_pps),
        "fast_pkts_per_s": round(fast_pps),
        "fast_kernel_pkts_per_s": round(kernel_pps),
        "simpy_ratio": round(fast_pps / simpy_pps, 1),
        "des_simpy_ratio": round(des_pps / simpy_pps, 2),
        "reference_pkts_per_s": comp["reference_compiled_pkts_per_s"],  # the default engine
        "reference_goal_fraction": round(comp["reference_compiled_pkts_per_s"] / REFERENCE_GOAL_PPS, 3),
        "reference_events_per_pkt": round(rk.meta["events"] / k_sent, 2),
        "reference_cpu_job_events_per_pkt": round(per_role["cpu"], 2),
        "reference_io_events_per_pkt": round(per_role["io"], 2),
        "reference_irq_events_per_pkt": round(per_role["irq"], 2),
        "reference_bound_free_irq_pkts_per_s": round(bound_free_irq_pps),
        "reference_bound_io_only_pkts_per_s": round(bound_io_only_pps),
        "reference_mean_pending_events": round(mean_pending, 1),
        **{k: round(v) for k, v in floor.items()},
        "reference_bound_bare_loop_pkts_per_s": round(bound_bare_pps),
        "engine_heap_loop_fraction": round(heap_frac, 3),
        "engine_scan_loop_fraction": round(scan_frac, 3),
        "reference_engine_cpu_fraction": round(engine_cpu / kcpu, 3),
        "engine_own_heap_loop_fraction": round(own_frac, 3),
        "reference_des_pkts_per_s": round(ref_sent_pps),
        "reference_des_packet_hops_per_s": round(ref_pps),
        "simpy_departures_identical_frac": round(agree, 5),
        **comp,
        "reference_peak_mem_short_mib": round(mem[min(mem)], 1),
        "reference_peak_mem_long_mib": round(mem[max(mem)], 1),
        "fast_peak_mem_short_mib": round(fast_mem[min(fast_mem)], 1),
        "fast_peak_mem_long_mib": round(fast_mem[max(fast_mem)], 1),
        "sim_loc": sim_loc(),
    }
    print(f"simulator source: {figures['sim_loc']} lines (src/vcoal/sim)")
    print(json.dumps(figures))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  taskset -c 1 .venv/bin/python benchmarks/sim_speed.py          # the README's figures (~35 s)\n"
               "  taskset -c 1 .venv/bin/python benchmarks/sim_speed.py --quick  # a smoke run (~10 s)\n"
               "the first run after an engine change also compiles it (about a minute more)")
    ap.add_argument("--quick", action="store_true", help="shorter runs: noisier figures, same output")
    return ap.parse_args(argv)


if __name__ == "__main__":
    main(parse_args().quick)
