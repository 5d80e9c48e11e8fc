"""Distributions of sizes and times in a workload: one small vocabulary, checked here, drawn by the simulator.

A distribution is a table ``{ dist = KIND, ... }`` in place of a number:

* ``constant``: ``value``.
* ``exponential``: ``mean``.
* ``uniform``: ``low``, ``high`` (continuous on [low, high]).
* ``lognormal``: ``mean``, ``sigma``: the distribution's own mean (not the mean of its log) and
  the standard deviation of its log, i.e. ``exp(N(mu, sigma^2))`` with ``mu = ln(mean) - sigma^2 / 2``.
* ``pareto``: ``alpha``, ``scale``, optional ``cap``: Pareto type I, ``P(X > x) = (scale / x)^alpha``
  for ``x >= scale``, then ``min(X, cap)``. Without a cap ``alpha > 1`` (the mean must exist);
  with one any ``alpha > 0`` and ``cap >= scale``.
* ``empirical``: ``values`` and ``weights``: ``P(values[k]) = weights[k]``; weights are positive and
  must sum to 1 (within 1e-6); they are used as given, not re-normalised.

Sizes (bytes) are drawn as numbers and rounded to the nearest integer, then held to [1, 65535]
(an unbounded kind's rare tail beyond that is clipped); their parameters must lie in [1, 65535].
Times (µs) are rounded to the nearest ns. ``mean`` and ``quantile`` give the exact moments of the
distribution as specified (before rounding); the simulator draws them in ``vcoal.sim.rng.sample``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_serializer, model_validator

Num = Annotated[float, Strict()]

KINDS = ("constant", "exponential", "uniform", "lognormal", "pareto", "empirical")
_NEEDS = {
    "constant": ("value",), "exponential": ("mean",), "uniform": ("low", "high"), "lognormal": ("mean", "sigma"),
    "pareto": ("alpha", "scale"), "empirical": ("values", "weights"),
}  # fmt: skip
_OPTIONAL = {"pareto": ("cap",)}
_FIELDS = ("value", "mean", "low", "high", "sigma", "alpha", "scale", "cap", "values", "weights")
WEIGHT_TOL = 1e-6


class DistSpec(BaseModel):
    """One distribution (see the module docstring for the kinds and their parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dist: Literal["constant", "exponential", "uniform", "lognormal", "pareto", "empirical"]
    value: Num | None = Field(None, ge=0)
    mean: Num | None = Field(None, gt=0)
    low: Num | None = Field(None, ge=0)
    high: Num | None = Field(None, ge=0)
    sigma: Num | None = Field(None, gt=0, le=10)
    alpha: Num | None = Field(None, gt=0, le=100)
    scale: Num | None = Field(None, gt=0)
    cap: Num | None = Field(None, gt=0)
    values: tuple[Num, ...] | None = Field(None, min_length=1, max_length=10_000)
    weights: tuple[Num, ...] | None = Field(None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _check(self) -> DistSpec:
        needs = _NEEDS[self.dist]
        allowed = set(needs) | set(_OPTIONAL.get(self.dist, ()))
        for f in _FIELDS:
            if f in needs and getattr(self, f) is None:
                raise ValueError(f"dist = {self.dist!r} needs {', '.join(needs)} ({f} missing)")
            if f not in allowed and getattr(self, f) is not None:
                raise ValueError(f"{f}: not a parameter of dist = {self.dist!r} (it takes {', '.join(sorted(allowed))})")
        if self.dist == "uniform" and not self.low <= self.high:
            raise ValueError(f"uniform: needs low <= high, got low = {self.low}, high = {self.high}")
        if self.dist == "pareto":
            if self.cap is None and self.alpha <= 1:
                raise ValueError(f"pareto: alpha {self.alpha} out of range (1, 100] (a mean needs alpha > 1; "
                                 "or give a cap)")
            if self.cap is not None and self.cap < self.scale:
                raise ValueError(f"pareto: cap {self.cap} must be >= scale {self.scale}")
        if self.dist == "empirical":
            if len(self.values) != len(self.weights):
                raise ValueError(f"empirical: {len(self.values)} values but {len(self.weights)} weights")
            if min(self.weights) <= 0:
                raise ValueError(f"empirical: weights must be > 0, got {min(self.weights)}")
            total = math.fsum(self.weights)
            if abs(total - 1) > WEIGHT_TOL:
                raise ValueError(f"empirical: weights must sum to 1 (within {WEIGHT_TOL:g}), got {total:.9g}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Only the parameters given (the table as written, whatever the kind)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    # --- exact moments -----------------------------------------------------------------------------
    def bounds(self) -> tuple[float, float]:
        """The lowest and highest value a draw can take (inf: unbounded)."""
        d = self.dist
        if d == "constant":
            return self.value, self.value
        if d == "exponential":
            return 0.0, math.inf
        if d == "uniform":
            return self.low, self.high
        if d == "lognormal":
            return 0.0, math.inf
        if d == "pareto":
            return self.scale, self.cap if self.cap is not None else math.inf
        return min(self.values), max(self.values)

    def mean_value(self) -> float:
        """The exact mean."""
        d = self.dist
        if d == "constant":
            return self.value
        if d in ("exponential", "lognormal"):
            return self.mean
        if d == "uniform":
            return (self.low + self.high) / 2
        if d == "pareto":
            a, s, c = self.alpha, self.scale, self.cap
            if c is None:
                return a * s / (a - 1)
            # E[min(X, c)] = s + integral_s^c (s / t)^a dt
            tail = s * math.log(c / s) if a == 1 else s / (a - 1) * (1 - (s / c) ** (a - 1))
            return s + tail
        return math.fsum(v * w for v, w in zip(self.values, self.weights, strict=True))

    def quantile(self, q: float) -> float:
        """The exact ``q``-quantile (0 < q < 1): the smallest x with P(X <= x) >= q."""
        d = self.dist
        if d == "constant":
            return self.value
        if d == "exponential":
            return -self.mean * math.log1p(-q)
        if d == "uniform":
            return self.low + q * (self.high - self.low)
        if d == "lognormal":
            mu = math.log(self.mean) - self.sigma**2 / 2
            return math.exp(mu + self.sigma * NormalDist().inv_cdf(q))
        if d == "pareto":
            x = self.scale * (1 - q) ** (-1 / self.alpha)
            return min(x, self.cap) if self.cap is not None else x
        acc = 0.0
        for v, w in sorted(zip(self.values, self.weights, strict=True)):
            acc += w
            if acc >= q - 1e-12:
                return v
        return max(self.values)


def dist_problem(d: DistSpec, lo: float, hi: float) -> str | None:
    """Why ``d``'s parameters fall outside [lo, hi] (a size field's range), or None."""
    checks = {
        "constant": ("value",), "exponential": ("mean",), "uniform": ("low", "high"), "lognormal": ("mean",),
        "pareto": ("scale", "cap"), "empirical": ("values",),
    }  # fmt: skip
    for f in checks[d.dist]:
        v = getattr(d, f)
        for x in v if isinstance(v, tuple) else (v,):
            if x is not None and not lo <= x <= hi:
                return f"{d.dist}: {f} {x!r} out of range [{lo:g}, {hi:g}]"
    return None
