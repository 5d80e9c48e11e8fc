"""Streaming latency histogram with bounded memory and a stated relative error.

Values (integer nanoseconds) below ``LINEAR_LIMIT`` are counted exactly; above it, buckets grow
geometrically by ``GROWTH`` so any reported quantile is within ``RELATIVE_ERROR`` (1 %) of a value
in the same bucket. Memory is fixed (a few thousand counters) whatever the run length.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from itertools import accumulate

GROWTH = 1.02
RELATIVE_ERROR = (GROWTH - 1) / 2  # midpoint of a bucket vs any value in it: <= 1 %
LINEAR_LIMIT = 128
_LOG_G = math.log(GROWTH)
_MAX_VALUE_NS = 10**13
_NBUCKETS = LINEAR_LIMIT + math.ceil(math.log(_MAX_VALUE_NS / LINEAR_LIMIT) / _LOG_G) + 1


def bucket_of(value_ns: int) -> int:
    """Index of the bucket holding ``value_ns``."""
    if value_ns < LINEAR_LIMIT:
        return max(0, value_ns)
    if value_ns >= _MAX_VALUE_NS:
        return _NBUCKETS - 1
    return LINEAR_LIMIT + int(math.log(value_ns / LINEAR_LIMIT) / _LOG_G)


def bucket_value(index: int) -> float:
    """Representative value (ns) of a bucket: exact below LINEAR_LIMIT, geometric midpoint above."""
    if index < LINEAR_LIMIT:
        return float(index)
    lo = LINEAR_LIMIT * GROWTH ** (index - LINEAR_LIMIT)
    return lo * (1 + GROWTH) / 2


class LatencyHistogram:
    """Counts of latencies in nanoseconds, with exact count, sum, min and max."""

    __slots__ = ("_cum", "_cum_count", "_lo", "count", "counts", "max_ns", "min_ns", "sum_ns")

    def __init__(self) -> None:
        self.counts = array("q", bytes(8 * _NBUCKETS))
        # cumulative counts from bucket _lo (the minimum's) to the maximum's, built on the first
        # quantile; valid while count is still _cum_count (every change of the counts changes it)
        self._cum: list[int] = []
        self._cum_count = 0
        self._lo = 0
        self.count = 0
        self.sum_ns = 0
        self.min_ns = 0
        self.max_ns = 0

    def add(self, value_ns: int) -> None:
        """Record one latency."""
        self.counts[bucket_of(value_ns)] += 1
        if self.count == 0 or value_ns < self.min_ns:
            self.min_ns = value_ns
        if value_ns > self.max_ns:
            self.max_ns = value_ns
        self.count += 1
        self.sum_ns += value_ns

    def add_counts(self, bucket_counts, total_ns: int, lo_ns: int, hi_ns: int) -> None:
        """Merge pre-bucketed counts (from a compiled kernel) into this histogram."""
        n = 0
        for i, c in enumerate(bucket_counts):
            if c:
                self.counts[i] += int(c)
                n += int(c)
        if n == 0:
            return
        self.min_ns = lo_ns if self.count == 0 else min(self.min_ns, lo_ns)
        self.max_ns = max(self.max_ns, hi_ns)
        self.count += n
        self.sum_ns += total_ns

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one."""
        if other.count == 0:
            return
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.min_ns = other.min_ns if self.count == 0 else min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.sum_ns += other.sum_ns

    def mean_ns(self) -> float:
        """Exact mean (NaN when empty)."""
        return self.sum_ns / self.count if self.count else math.nan

    def quantile_ns(self, q: float) -> float:
        """Quantile ``q`` in [0, 1], within RELATIVE_ERROR (NaN when empty)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q={q}: must be in [0, 1]")
        if self.count == 0:
            return math.nan
        if self._cum_count != self.count:  # every count lies between the buckets of the exact min and max
            self._lo = bucket_of(self.min_ns)
            self._cum = list(accumulate(self.counts[self._lo : bucket_of(self.max_ns) + 1]))
            self._cum_count = self.count
        i = self._lo + bisect_left(self._cum, max(1, math.ceil(q * self.count)))
        if i >= self._lo + len(self._cum):
            return float(self.max_ns)
        return min(max(bucket_value(i), float(self.min_ns)), float(self.max_ns))

    def summary_us(self) -> dict[str, float]:
        """mean, p50, p90, p99, p99.9, max in microseconds."""
        return {
            "count": self.count,
            "mean": self.mean_ns() / 1e3,
            "p50": self.quantile_ns(0.50) / 1e3,
            "p90": self.quantile_ns(0.90) / 1e3,
            "p99": self.quantile_ns(0.99) / 1e3,
            "p99_9": self.quantile_ns(0.999) / 1e3,
            "max": self.max_ns / 1e3,
        }

    def cdf_us(self, points: int = 200) -> list[tuple[float, float]]:
        """(latency_us, cumulative fraction) pairs, at most ``points`` of them."""
        if self.count == 0:
            return []
        out = []
        seen = 0
        nonzero = [(i, c) for i, c in enumerate(self.counts) if c]
        step = max(1, len(nonzero) // points)
        for k, (i, c) in enumerate(nonzero):
            seen += c
            if k % step == 0 or k == len(nonzero) - 1:
                out.append((bucket_value(i) / 1e3, seen / self.count))
        return out
