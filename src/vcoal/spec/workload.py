"""A tenant's traffic (``[guests.workload]``): its kind, sizes, times, bursts and their checks.

The base types every spec model uses (``Int``, ``Float``, ``Strict``) live here too, so that
``scenario.py`` and this module share one definition of each.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic import Strict as _StrictMark

from vcoal.spec.dist import DistSpec, dist_problem
from vcoal.spec.errors import NUMBER_TAG, TABLE_TAG
from vcoal.spec.trace import MAX_DURATION_S, rows_problem

Int = Annotated[int, _StrictMark()]
"""An integer field: refuses bool, float and str (``queues = true`` is an error, not 1)."""
Float = Annotated[float, _StrictMark()]
"""A number field: accepts int and float, refuses bool and str."""

MAX_RATE_PPS = 1e9
"""Highest open-loop rate (``rate_pps`` and every rate step)."""
MAX_BYTES = 65_535
"""Largest packet / message size (and every size a distribution may draw)."""
MAX_THINK_US, MAX_APP_US, MAX_BURST_US = 1e7, 1e6, 1e9
"""Upper bounds of think_us, app_us and the burst fields (on_us, off_us, burst_start_us)."""
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,14}$"
"""A guest or burst-group name."""


class Strict(BaseModel):
    """Base of every spec model: unknown keys refused, immutable, no NaN or infinity anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _number_or_table(v: Any) -> str:
    return TABLE_TAG if isinstance(v, dict | DistSpec) else NUMBER_TAG


def _or_dist(number):
    """A field that takes ``number`` or a distribution table (``vcoal.spec.dist``)."""
    return Annotated[
        Annotated[number, Tag(NUMBER_TAG)] | Annotated[DistSpec, Tag(TABLE_TAG)], Discriminator(_number_or_table)
    ]


Size = _or_dist(Annotated[Int, Ge(1), Le(MAX_BYTES)])
"""A size in bytes: a number (fixed) or a distribution table."""
ThinkTime = _or_dist(Annotated[Float, Ge(0), Le(MAX_THINK_US)])
"""A think time in µs: a number (the mean of an exponential, as always) or a distribution table."""
AppTime = _or_dist(Annotated[Float, Ge(0), Le(MAX_APP_US)])
"""Application work in µs: a number (fixed) or a distribution table."""
BurstTime = _or_dist(Annotated[Float, Ge(0), Le(MAX_BURST_US)])
"""An on or off period in µs: a number (the mean of an exponential, as always) or a distribution table."""

DIST_FIELDS = {
    "request_bytes": ("request_response",), "response_bytes": ("request_response",),
    "think_us": ("request_response",), "packet_bytes": ("poisson",), "app_us": ("request_response", "poisson", "trace", "bulk"),
    "on_us": ("poisson",), "off_us": ("poisson",), "interarrival": ("poisson",),
}  # fmt: skip
"""The workload fields that take a distribution table, and the kinds that use them."""
SIZE_FIELDS = ("request_bytes", "response_bytes", "packet_bytes")
TIME_BOUNDS_US = {"think_us": MAX_THINK_US, "app_us": MAX_APP_US, "on_us": MAX_BURST_US, "off_us": MAX_BURST_US}
"""Times (µs) that take a distribution, and the largest value their parameters may have."""


class WorkloadSpec(Strict):
    """A tenant's traffic.

    kinds: ``request_response`` (closed loop, client on the wire), ``bulk`` (window-limited stream
    with ACKs the other way), ``poisson`` (open loop; optional on/off bursts and rate steps),
    ``trace`` (replay a CSV of ``timestamp_us,size_bytes,direction``). ``request_bytes``,
    ``response_bytes``, ``think_us`` (request_response), ``packet_bytes``, ``on_us``, ``off_us``,
    ``interarrival`` (poisson) and ``app_us`` (every kind) also take a distribution table
    (``vcoal.spec.dist``). Poisson tenants with the same ``burst_group`` share their on/off periods.
    """

    kind: Literal["request_response", "bulk", "poisson", "trace"]
    direction: Literal["rx", "tx"] = "rx"
    outstanding: Int = Field(1, ge=1, le=100_000, description="request_response: requests in flight")
    request_bytes: Size = Field(64, description="request_response: request size (bytes, or a distribution)")
    response_bytes: Size = Field(64, description="request_response: response size (bytes, or a distribution)")
    think_us: ThinkTime = Field(0.0, description="request_response: think time: a number is the mean of an "
                                                 "exponential (0 = none), a table any distribution (µs)")
    app_us: AppTime = Field(2.0, description="application work per request / packet (µs: a number is fixed, "
                                             "a table any distribution)")
    window_pkts: Int = Field(64, ge=1, le=100_000, description="bulk: packets in flight")
    packet_bytes: Size = Field(1500, description="bytes per packet (poisson: or a distribution)")
    ack_every: Int = Field(2, ge=1, le=1024, description="bulk: one ACK per this many packets")
    ack_bytes: Int = Field(64, ge=1, le=65_535)
    pace_gbps: Float = Field(0.0, ge=0, le=1000, description="bulk: sender pacing rate (0 = unpaced)")
    rto_us: Float = Field(1000.0, gt=0, le=1e7, description="bulk: a dropped packet's window slot returns after this")
    rate_pps: Float = Field(10_000.0, ge=0, le=MAX_RATE_PPS, description="poisson: mean rate while on")
    interarrival: DistSpec | None = Field(
        None, description="poisson: the shape of the gaps between arrivals, scaled to mean 1 / rate_pps "
                          "(default: exponential; {dist = 'constant', value = 1}: evenly spaced)")
    on_us: BurstTime = Field(0.0, description="poisson: on period: a number is the mean of an exponential "
                                              "(0 = always on), a table any distribution (µs)")
    off_us: BurstTime = Field(0.0, description="poisson: off period, like on_us")
    burst_group: str | None = Field(
        None, pattern=NAME_PATTERN, description="poisson with on/off: tenants of one group share their on/off "
                                                "periods (drawn once for the group)")
    burst_start_us: Float = Field(0.0, ge=0, le=MAX_BURST_US, description="poisson with on/off: the first on "
                                                                           "period starts here (off before)")
    steps: tuple[tuple[Float, Float], ...] = Field((), description="poisson: (at_s, rate_pps) changes")
    reply_every: Int = Field(
        1, ge=0, le=1_000_000,
        description="poisson, testbed only: the server answers one message in this many and those are timed "
                    "(1 = every message); 0 = none: a one-way small-packet UDP stream (iperf3 -u), as the "
                    "simulator's poisson is",
    )
    trace: str | None = Field(None, description="trace: CSV path, relative to the spec file")
    trace_rows: tuple[tuple[Float, Int, Literal["rx", "tx"]], ...] = Field(
        (), description="trace: rows given inline, checked like a CSV trace (vcoal.spec.trace)"
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for i, (at_s, rate) in enumerate(v):
            if not 0 <= at_s <= MAX_DURATION_S:
                raise ValueError(f"step {i}: at_s {at_s!r} out of range [0, {MAX_DURATION_S}]")
            if not 0 <= rate <= MAX_RATE_PPS:
                raise ValueError(f"step {i}: rate_pps {rate!r} out of range [0, {MAX_RATE_PPS:.0e}]")
        return v

    @field_validator(*SIZE_FIELDS)
    @classmethod
    def _size(cls, v: int | DistSpec) -> int | DistSpec:
        if not isinstance(v, DistSpec):
            return v
        bad = dist_problem(v, 1, MAX_BYTES)
        if bad is not None:
            raise ValueError(bad)
        return round(v.value) if v.dist == "constant" else v  # a constant size is a plain number

    @field_validator(*TIME_BOUNDS_US)
    @classmethod
    def _time(cls, v: float | DistSpec, info) -> float | DistSpec:
        bad = dist_problem(v, 0, TIME_BOUNDS_US[info.field_name]) if isinstance(v, DistSpec) else None
        if bad is not None:
            raise ValueError(bad)
        if info.field_name == "app_us" and isinstance(v, DistSpec) and v.dist == "constant":
            return float(v.value)  # a fixed app_us is a plain number
        return v

    @field_validator("interarrival")
    @classmethod
    def _interarrival(cls, v: DistSpec | None) -> DistSpec | None:
        if v is not None and not v.mean_value() > 0:
            raise ValueError(f"{v.dist}: needs a mean > 0 (it is scaled to mean 1 / rate_pps)")
        return v

    @field_validator("trace_rows")
    @classmethod
    def _trace_rows(cls, v: tuple[tuple[float, int, str], ...]) -> tuple[tuple[float, int, str], ...]:
        bad = rows_problem(v)
        if bad is not None:
            raise ValueError(f"row {bad[0]}: {bad[1]}")
        return v

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if self.kind == "trace" and not (self.trace or self.trace_rows):
            raise ValueError("kind='trace' needs 'trace' (CSV path) or 'trace_rows'")
        for name, kinds in DIST_FIELDS.items():
            if isinstance(getattr(self, name), DistSpec) and self.kind not in kinds:
                raise ValueError(f"{name}: a distribution applies to kind {' or '.join(map(repr, kinds))} only, "
                                 f"not {self.kind!r}")
        if self.kind == "poisson" and (self.mean_of("on_us") > 0) != (self.mean_of("off_us") > 0):
            raise ValueError("on_us and off_us must both be > 0 for on/off bursts, or both 0")
        for name in ("burst_group", "burst_start_us"):
            if getattr(self, name) and not self.bursty():
                raise ValueError(f"{name}: needs on/off bursts (kind = 'poisson', on_us and off_us > 0)")
        return self

    def bursty(self) -> bool:
        """True for a poisson workload with on/off periods."""
        return self.kind == "poisson" and self.mean_of("on_us") > 0

    def dists(self) -> dict[str, DistSpec]:
        """The fields of this workload given as distributions (constant sizes and app_us are plain numbers)."""
        return {n: v for n in DIST_FIELDS if isinstance(v := getattr(self, n), DistSpec)}

    def mean_of(self, name: str) -> float:
        """The mean of a size or time field, whether a number or a distribution."""
        v = getattr(self, name)
        return v.mean_value() if isinstance(v, DistSpec) else float(v)

    def burst_key(self) -> tuple:
        """What the members of a burst group must share: on_us, off_us, burst_start_us."""
        return (self.on_us, self.off_us, self.burst_start_us)


def burst_group_problem(guests) -> str | None:
    """Why the burst groups of ``guests`` (GuestSpecs) are inconsistent, or None: every member of a
    group must have the same on_us, off_us and burst_start_us (they share one sequence of periods)."""
    first: dict[str, Any] = {}
    for i, g in enumerate(guests):
        w = g.workload
        if w.burst_group is None:
            continue
        if w.burst_group not in first:
            first[w.burst_group] = g
            continue
        ref = first[w.burst_group]
        for name, mine, theirs in zip(("on_us", "off_us", "burst_start_us"), w.burst_key(), ref.workload.burst_key(),
                                      strict=True):
            if mine != theirs:
                return (f"guests.{i}.workload.{name}: burst_group {w.burst_group!r} members must share on_us, off_us "
                        f"and burst_start_us ({g.name} has {_text(mine)}, {ref.name} {_text(theirs)})")
    return None


def _text(v: float | DistSpec) -> str:
    return str(v.model_dump()) if isinstance(v, DistSpec) else f"{v:g}"
