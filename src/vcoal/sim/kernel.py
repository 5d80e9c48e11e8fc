"""The event kernel: integer-nanosecond time, a binary heap, FIFO tie-breaking.

Heap entries are ``(time_ns, prio, seq, fn, arg)``. At equal times lower ``prio`` runs first
(CPU completions before timers before arrivals, which is what makes the one-layer model agree
bit-exactly with the sample-path recursions); equal ``(time, prio)`` run in scheduling order.
Cancellation is lazy: components keep a token and ignore stale events. ``trace``, when set, is
called with ``(time_ns, prio, seq, fn, arg)`` before each event runs.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

PRIO_COMPLETION = 0
PRIO_TIMER = 1
PRIO_ARRIVAL = 2
PRIO_CONTROL = 3


class Kernel:
    """A minimal discrete-event kernel."""

    __slots__ = ("_heap", "_seq", "events", "now", "trace")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.now = 0
        self.events = 0
        self.trace: Callable[[int, int, int, Callable[[Any], None], Any], None] | None = None

    def at(self, t_ns: int, prio: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Schedule ``fn(arg)`` at absolute time ``t_ns`` (never in the past)."""
        if t_ns < self.now:
            raise ValueError(f"event at {t_ns} ns is before now={self.now} ns")
        self._seq += 1
        heappush(self._heap, (t_ns, prio, self._seq, fn, arg))

    @property
    def pending(self) -> int:
        """Events scheduled and not yet run (stale ones included: cancellation is lazy)."""
        return len(self._heap)

    def run(self, until_ns: int, budget: int = -1) -> int:
        """Run events with time <= ``until_ns``, at most ``budget`` of them (-1: no limit).

        Returns the budget left. When the budget runs out first, ``now`` stays at the last
        event's time; otherwise ``now`` ends at ``until_ns``.
        """
        heap = self._heap
        trace = self.trace
        n = 0
        while heap and heap[0][0] <= until_ns and budget != 0:
            t, prio, seq, fn, arg = heappop(heap)
            self.now = t
            if trace is not None:
                trace(t, prio, seq, fn, arg)
            fn(arg)
            n += 1
            budget -= 1
        self.events += n
        if budget != 0 or not heap or heap[0][0] > until_ns:
            self.now = until_ns
        return budget
