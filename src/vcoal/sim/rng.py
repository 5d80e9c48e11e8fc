"""Named random streams split from one seed, so adding a stream never shifts another.

``DrawSource`` hands out a stream's draws in order, generated in blocks of 4096: unit exponentials
(the service, interrupt and workload streams), or, with ``dist``, values of a workload
distribution (``vcoal.spec.dist``) drawn by ``sample``.
"""

from __future__ import annotations

import zlib

import numpy as np

_BLOCK = 4096


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator of stream ``name`` for root ``seed`` (stable across runs and versions)."""
    return np.random.default_rng(np.random.SeedSequence([seed & (2**63 - 1), zlib.crc32(name.encode())]))


def sample(d, gen: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draws (float64) of distribution ``d`` (a ``vcoal.spec.dist.DistSpec``), parametrised as
    its docstring states."""
    k = d.dist
    if k == "constant":
        return np.full(n, float(d.value))
    if k == "exponential":
        return d.mean * gen.standard_exponential(n)
    if k == "uniform":
        return d.low + (d.high - d.low) * gen.random(n)
    if k == "lognormal":
        return np.exp(np.log(d.mean) - d.sigma**2 / 2 + d.sigma * gen.standard_normal(n))
    if k == "pareto":
        x = d.scale * (1.0 - gen.random(n)) ** (-1.0 / d.alpha)  # inverse of P(X > x) = (scale / x)^alpha
        return np.minimum(x, d.cap) if d.cap is not None else x
    cum = np.cumsum(np.asarray(d.weights, dtype=np.float64))
    idx = np.searchsorted(cum / cum[-1], gen.random(n), side="right")
    return np.asarray(d.values, dtype=np.float64)[np.minimum(idx, cum.shape[0] - 1)]


class DrawSource:
    """The draws of one named stream, handed out in order: unit exponentials, or ``dist(gen, n)``."""

    __slots__ = ("_carry", "_dist", "_gen")

    def __init__(self, seed: int, name: str, dist=None) -> None:
        self._gen = stream(seed, name)
        self._carry = np.zeros(0)
        self._dist = dist

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` draws (generated in blocks of 4096, whatever ``n``: the blocks fix the values)."""
        while self._carry.shape[0] < n:
            k = max(1, -(-(n - self._carry.shape[0]) // _BLOCK))
            draw = self._dist or (lambda g, n: g.standard_exponential(n))
            self._carry = np.concatenate([self._carry, *(draw(self._gen, _BLOCK) for _ in range(k))])
        out, self._carry = self._carry[:n], self._carry[n:]
        return out
