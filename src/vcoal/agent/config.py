"""Agent configuration: a TOML file validated by pydantic, refused with one line naming the field.

Example (see examples/agent/ for complete files)::

    window_ms = 100
    journal_path = "/var/lib/vcoal/agent-journal.json"

    [policy]
    name = "static"
    params = { backend = { napi_defer_hard_irqs = 2, gro_flush_timeout_ns = 50000 } }

    [[interfaces]]
    match = ["vif*"]
    layer = "backend"
    knobs = ["napi_defer_hard_irqs", "gro_flush_timeout_ns"]
    bounds = { gro_flush_timeout_ns = [0, 200000] }

    [[tenants]]
    name = "web"
    interfaces = ["vif1.*"]
    p99_us = 200

``host_profile`` (``xen`` by default, or ``veth`` where the managed interfaces are veth pairs and
one NET_RX run drains every NAPI scheduled on a CPU, as on the testbed) tells ``qos`` what an event
costs (docs/simulator.md, host profiles).

``cost_file`` (optional) names a TOML file of per-operation CPU costs, the names and units of a
scenario's ``[cost]`` table (top level or under ``[cost]``), relative to the config file; the
policy plans with it. Without it the policy gets the built-in defaults
(``vcoal.model.costs.DEFAULT_COSTS``); ``vcoal agent status`` says which.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vcoal.linux.knobs import KNOBS, NAPI_KNOBS, queue_unit
from vcoal.model.costs import cost_table
from vcoal.model.params import PARAM_RANGES
from vcoal.model.tomlfile import read_toml

KnobName = Literal[
    "napi_defer_hard_irqs", "gro_flush_timeout_ns", "rx_usecs", "rx_frames", "tx_usecs", "tx_frames"
]
assert set(KnobName.__args__) == set(KNOBS)  # type: ignore[attr-defined]
_ANY_NAMES = ("lo", "eth0", "x", "vif1.0", "enp0s31f6", "tap-a_b@c", "9")  # a glob matching all takes anything


class ConfigError(ValueError):
    """An invalid agent configuration; the message is one line naming the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InterfaceGroup(_Model):
    """Interfaces selected by name or glob, the layer they emulate and the knobs the agent may set."""

    match: Annotated[list[str], Field(min_length=1)]
    layer: Literal["nic", "backend", "frontend"]
    knobs: Annotated[list[KnobName], Field(min_length=1)] = ["napi_defer_hard_irqs", "gro_flush_timeout_ns"]
    bounds: dict[KnobName, tuple[int, int]] = {}
    exclude: list[str] = []
    queues: str | list[int] = "all"
    allow_all: Annotated[bool, Field(validate_default=True)] = False

    @field_validator("allow_all")
    @classmethod
    def _allow_all(cls, v: bool, info: ValidationInfo) -> bool:
        match, exclude = info.data.get("match"), info.data.get("exclude", [])
        if v or not match:
            return v
        group = InterfaceGroup.model_construct(match=match, exclude=exclude)
        wide = next((p for p in match if all(fnmatch.fnmatchcase(n, p) for n in _ANY_NAMES)), None)
        if wide is not None or group.matches("lo"):
            what = f"{wide!r} takes every interface" if wide is not None else "match takes lo"
            raise ValueError(
                f"{what}; name the interfaces (exclude lo), or set allow_all = true in this group to mean it"
            )
        return v

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, v: Any, info: ValidationInfo) -> Any:
        if v == "all":
            return v
        if not isinstance(v, list) or not v or not all(type(q) is int and 0 <= q <= 65535 for q in v):
            raise ValueError('must be "all" or a non-empty list of queue numbers 0-65535, e.g. [0, 2]')
        if len(set(v)) != len(v):
            raise ValueError(f"queue numbers repeated in {v}")
        device_wide = [k for k in info.data.get("knobs", ()) if k not in NAPI_KNOBS]
        if device_wide:
            raise ValueError(
                f"per-queue control takes only {', '.join(NAPI_KNOBS)}; knobs also lists {device_wide[0]}"
            )
        return v

    @field_validator("match", "exclude")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if not pattern or len(pattern) > 64 or "/" in pattern or any(c.isspace() for c in pattern):
                raise ValueError(f"{pattern!r} is not an interface name or glob")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for knob, (lo, hi) in v.items():
            rlo, rhi = PARAM_RANGES[knob]
            if not rlo <= lo <= hi <= rhi:
                raise ValueError(f"{knob}: bounds [{lo}, {hi}] must satisfy {rlo} <= low <= high <= {rhi}")
        return v

    def units(self, ifname: str) -> list[str]:
        """The sites' names this group makes of a matching interface: the interface, or its queues."""
        return [ifname] if self.queues == "all" else [queue_unit(ifname, q) for q in self.queues]

    def matches(self, ifname: str) -> bool:
        """True when ``ifname`` matches a pattern and no exclusion."""
        return any(fnmatch.fnmatchcase(ifname, p) for p in self.match) and not any(
            fnmatch.fnmatchcase(ifname, p) for p in self.exclude
        )


class TenantConfig(_Model):
    """A tenant, its SLO and the interfaces on its path."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    interfaces: list[str] = []
    p99_us: Annotated[float, Field(gt=0)] | None = None
    min_throughput_bps: Annotated[float, Field(ge=0)] | None = None
    kind: str = "unknown"


class PolicyConfig(_Model):
    """The policy to run and its parameters (validated by the policy registry)."""

    name: str = "off"
    params: dict[str, Any] = {}
    seed: Annotated[int, Field(ge=0)] = 0


class SafetyConfig(_Model):
    """Limits on what the agent does to the host."""

    max_changes_per_minute: Annotated[int, Field(ge=1, le=6000)] = 60
    backoff_s: Annotated[float, Field(ge=0, le=86400)] = 300.0
    verify_every_windows: Annotated[int, Field(ge=1, le=10000)] = 10


class MetricsConfig(_Model):
    """The Prometheus endpoint."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9977


class AgentConfig(_Model):
    """The whole agent configuration."""

    window_ms: Annotated[float, Field(ge=1, le=60000)] = 100.0
    rescan_every_windows: Annotated[int, Field(ge=1, le=100000)] = 10
    journal_path: str = "/var/lib/vcoal/agent-journal.json"
    status_path: str = "/run/vcoal/agent-status.json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    policy: PolicyConfig = PolicyConfig()
    safety: SafetyConfig = SafetyConfig()
    metrics: MetricsConfig = MetricsConfig()
    interfaces: Annotated[list[InterfaceGroup], Field(min_length=1)]
    tenants: list[TenantConfig] = []
    cost_file: str | None = None
    cost: dict[str, float] = Field({}, description="costs read from cost_file (set by parse_config)")
    host_profile: Literal["xen", "veth"] = Field(
        "xen", description="what a softirq costs here: xen (real interrupts per layer) or veth (one NET_RX run drains every NAPI)"
    )

    @field_validator("cost")
    @classmethod
    def _cost(cls, v: dict[str, float]) -> dict[str, float]:
        cost_table(v)
        return v

    @property
    def costs(self) -> dict[str, float]:
        """The cost table handed to the policy: the defaults with ``cost_file``'s entries applied."""
        return cost_table(self.cost)

    @property
    def cost_source(self) -> str:
        """Where the policy's costs come from, in words (for ``agent status``)."""
        return f"cost_file {self.cost_file}" if self.cost_file else "built-in defaults (no cost_file)"

    @property
    def window_ns(self) -> int:
        return round(self.window_ms * 1_000_000)

    def group_of(self, ifname: str) -> InterfaceGroup | None:
        """The first interface group an interface matches (None: not ours, never touched)."""
        return next((g for g in self.interfaces if g.matches(ifname)), None)


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return f"{loc}: {msg}{shown}{more}"


def read_cost_file(path: str | Path) -> dict[str, float]:
    """The entries of a cost file (top level or a ``[cost]`` table), checked against the cost table;
    raises ConfigError with one line naming the file and entry."""
    try:
        data = read_toml(path)
        if set(data) == {"cost"} and isinstance(data["cost"], dict):
            data = data["cost"]
        checked = cost_table(data, origin=str(path))
        return {k: checked[k] for k in data}
    except ValueError as exc:
        raise ConfigError(f"cost_file: {exc}") from None


def parse_config(data: dict[str, Any], origin: str = "config", base_dir: str | Path | None = None) -> AgentConfig:
    """Validate a mapping; raises ConfigError with one line naming the field.

    A ``cost_file`` is read (relative to ``base_dir``, default the working directory) into ``cost``.
    """
    from vcoal.policies import make_policy

    if "cost" in data:
        raise ConfigError(f"{origin}: cost: not a config key; name a cost file with cost_file")
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_one_line(exc)}") from None
    if cfg.cost_file:
        path = Path(cfg.cost_file)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        cfg = cfg.model_copy(update={"cost": read_cost_file(path)})
    try:
        make_policy(cfg.policy.name, cfg.policy.params)
    except ValueError as exc:
        raise ConfigError(f"{origin}: policy: {str(exc).splitlines()[0]}") from None
    return cfg


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a TOML config file; raises ConfigError with one line."""
    try:
        data = read_toml(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, str(path), Path(path).parent)
