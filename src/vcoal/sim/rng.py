"""Named random streams split from one seed, so adding a stream never shifts another."""

from __future__ import annotations

import zlib

import numpy as np

_BLOCK = 4096


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator of stream ``name`` for root ``seed`` (stable across runs and versions)."""
    return np.random.default_rng(np.random.SeedSequence([seed & (2**63 - 1), zlib.crc32(name.encode())]))


class DrawSource:
    """The unit exponentials of one named stream, handed out in order."""

    __slots__ = ("_carry", "_gen")

    def __init__(self, seed: int, name: str) -> None:
        self._gen = stream(seed, name)
        self._carry = np.zeros(0)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` draws (generated in blocks of 4096, whatever ``n``: the blocks fix the values)."""
        while self._carry.shape[0] < n:
            k = max(1, -(-(n - self._carry.shape[0]) // _BLOCK))
            self._carry = np.concatenate([self._carry, *(self._gen.standard_exponential(_BLOCK) for _ in range(k))])
        out, self._carry = self._carry[:n], self._carry[n:]
        return out
