"""benchmarks/event_floor.py: both bare loops run the events they are timed on in time order.

Their figures bound the simulator's speed in the README, so a loop that skipped or misordered
events (and ran faster for it) must fail here: both must pop exactly the times a heapq model of the
same schedule pops.
"""

import heapq
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "event_floor.py"


@pytest.fixture(scope="module")
def floor():
    spec = importlib.util.spec_from_file_location("event_floor", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reference(n_events, n_pending, delays_ns):
    heap, seq, d, out = [], 0, 0, []
    for _ in range(n_pending):
        seq += 1
        heapq.heappush(heap, (int(delays_ns[d % len(delays_ns)]), seq))
        d += 1
    for _ in range(n_events):
        now, _s = heapq.heappop(heap)
        out.append(now)
        seq += 1
        heapq.heappush(heap, (now + int(delays_ns[d % len(delays_ns)]), seq))
        d += 1
    return out


@pytest.mark.parametrize("n_pending", [1, 2, 7, 14, 31])
def test_loops_pop_in_time_order(floor, n_pending):
    rng = np.random.default_rng(n_pending)
    delays_ns = rng.integers(0, 50, 997).astype(np.int64)  # many ties: the sequence breaks them
    kinds = rng.integers(0, 8, 997).astype(np.int64)
    want = _reference(3000, n_pending, delays_ns)
    for loop in (floor.heap_loop, floor.scan_loop):
        got = np.zeros(3000, np.int64)
        loop(3000, n_pending, delays_ns, kinds, got)
        assert got.tolist() == want, loop.__name__


def test_floor_rejects_no_pending_events(floor):
    with pytest.raises(ValueError, match="n_pending"):
        floor.floor_events_per_s(0, np.zeros(8, np.int64), 10)
