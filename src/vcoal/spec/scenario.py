"""Pydantic models of a scenario: host, NIC, guests (tenants) with workloads and SLOs, costs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from vcoal.model.costs import DEFAULT_COSTS, MAX_BYTE_COST_NS, MAX_COST_US
from vcoal.model.params import PARAM_RANGES, CoalesceParams, TimerMode
from vcoal.model.slo import Slo
from vcoal.model.tomlfile import read_toml
from vcoal.model.units import Layer, Site
from vcoal.spec.errors import spec_error_line
from vcoal.spec.trace import MAX_DURATION_S, read_trace_csv
from vcoal.spec.workload import (  # noqa: F401 (re-exported: the scenario's vocabulary)
    DIST_FIELDS,
    MAX_BYTES,
    MAX_RATE_PPS,
    NAME_PATTERN,
    Float,
    Int,
    WorkloadSpec,
    burst_group_problem,
)
from vcoal.spec.workload import Strict as _Strict

TimerName = Literal[tuple(mode.value for mode in TimerMode)]  # the spec spells a TimerMode by its value


def _in_range(name: str):
    """An optional field with the range CoalesceParams accepts (model.params.PARAM_RANGES)."""
    lo, hi = PARAM_RANGES[name]
    return Field(None, ge=lo, le=hi)


class CoalesceSpec(_Strict):
    """Coalescing parameters (ethtool names); omitted fields keep their defaults."""

    rx_usecs: Int | None = _in_range("rx_usecs")
    rx_frames: Int | None = _in_range("rx_frames")
    tx_usecs: Int | None = _in_range("tx_usecs")
    tx_frames: Int | None = _in_range("tx_frames")
    timer: TimerName | None = None
    napi_budget: Int | None = _in_range("napi_budget")
    napi_defer_hard_irqs: Int | None = _in_range("napi_defer_hard_irqs")
    gro_flush_timeout_ns: Int | None = _in_range("gro_flush_timeout_ns")

    def apply(self, base: CoalesceParams) -> CoalesceParams:
        return CoalesceParams.from_dict(self.model_dump(exclude_none=True), base)


class CostSpec(_Strict):
    """CPU cost model in µs (per byte in ns); defaults: ``vcoal.model.costs.DEFAULT_COSTS`` (simulation.md A.1).

    ``service_dist`` makes every per-packet cost deterministic (``det``) or exponential with the
    same mean (``exp``); ``irq_dist`` does the same for interrupt costs.
    """

    irq_us: Float = Field(DEFAULT_COSTS["irq_us"], ge=0, le=MAX_COST_US, description="physical interrupt, direct cost")
    virq_us: Float = Field(DEFAULT_COSTS["virq_us"], ge=0, le=MAX_COST_US, description="event-channel upcall / virtual irq in guest")
    evtchn_send_us: Float = Field(DEFAULT_COSTS["evtchn_send_us"], ge=0, le=MAX_COST_US, description="notify_remote_via_irq on the sender")
    poll_us: Float = Field(DEFAULT_COSTS["poll_us"], ge=0, le=MAX_COST_US, description="one NAPI poll invocation")
    nic_pkt_us: Float = Field(DEFAULT_COSTS["nic_pkt_us"], ge=0, le=MAX_COST_US, description="NIC driver rx/tx per packet in dom0")
    bridge_pkt_us: Float = Field(DEFAULT_COSTS["bridge_pkt_us"], ge=0, le=MAX_COST_US, description="bridge forwarding per packet")
    netback_pkt_us: Float = Field(DEFAULT_COSTS["netback_pkt_us"], ge=0, le=MAX_COST_US, description="netback grant-copy op per packet")
    byte_copy_ns: Float = Field(DEFAULT_COSTS["byte_copy_ns"], ge=0, le=MAX_BYTE_COST_NS, description="per byte copied by netback")
    frontend_pkt_us: Float = Field(DEFAULT_COSTS["frontend_pkt_us"], ge=0, le=MAX_COST_US, description="netfront / virtio-net per packet")
    stack_pkt_us: Float = Field(DEFAULT_COSTS["stack_pkt_us"], ge=0, le=MAX_COST_US, description="guest TCP/IP stack per packet")
    tx_clean_us: Float = Field(DEFAULT_COSTS["tx_clean_us"], ge=0, le=MAX_COST_US, description="NIC TX completion cleaned per packet")
    ctx_switch_us: Float = Field(DEFAULT_COSTS["ctx_switch_us"], ge=0, le=MAX_COST_US, description="waking the application thread")
    service_dist: Literal["det", "exp"] = "det"
    irq_dist: Literal["det", "exp"] = "det"


class HostSpec(_Strict):
    """The physical host: driver-domain cores, the link and which layers packets cross.

    The path is modelled with Xen names; a KVM host is the same structure (vhost for netback,
    irqfd for the event channel, virtio-net for netfront) with its own costs in ``[cost]``
    (e.g. ``virq_us = 3`` for injection without posted interrupts, simulation.md A.1).
    """

    driver_domain_cores: Int = Field(2, ge=1, le=256)
    link_gbps: Float = Field(10.0, gt=0, le=1000)
    layers: tuple[Literal["nic", "backend", "frontend"], ...] = ("nic", "backend", "frontend")
    profile: Literal["xen", "veth"] = Field(
        "xen", description="xen: split-driver path (netback copy on the backend core, virtual interrupts, NIC tx "
                           "completions); veth: the testbed's veth path (a guest's receive NAPI runs on the CPU "
                           "of its NIC queue, its transmit NAPI on its own vCPU, no copy stage, no tx completions)")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v not in (("nic",), ("nic", "backend", "frontend")):
            raise ValueError("must be ['nic'] (one-layer host) or ['nic', 'backend', 'frontend']")
        return v


class NicSpec(_Strict):
    """The physical NIC: queues, ring sizes and default coalescing for every queue."""

    queues: Int = Field(1, ge=1, le=64)
    rx_ring: Int = Field(1024, ge=1, le=100_000_000)
    tx_ring: Int = Field(1024, ge=1, le=100_000_000)
    txqueuelen: Int = Field(1000, ge=0, le=100_000_000, description="qdisc packets waiting for tx ring slots")
    coalesce: CoalesceSpec = CoalesceSpec()
    irq_cores: tuple[Int, ...] | None = Field(
        None, description="driver-domain core of each queue's interrupt and NAPI, one per queue "
                          "(default: queue q on core q mod host.driver_domain_cores)",
    )


class LayerDefaults(_Strict):
    """Default coalescing of every backend or every frontend."""

    coalesce: CoalesceSpec = CoalesceSpec()


class SloSpec(_Strict):
    """p99 latency target (µs) and optional minimum throughput (bit/s)."""

    p99_us: Float | None = Field(None, gt=0, le=1e9)
    min_throughput_bps: Float | None = Field(None, ge=0, le=1e13)

    def to_slo(self) -> Slo:
        return Slo(self.p99_us, self.min_throughput_bps)


class GuestSpec(_Strict):
    """A guest VM = one tenant: vCPUs, its NIC queue, its workload and SLO, per-site overrides."""

    name: str = Field(pattern=NAME_PATTERN)
    vcpus: Int = Field(1, ge=1, le=64)
    nic_queue: Int | None = Field(None, ge=0, le=63)
    backend_core: Int | None = Field(
        None, ge=0, le=255, description="driver-domain core of this guest's backend (default: guest "
                                        "index mod host.driver_domain_cores)",
    )
    ring: Int = Field(256, ge=1, le=65_536, description="shared ring slots per direction")
    workload: WorkloadSpec
    slo: SloSpec = SloSpec()
    backend: CoalesceSpec = CoalesceSpec()
    frontend: CoalesceSpec = CoalesceSpec()


class WindowSpec(_Strict):
    """How often policies are consulted: every ``duration_us`` of simulated time, or, when
    ``events`` is set, every ``events`` simulator events (a load-proportional window, like
    lib/dim's 64 interrupts)."""

    duration_us: Float = Field(10_000.0, ge=10, le=1e8)
    events: Int | None = Field(None, ge=100, le=10**9)


class ScenarioSpec(_Strict):
    """A whole scenario: host, NIC, guests, costs, run length, policy window."""

    name: str = Field("scenario", min_length=1, max_length=80)
    description: str = ""
    duration_s: Float = Field(0.5, gt=0, le=MAX_DURATION_S)
    warmup_s: Float = Field(0.0, ge=0, le=MAX_DURATION_S)
    seed: Int = Field(1, ge=0, le=2**63 - 1)
    host: HostSpec = HostSpec()
    nic: NicSpec = NicSpec()
    backend: LayerDefaults = LayerDefaults()
    frontend: LayerDefaults = LayerDefaults()
    cost: CostSpec = CostSpec()
    window: WindowSpec = WindowSpec()
    guests: tuple[GuestSpec, ...] = Field(max_length=1024)

    @field_validator("guests")
    @classmethod
    def _some_guest(cls, v: tuple[GuestSpec, ...]) -> tuple[GuestSpec, ...]:
        # not Field(min_length=1): pydantic would also report a too-short tuple whenever one
        # guest fails (it counts the guests that validated), hiding the real error behind (+1 more)
        if not v:
            raise ValueError("at least one [[guests]] table is needed")
        return v

    @model_validator(mode="after")
    def _check(self) -> ScenarioSpec:
        names = [g.name for g in self.guests]
        if len(set(names)) != len(names):
            raise ValueError("guests: names must be unique")
        for g in self.guests:
            if g.nic_queue is not None and g.nic_queue >= self.nic.queues:
                raise ValueError(f"guests.{g.name}.nic_queue={g.nic_queue}: must be < nic.queues={self.nic.queues}")
        cores = self.host.driver_domain_cores
        irq = self.nic.irq_cores
        if irq is not None and len(irq) != self.nic.queues:
            raise ValueError(f"nic.irq_cores: {len(irq)} entries, needs one per queue (nic.queues = {self.nic.queues})")
        for q, c in enumerate(irq or ()):
            if not 0 <= c < cores:
                raise ValueError(f"nic.irq_cores[{q}] = {c}: core out of range [0, {cores - 1}] "
                                 f"(host.driver_domain_cores = {cores})")
        for g in self.guests:
            if g.backend_core is not None and g.backend_core >= cores:
                raise ValueError(f"guests.{g.name}.backend_core = {g.backend_core}: core out of range "
                                 f"[0, {cores - 1}] (host.driver_domain_cores = {cores})")
        bad = burst_group_problem(self.guests)
        if bad is not None:
            raise ValueError(bad)
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be < duration_s")
        if self.host.profile == "veth" and self.host.layers == ("nic",):
            raise ValueError("host.profile = 'veth' needs host.layers = ['nic', 'backend', 'frontend'] (a veth path has every hop)")
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

    def irq_core_of(self, queue: int) -> int:
        """Driver-domain core of a NIC queue's interrupt and NAPI (``nic.irq_cores``, else queue mod cores)."""
        irq = self.nic.irq_cores
        return irq[queue] if irq is not None else queue % self.host.driver_domain_cores

    def backend_core_of(self, guest_index: int) -> int:
        """Driver-domain core of a guest's backend (``backend_core``, else guest index mod cores)."""
        g = self.guests[guest_index]
        return g.backend_core if g.backend_core is not None else guest_index % self.host.driver_domain_cores

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
        return validate_scenario(data)

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


def validate_scenario(data: dict[str, Any], source: str = "spec") -> ScenarioSpec:
    """Validate a mapping (files already inlined) into a ScenarioSpec; ValueError with one line."""
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(spec_error_line(exc, source, root=ScenarioSpec)) from None


def parse_scenario(data: dict[str, Any], source: str = "spec", base_dir: Path | None = None) -> ScenarioSpec:
    """Validate a mapping into a ScenarioSpec; raises ValueError with one line on bad input.

    A trace workload's CSV (``trace = "file.csv"``) is read here, relative to ``base_dir``, into
    ``trace_rows`` so that nothing downstream reads files. A top-level ``cost_file = "c.toml"``
    (a cost-model file, e.g. from ``vcoal calibrate fit``) is read the same way: its ``[cost]``
    replaces the defaults and the spec's own ``[cost]`` keys override it.
    """
    data = _inline_traces(data, base_dir, source)
    data = _inline_cost_file(data, base_dir, source)
    return validate_scenario(data, source)


def _inline_traces(data: dict[str, Any], base_dir: Path | None, source: str) -> dict[str, Any]:
    guests = data.get("guests")
    if not isinstance(guests, list):
        return data
    for g in guests:
        w = g.get("workload") if isinstance(g, dict) else None
        if isinstance(w, dict) and w.get("kind") == "trace" and isinstance(w.get("trace"), str) and w["trace"] \
                and not w.get("trace_rows"):
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
        raise ValueError(spec_error_line(exc, where, ("cost",), ScenarioSpec)) from None
    cal = data.get("calibration", {})
    return dict(table), dict(cal) if isinstance(cal, dict) else {}


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Load and validate a scenario TOML file; ValueError with one line on any problem."""
    path = Path(path)
    return parse_scenario(read_toml(path), str(path), path.parent)
