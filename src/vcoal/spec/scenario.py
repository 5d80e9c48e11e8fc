"""Pydantic models of a scenario: host, NIC, guests (tenants) with workloads and SLOs, costs."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vcoal.model.params import PARAM_RANGES, CoalesceParams
from vcoal.model.slo import Slo
from vcoal.model.tomlfile import read_toml
from vcoal.model.units import Layer, Site


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _in_range(name: str):
    """An optional field with the range CoalesceParams accepts (model.params.PARAM_RANGES)."""
    lo, hi = PARAM_RANGES[name]
    return Field(None, ge=lo, le=hi)


class CoalesceSpec(_Strict):
    """Coalescing parameters (ethtool names); omitted fields keep their defaults."""

    rx_usecs: int | None = _in_range("rx_usecs")
    rx_frames: int | None = _in_range("rx_frames")
    tx_usecs: int | None = _in_range("tx_usecs")
    tx_frames: int | None = _in_range("tx_frames")
    timer: Literal["absolute", "packet", "itr"] | None = None
    napi_budget: int | None = _in_range("napi_budget")
    napi_defer_hard_irqs: int | None = _in_range("napi_defer_hard_irqs")
    gro_flush_timeout_ns: int | None = _in_range("gro_flush_timeout_ns")

    def apply(self, base: CoalesceParams) -> CoalesceParams:
        return CoalesceParams.from_dict(self.model_dump(exclude_none=True), base)


class CostSpec(_Strict):
    """CPU cost model in µs (per byte in ns); defaults from shared/reference/simulation.md A.1.

    ``service_dist`` makes every per-packet cost deterministic (``det``) or exponential with the
    same mean (``exp``); ``irq_dist`` does the same for interrupt costs.
    """

    irq_us: float = Field(1.0, ge=0, le=1000, description="physical interrupt, direct cost")
    virq_us: float = Field(1.0, ge=0, le=1000, description="event-channel upcall / virtual irq in guest")
    evtchn_send_us: float = Field(0.5, ge=0, le=1000, description="notify_remote_via_irq on the sender")
    poll_us: float = Field(0.3, ge=0, le=1000, description="one NAPI poll invocation")
    nic_pkt_us: float = Field(1.0, ge=0, le=1000, description="NIC driver rx/tx per packet in dom0")
    bridge_pkt_us: float = Field(1.0, ge=0, le=1000, description="bridge forwarding per packet")
    netback_pkt_us: float = Field(1.0, ge=0, le=1000, description="netback grant-copy op per packet")
    byte_copy_ns: float = Field(0.15, ge=0, le=100, description="per byte copied by netback")
    frontend_pkt_us: float = Field(0.5, ge=0, le=1000, description="netfront / virtio-net per packet")
    stack_pkt_us: float = Field(1.0, ge=0, le=1000, description="guest TCP/IP stack per packet")
    tx_clean_us: float = Field(0.1, ge=0, le=1000, description="NIC TX completion cleaned per packet")
    ctx_switch_us: float = Field(1.5, ge=0, le=1000, description="waking the application thread")
    service_dist: Literal["det", "exp"] = "det"
    irq_dist: Literal["det", "exp"] = "det"


class HostSpec(_Strict):
    """The physical host: driver-domain cores, the link and which layers packets cross.

    The path is modelled with Xen names; a KVM host is the same structure (vhost for netback,
    irqfd for the event channel, virtio-net for netfront) with its own costs in ``[cost]``
    (e.g. ``virq_us = 3`` for injection without posted interrupts, simulation.md A.1).
    """

    driver_domain_cores: int = Field(2, ge=1, le=256)
    link_gbps: float = Field(10.0, gt=0, le=1000)
    layers: tuple[Literal["nic", "backend", "frontend"], ...] = ("nic", "backend", "frontend")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v not in (("nic",), ("nic", "backend", "frontend")):
            raise ValueError("must be ['nic'] (one-layer host) or ['nic', 'backend', 'frontend']")
        return v


class NicSpec(_Strict):
    """The physical NIC: queues, ring sizes and default coalescing for every queue."""

    queues: int = Field(1, ge=1, le=64)
    rx_ring: int = Field(1024, ge=1, le=100_000_000)
    tx_ring: int = Field(1024, ge=1, le=100_000_000)
    txqueuelen: int = Field(1000, ge=0, le=100_000_000, description="qdisc packets waiting for tx ring slots")
    coalesce: CoalesceSpec = CoalesceSpec()


class LayerDefaults(_Strict):
    """Default coalescing of every backend or every frontend."""

    coalesce: CoalesceSpec = CoalesceSpec()


class WorkloadSpec(_Strict):
    """A tenant's traffic.

    kinds: ``request_response`` (closed loop, client on the wire), ``bulk`` (window-limited stream
    with ACKs the other way), ``poisson`` (open loop; optional on/off bursts and rate steps),
    ``trace`` (replay a CSV of ``timestamp_us,size_bytes,direction``).
    """

    kind: Literal["request_response", "bulk", "poisson", "trace"]
    direction: Literal["rx", "tx"] = "rx"
    outstanding: int = Field(1, ge=1, le=100_000, description="request_response: requests in flight")
    request_bytes: int = Field(64, ge=1, le=65_535)
    response_bytes: int = Field(64, ge=1, le=65_535)
    think_us: float = Field(0.0, ge=0, le=1e7)
    app_us: float = Field(2.0, ge=0, le=1e6, description="application work per request / packet")
    window_pkts: int = Field(64, ge=1, le=100_000, description="bulk: packets in flight")
    packet_bytes: int = Field(1500, ge=1, le=65_535)
    ack_every: int = Field(2, ge=1, le=1024, description="bulk: one ACK per this many packets")
    ack_bytes: int = Field(64, ge=1, le=65_535)
    pace_gbps: float = Field(0.0, ge=0, le=1000, description="bulk: sender pacing rate (0 = unpaced)")
    rto_us: float = Field(1000.0, gt=0, le=1e7, description="bulk: a dropped packet's window slot returns after this")
    rate_pps: float = Field(10_000.0, ge=0, le=1e9, description="poisson: mean rate while on")
    on_us: float = Field(0.0, ge=0, le=1e9, description="poisson: mean on period (0 = always on)")
    off_us: float = Field(0.0, ge=0, le=1e9, description="poisson: mean off period")
    steps: tuple[tuple[float, float], ...] = Field((), description="poisson: (at_s, rate_pps) changes")
    trace: str | None = Field(None, description="trace: CSV path, relative to the spec file")
    trace_rows: tuple[tuple[float, int, str], ...] = Field((), description="trace: rows given inline")

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if self.kind == "trace" and not (self.trace or self.trace_rows):
            raise ValueError("kind='trace' needs 'trace' (CSV path) or 'trace_rows'")
        if self.kind == "poisson" and (self.on_us > 0) != (self.off_us > 0):
            raise ValueError("on_us and off_us must both be > 0 for on/off bursts, or both 0")
        for at_s, rate in self.steps:
            if at_s < 0 or rate < 0:
                raise ValueError("steps: each (at_s, rate_pps) must be >= 0")
        return self


class SloSpec(_Strict):
    """p99 latency target (µs) and optional minimum throughput (bit/s)."""

    p99_us: float | None = Field(None, gt=0, le=1e9)
    min_throughput_bps: float | None = Field(None, ge=0, le=1e13)

    def to_slo(self) -> Slo:
        return Slo(self.p99_us, self.min_throughput_bps)


class GuestSpec(_Strict):
    """A guest VM = one tenant: vCPUs, its NIC queue, its workload and SLO, per-site overrides."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
    vcpus: int = Field(1, ge=1, le=64)
    nic_queue: int | None = Field(None, ge=0, le=63)
    ring: int = Field(256, ge=1, le=65_536, description="shared ring slots per direction")
    workload: WorkloadSpec
    slo: SloSpec = SloSpec()
    backend: CoalesceSpec = CoalesceSpec()
    frontend: CoalesceSpec = CoalesceSpec()


class WindowSpec(_Strict):
    """How often policies are consulted: every ``duration_us`` of simulated time, or, when
    ``events`` is set, every ``events`` simulator events (a load-proportional window, like
    lib/dim's 64 interrupts)."""

    duration_us: float = Field(10_000.0, ge=10, le=1e8)
    events: int | None = Field(None, ge=100, le=10**9)


class ScenarioSpec(_Strict):
    """A whole scenario: host, NIC, guests, costs, run length, policy window."""

    name: str = Field("scenario", min_length=1, max_length=80)
    description: str = ""
    duration_s: float = Field(0.5, gt=0, le=3600)
    warmup_s: float = Field(0.0, ge=0, le=3600)
    seed: int = Field(1, ge=0, le=2**63 - 1)
    host: HostSpec = HostSpec()
    nic: NicSpec = NicSpec()
    backend: LayerDefaults = LayerDefaults()
    frontend: LayerDefaults = LayerDefaults()
    cost: CostSpec = CostSpec()
    window: WindowSpec = WindowSpec()
    guests: tuple[GuestSpec, ...] = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _check(self) -> ScenarioSpec:
        names = [g.name for g in self.guests]
        if len(set(names)) != len(names):
            raise ValueError("guests: names must be unique")
        for g in self.guests:
            if g.nic_queue is not None and g.nic_queue >= self.nic.queues:
                raise ValueError(f"guests.{g.name}.nic_queue={g.nic_queue}: must be < nic.queues={self.nic.queues}")
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be < duration_s")
        if self.host.layers == ("nic",):
            for g in self.guests:
                w = g.workload
                if w.kind not in ("poisson", "trace") or w.direction != "rx":
                    raise ValueError(f"guests.{g.name}.workload: a one-layer host takes only rx poisson/trace")
        return self

    # --- derived views -------------------------------------------------------------------------

    def queue_of(self, guest_index: int) -> int:
        """NIC queue a guest's traffic uses (explicit, else guest index modulo queues)."""
        g = self.guests[guest_index]
        return g.nic_queue if g.nic_queue is not None else guest_index % self.nic.queues

    def site_params(self) -> dict[Site, CoalesceParams]:
        """Initial coalescing parameters of every site, defaults then overrides."""
        base = CoalesceParams()
        out: dict[Site, CoalesceParams] = {}
        for q in range(self.nic.queues):
            out[Site(Layer.NIC, f"q{q}")] = self.nic.coalesce.apply(base)
        if self.host.layers != ("nic",):
            for g in self.guests:
                out[Site(Layer.BACKEND, g.name)] = g.backend.apply(self.backend.coalesce.apply(base))
                out[Site(Layer.FRONTEND, g.name)] = g.frontend.apply(self.frontend.coalesce.apply(base))
        return out

    def tenant_path(self, guest_index: int) -> tuple[Site, ...]:
        """Sites a tenant's packets cross, wire side first."""
        g = self.guests[guest_index]
        nic = Site(Layer.NIC, f"q{self.queue_of(guest_index)}")
        if self.host.layers == ("nic",):
            return (nic,)
        return (nic, Site(Layer.BACKEND, g.name), Site(Layer.FRONTEND, g.name))

    def with_overrides(self, overrides: dict[str, Any]) -> ScenarioSpec:
        """A validated copy with dotted-path overrides, e.g. ``{"nic.coalesce.rx_usecs": 8}``.

        ``guests.NAME.field`` addresses a guest by name; ``guests.*.field`` every guest.
        """
        data = self.model_dump(mode="json")
        for path, value in overrides.items():
            _set_dotted(data, path.split("."), value, path)
        return parse_scenario(data)

    def spec_hash(self) -> str:
        """Stable short hash of the canonical JSON form."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set_dotted(node: Any, parts: list[str], value: Any, full: str) -> None:
    key, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets = node if key == "*" else [g for g in node if isinstance(g, dict) and g.get("name") == key]
        if not targets:
            raise ValueError(f"override {full!r}: no guest named {key!r}")
        if not rest:
            raise ValueError(f"override {full!r}: name a field of the guest, e.g. 'guests.{key}.vcpus'")
        for t in targets:
            _set_dotted(t, rest, value, full)
        return
    if not isinstance(node, dict):
        raise ValueError(f"override {full!r}: {key!r} is not a table")
    if not rest:
        node[key] = value
        return
    if key not in node or node[key] is None:
        node[key] = {}
    _set_dotted(node[key], rest, value, full)


def spec_error_line(exc: ValidationError, source: str = "spec", at: tuple = ()) -> str:
    """One line naming the first offending field and what is accepted (``at``: where in a
    ScenarioSpec the validated model sits, e.g. ("cost",) for a CostSpec)."""
    err = exc.errors()[0]
    where = (*at, *err.get("loc", ()))
    loc = ".".join(str(x) for x in where if x != "__root__")
    msg = err.get("msg", "invalid")
    ctx = err.get("ctx") or {}
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif {"ge", "le", "gt", "lt"} & ctx.keys():
        lo, hi = _field_bounds(where)  # as declared; the error's own bound where none is
        lo = ctx.get("ge", ctx.get("gt", lo)) if lo == "-inf" else lo
        hi = ctx.get("le", ctx.get("lt", hi)) if hi == "inf" else hi
        msg = f"{err.get('input')!r} out of range [{lo}, {hi}]"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc or 'spec'}: {msg}{more}"


def _field_bounds(loc: tuple) -> tuple[object, object]:
    """The declared (lower, upper) bounds of the field at ``loc`` in ScenarioSpec."""
    model: type[BaseModel] | None = ScenarioSpec
    info = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            break
        ann = info.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    lo: object = "-inf"
    hi: object = "inf"
    for m in getattr(info, "metadata", ()):
        lo = getattr(m, "ge", getattr(m, "gt", lo)) if hasattr(m, "ge") or hasattr(m, "gt") else lo
        hi = getattr(m, "le", getattr(m, "lt", hi)) if hasattr(m, "le") or hasattr(m, "lt") else hi
    return lo, hi


def parse_scenario(data: dict[str, Any], source: str = "spec", base_dir: Path | None = None) -> ScenarioSpec:
    """Validate a mapping into a ScenarioSpec; raises ValueError with one line on bad input.

    A trace workload's CSV (``trace = "file.csv"``) is read here, relative to ``base_dir``, into
    ``trace_rows`` so that nothing downstream reads files. A top-level ``cost_file = "c.toml"``
    (a cost-model file, e.g. from ``vcoal calibrate fit``) is read the same way: its ``[cost]``
    replaces the defaults and the spec's own ``[cost]`` keys override it.
    """
    data = _inline_traces(data, base_dir, source)
    data = _inline_cost_file(data, base_dir, source)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(spec_error_line(exc, source)) from None


def _inline_traces(data: dict[str, Any], base_dir: Path | None, source: str) -> dict[str, Any]:
    guests = data.get("guests")
    if not isinstance(guests, list):
        return data
    for g in guests:
        w = g.get("workload") if isinstance(g, dict) else None
        if isinstance(w, dict) and w.get("kind") == "trace" and w.get("trace") and not w.get("trace_rows"):
            path = Path(w["trace"])
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            w["trace_rows"] = read_trace_csv(path, f"{source}: guests.{g.get('name')}.workload.trace")
    return data


def _inline_cost_file(data: dict[str, Any], base_dir: Path | None, source: str) -> dict[str, Any]:
    """``cost_file = "costs.toml"`` (relative to the spec file): its ``[cost]`` replaces the
    defaults and the spec's own ``[cost]`` keys override it (file under spec)."""
    if not isinstance(data, dict) or "cost_file" not in data:
        return data
    data = dict(data)
    ref = data.pop("cost_file")
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"{source}: cost_file: expected a file path (string)")
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    table = read_cost_file(path, f"{source}: cost_file")
    own = data.get("cost", {})
    if not isinstance(own, dict):
        raise ValueError(f"{source}: cost: expected a table")
    data["cost"] = {**table, **own}
    return data


COST_FILE_TABLES = ("cost", "calibration")


def read_cost_file(path: str | Path, what: str | None = None) -> dict[str, Any]:
    """The validated ``[cost]`` table of a cost-model file (see ``read_cost_doc``)."""
    return read_cost_doc(path, what)[0]


def read_cost_doc(path: str | Path, what: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a cost-model file: TOML with a ``[cost]`` table of CostSpec fields (validated: unknown
    keys and out-of-range values are rejected) and an optional free-form ``[calibration]`` table.
    Returns both tables as given (the cost table holds only the keys it sets)."""
    path = Path(path)
    where = f"{what}: {path}" if what else str(path)
    data = read_toml(path, what)
    extra = sorted(set(data) - set(COST_FILE_TABLES))
    if extra:
        raise ValueError(f"{where}: {extra[0]}: unknown key (a cost file has [cost] and optional [calibration])")
    table = data.get("cost")
    if not isinstance(table, dict):
        raise ValueError(f"{where}: cost: missing [cost] table")
    try:
        CostSpec.model_validate(table)
    except ValidationError as exc:
        raise ValueError(spec_error_line(exc, where, ("cost",))) from None
    cal = data.get("calibration", {})
    return dict(table), dict(cal) if isinstance(cal, dict) else {}


def read_trace_csv(path: Path, what: str) -> list[tuple[float, int, str]]:
    """Read ``timestamp_us,size_bytes,direction`` rows (header optional), sorted by time."""
    rows: list[tuple[float, int, str]] = []
    try:
        with open(path, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].startswith("#") or (lineno == 1 and not _is_number(row[0])):
                    continue
                if len(row) != 3:
                    raise ValueError(f"{what}: {path}:{lineno}: expected 3 columns timestamp_us,size,direction")
                ts, size, direction = float(row[0]), int(row[1]), row[2].strip()
                if ts < 0 or not 1 <= size <= 65_535 or direction not in ("rx", "tx"):
                    raise ValueError(
                        f"{what}: {path}:{lineno}: timestamp_us >= 0, size in [1, 65535], direction rx|tx"
                    )
                rows.append((ts, size, direction))
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None
    rows.sort(key=lambda r: r[0])
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Load and validate a scenario TOML file; ValueError with one line on any problem."""
    path = Path(path)
    return parse_scenario(read_toml(path), str(path), path.parent)
