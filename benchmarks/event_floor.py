"""What running an event costs when the event does no work: the floor under any event engine.

Two bare event loops, compiled with numba like vcoal's engine, each holding a fixed number of
pending events: pop the earliest, branch on its kind (a chain of eight cases, as an engine
dispatches), schedule one successor a delay later. One keeps the pending events in the compiled
engine's own binary heap (``engine.core.at`` and ``pop``: time, priority, sequence); the other
in an unsorted array scanned branch-free for the least (time << 20 | sequence mod 2**20) key,
which beats a heap when few events are pending. ``sim_speed.py`` runs them with the reference run's
mean number of pending events and its own sequence of event kinds; divided by the events a packet
takes, the faster one bounds the packets/s of any engine of that model on this machine.

    .venv/bin/python benchmarks/event_floor.py [PENDING]

prints both loops' events/s for PENDING pending events (default 14) and uniformly drawn kinds,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from numba import njit

from vcoal.sim.engine import core as C


@njit(cache=False, inline="always")
def _work(acc: int, kind: int, now: int) -> int:
    """Eight trivial handlers: the dispatch an engine does, without the work."""
    if kind == 0:
        return acc + 1
    if kind == 1:
        return acc + 3
    if kind == 2:
        return acc ^ now
    if kind == 3:
        return acc - 1
    if kind == 4:
        return acc + (now & 7)
    if kind == 5:
        return acc - 3
    if kind == 6:
        return acc ^ 5
    return acc + 2


@njit(cache=False)
def _heap_loop(m, x, n_events: int, n_pending: int, delays_ns: np.ndarray, kinds: np.ndarray, out_ns: np.ndarray) -> int:
    rec = out_ns.size > 0
    acc = d = now = 0
    nd = delays_ns.size
    for e in range(n_pending + n_events):
        if e >= n_pending:  # the first n_pending rounds only fill the heap
            C.pop(m, x, C.SCRATCH)
            now = m[C.SCRATCH]
            acc = _work(acc, m[C.SCRATCH + 1], now)
            if rec:
                out_ns[e - n_pending] = now
        C.at(m, x, now + delays_ns[d], C.PRIO_ARRIVAL, kinds[d], 0, 0)
        d = d + 1 if d + 1 < nd else 0
    return acc


@njit(cache=False)
def _run_heap_loop(m_, x_, n_events, n_pending, delays_ns, kinds, out_ns):
    return _heap_loop(C.data_ptr(m_), C.data_ptr(x_), n_events, n_pending, delays_ns, kinds, out_ns)


def heap_loop(n_events: int, n_pending: int, delays_ns: np.ndarray, kinds: np.ndarray, out_ns: np.ndarray) -> int:
    """Run ``n_events`` events off the compiled engine's own event heap (``engine.core.at`` and
    ``pop`` on an arena holding only the heap) with ``n_pending`` pending; their times go to
    ``out_ns`` if it is not empty (for the test)."""
    m = np.zeros(C.NG + (n_pending + 1) * C.NE, dtype=np.int64)
    m[C.O_HEAP] = C.NG
    m[C.HEAP_CAP] = n_pending + 1
    return _run_heap_loop(m, np.zeros(C.NGF), n_events, n_pending, delays_ns, kinds, out_ns)


@njit(cache=False)
def scan_loop(n_events: int, n_pending: int, delays_ns: np.ndarray, kinds: np.ndarray, out_ns: np.ndarray) -> int:
    """Run ``n_events`` events off an unsorted array of ``n_pending`` keys, scanned branch-free;
    their times go to ``out_ns`` if it is not empty (for the test)."""
    rec = out_ns.size > 0
    key = np.empty(n_pending, np.int64)
    pl = np.empty(n_pending, np.int64)
    seq = acc = 0
    nd = delays_ns.size
    for i in range(n_pending):
        seq += 1
        key[i] = (delays_ns[i % nd] << 20) | (seq & 0xFFFFF)
        pl[i] = kinds[i % nd]
    d = n_pending % nd
    for e in range(n_events):
        best = key[0]
        bi = 0
        for i in range(1, n_pending):
            v = key[i]
            less = v < best
            best = v if less else best
            bi = i if less else bi
        now = best >> 20
        acc = _work(acc, pl[bi], now)
        if rec:
            out_ns[e] = now
        seq += 1
        key[bi] = ((now + delays_ns[d]) << 20) | (seq & 0xFFFFF)
        pl[bi] = kinds[d]
        d = d + 1 if d + 1 < nd else 0
    return acc


def floor_events_per_s(n_pending: int, kinds: np.ndarray, n_events: int) -> dict[str, float]:
    """Events/s of both loops (best of three runs each) with ``n_pending`` events pending, kinds
    cycled from ``kinds`` (folded into the eight cases) and delays uniform in 0.1-20 us."""
    if n_pending < 1:
        raise ValueError(f"n_pending={n_pending}: must be >= 1")
    kinds = np.minimum(np.asarray(kinds, dtype=np.int64), 7)
    delays_ns = np.random.default_rng(1).integers(100, 20_000, kinds.size).astype(np.int64)
    out = {}
    no_record = np.empty(0, np.int64)
    for name, loop in (("heap", heap_loop), ("scan", scan_loop)):
        loop(1000, n_pending, delays_ns, kinds, no_record)  # compile
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            loop(n_events, n_pending, delays_ns, kinds, no_record)
            best = max(best, n_events / (time.perf_counter() - t0))
        out[f"bare_{name}_loop_events_per_s"] = best
    return out


MAX_PENDING = 1 << 16


def pending_count(text: str) -> int:
    """PENDING: an integer in [1, MAX_PENDING]."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_PENDING:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [1, {MAX_PENDING}]")
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  taskset -c 1 .venv/bin/python benchmarks/event_floor.py 14")
    ap.add_argument("pending", nargs="?", type=pending_count, default=14,
                    help="events kept pending in the loops (default 14, the reference run's mean)")
    n_pending = ap.parse_args(argv).pending
    kinds = np.random.default_rng(2).integers(0, 8, 1 << 16)
    figures = floor_events_per_s(n_pending, kinds, 20_000_000)
    for name, v in figures.items():
        print(f"{name}: {v / 1e6:.1f} M events/s ({1e9 / v:.1f} ns per event), {n_pending} pending")
    print(json.dumps({k: round(v) for k, v in figures.items()} | {"pending_events": n_pending}))


if __name__ == "__main__":
    main()
