"""Sweep specs (TOML) and their expansion into trials.

A sweep names base scenarios (files, globs, or one inline table) and axes; the trials are the
Cartesian product of scenario axes (any scenario field by dotted path), policies, each policy's
parameter axes and seeds, plus optional explicit ``[[trials]]``. A single run is a sweep of one.

Example::

    name = "load-vs-policy"
    scenario = "../suite/*.toml"       # or a list of paths, or an inline [scenario] table
    duration_s = 0.2                   # optional: every trial's duration (warmup scaled alike)
    seeds = [1, 2]                     # or a count: seeds = 3 -> [1, 2, 3]

    [params.static]                    # base parameters of a policy
    nic = { rx_usecs = 8 }

    [axes]
    policy = ["off", "static"]         # or "all": every registered policy
    "guests.*.workload.rate_pps" = [10000, 50000]
    params.static.nic = [{ rx_usecs = 8 }, { rx_usecs = 64 }]

    [[trials]]                         # explicit extra trials
    policy = "static"
    params = { nic = { rx_usecs = 0 } }
    set = { "nic.coalesce.rx_frames" = 1 }
    seeds = [7]

Every trial's run key hashes its expanded scenario, policy, parameters, seed and the package
version, so a rerun skips what is already stored.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcoal.model.tomlfile import read_toml
from vcoal.policies import POLICIES, make_policy
from vcoal.results.provenance import package_version
from vcoal.spec import ScenarioSpec, load_scenario, parse_scenario

MAX_TRIALS = 1_000_000
MAX_SEED = 2**63 - 1
_TOP_KEYS = ("name", "description", "scenario", "duration_s", "seeds", "params", "axes", "trials")
_TRIAL_KEYS = ("scenario", "policy", "params", "seed", "seeds", "set")


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """One fully expanded trial: what a worker needs, plus its run key and a readable label."""

    run_key: str
    sweep: str
    label: str
    scenario: dict[str, Any]
    scenario_name: str
    spec_hash: str
    policy: str
    policy_params: dict[str, Any]
    seed: int
    duration_s: float
    axes: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """The ``trial`` block of the result file."""
        return {
            "sweep": self.sweep,
            "label": self.label,
            "scenario": self.scenario_name,
            "policy": self.policy,
            "policy_params": self.policy_params,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "axes": self.axes,
        }

    def payload(self) -> dict[str, Any]:
        """What is sent to a worker (plain data only)."""
        return {
            "run_key": self.run_key,
            "scenario": self.scenario,
            "policy": self.policy,
            "policy_params": self.policy_params,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A parsed sweep: base scenarios, axes, explicit trials."""

    name: str
    description: str
    scenarios: tuple[ScenarioSpec, ...]
    duration_s: float | None
    seeds: tuple[int, ...] | None
    policy_params: dict[str, dict[str, Any]]
    policies: tuple[str, ...]
    scenario_axes: dict[str, list[Any]]
    param_axes: dict[str, dict[str, list[Any]]]
    explicit: tuple[dict[str, Any], ...] = ()
    source: str = "sweep"

    def expand(self) -> list[TrialSpec]:
        """All trials, in a stable order (scenario, scenario axes, policy, parameters, seed)."""
        return expand(self)


def run_key(scenario: dict[str, Any], policy: str, policy_params: dict[str, Any], seed: int) -> str:
    """Hash of the expanded trial and the package version (20 hex digits)."""
    blob = json.dumps(
        {"scenario": scenario, "policy": policy, "params": policy_params, "seed": seed, "version": package_version()},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --- parsing ------------------------------------------------------------------------------------


def load_sweep(path: str | Path) -> SweepSpec:
    """Load and validate a sweep TOML; ValueError with one line naming the field on any problem."""
    path = Path(path)
    data = read_toml(path)
    data.setdefault("name", path.stem)
    return parse_sweep(data, str(path), path.parent)


def check_sweep_name(name: Any, source: str = "sweep") -> str:
    """A sweep name, which becomes the results directory ``vcoal-results/NAME``: 1 to 80 characters
    with at least one letter or digit, so it can never be ``.`` or ``..`` (the results root or the
    directory above it)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 80 or not any(c.isalnum() for c in name):
        raise ValueError(f"{source}: name: {name!r}: expected 1 to 80 characters with at least one letter or digit "
                         "(it names the results directory)")
    return name


def parse_sweep(data: dict[str, Any], source: str = "sweep", base_dir: Path | None = None) -> SweepSpec:
    """Validate a sweep mapping (see the module docstring for the keys)."""
    base_dir = base_dir or Path.cwd()
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ValueError(f"{source}: {unknown[0]}: unknown key; accepted: {', '.join(_TOP_KEYS)}")
    name = check_sweep_name(data.get("name", "sweep"), source)
    scenarios = _scenarios(data.get("scenario"), "scenario", source, base_dir)
    duration_s = data.get("duration_s")
    if duration_s is not None and (
        isinstance(duration_s, bool) or not isinstance(duration_s, int | float) or not 0 < duration_s <= 3600
    ):
        raise ValueError(f"{source}: duration_s: {duration_s!r} out of range (0, 3600]")
    if not isinstance(data.get("axes") or {}, dict):
        raise ValueError(f"{source}: axes: expected a table")
    axes = dict(data.get("axes") or {})
    seeds_raw = axes.pop("seed", axes.pop("seeds", data.get("seeds")))
    seeds = _seeds(seeds_raw, "seeds", source) if seeds_raw is not None else None
    policies = _policies(axes.pop("policy", axes.pop("policies", None)), source)
    base_params = data.get("params") or {}
    if not isinstance(base_params, dict) or not all(isinstance(v, dict) for v in base_params.values()):
        raise ValueError(f"{source}: params: expected tables [params.POLICY] of parameter = value")
    for pol in base_params:
        _check_policy_name(pol, f"params.{pol}", source)
    param_axes = _param_axes(axes.pop("params", {}), source)
    scenario_axes = _flatten_axes(axes, "", source)
    explicit = tuple(_explicit(t, i, source, base_dir) for i, t in enumerate(data.get("trials") or []))
    spec = SweepSpec(
        name=name,
        description=str(data.get("description", "")),
        scenarios=scenarios,
        duration_s=float(duration_s) if duration_s is not None else None,
        seeds=seeds,
        policy_params={k: dict(v) for k, v in base_params.items()},
        policies=policies,
        scenario_axes=scenario_axes,
        param_axes=param_axes,
        explicit=explicit,
        source=source,
    )
    count = _count(spec)
    if count > MAX_TRIALS:
        raise ValueError(f"{source}: axes: {count} trials; accepted at most {MAX_TRIALS}")
    return spec


def _scenarios(value: Any, where: str, source: str, base_dir: Path) -> tuple[ScenarioSpec, ...]:
    if value is None:
        raise ValueError(f"{source}: {where}: missing; give a scenario file, a glob, a list of them, or a table")
    if isinstance(value, dict):
        return (parse_scenario(dict(value), f"{source}: {where}", base_dir),)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise ValueError(f"{source}: {where}: expected a path, a glob, a non-empty list of them, or a table")
    out: list[ScenarioSpec] = []
    for item in items:
        pattern = item if Path(item).is_absolute() else str(base_dir / item)
        paths = sorted(globlib.glob(pattern)) if any(c in item for c in "*?[") else [pattern]
        if not paths:
            raise ValueError(f"{source}: {where}: {item!r} matches no file")
        out.extend(load_scenario(p) for p in paths)
    return tuple(out)


def _seeds(value: Any, where: str, source: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 100_000:
            raise ValueError(f"{source}: {where}: count {value} out of range [1, 100000]")
        return tuple(range(1, value + 1))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        bad = [s for s in value if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"{source}: {where}: {bad[0]} out of range [0, {MAX_SEED}]")
        return tuple(value)
    raise ValueError(f"{source}: {where}: expected a non-empty list of integers in [0, {MAX_SEED}] or a count")


def _check_policy_name(name: Any, where: str, source: str) -> str:
    if not isinstance(name, str) or name not in POLICIES:
        raise ValueError(f"{source}: {where}: {name!r} unknown; registered: {', '.join(POLICIES)}")
    return name


def _policies(value: Any, source: str) -> tuple[str, ...]:
    if value is None:
        return ("static",)
    if value == "all":
        return tuple(POLICIES)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"{source}: axes.policy: expected a non-empty list of policy names or \"all\"")
    return tuple(_check_policy_name(p, "axes.policy", source) for p in items)


def _param_axes(value: Any, source: str) -> dict[str, dict[str, list[Any]]]:
    if not isinstance(value, dict):
        raise ValueError(f"{source}: axes.params: expected tables axes.params.POLICY.PARAM = [values]")
    out: dict[str, dict[str, list[Any]]] = {}
    for pol, table in value.items():
        _check_policy_name(pol, f"axes.params.{pol}", source)
        if not isinstance(table, dict):
            raise ValueError(f"{source}: axes.params.{pol}: expected a table of PARAM = [values]")
        for param, values in table.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{source}: axes.params.{pol}.{param}: expected a non-empty list of values")
        out[pol] = {k: list(v) for k, v in table.items()}
    return out


def _flatten_axes(table: dict[str, Any], prefix: str, source: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_axes(value, f"{path}.", source))
        elif isinstance(value, list) and value:
            out[path] = list(value)
        else:
            raise ValueError(f"{source}: axes.{path}: expected a non-empty list of values")
    return out


def _explicit(entry: Any, index: int, source: str, base_dir: Path) -> dict[str, Any]:
    where = f"trials[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{source}: {where}: expected a table")
    unknown = sorted(set(entry) - set(_TRIAL_KEYS))
    if unknown:
        raise ValueError(f"{source}: {where}.{unknown[0]}: unknown key; accepted: {', '.join(_TRIAL_KEYS)}")
    out: dict[str, Any] = {"policy": _check_policy_name(entry.get("policy", "static"), f"{where}.policy", source)}
    out["params"] = entry.get("params") or {}
    if not isinstance(out["params"], dict):
        raise ValueError(f"{source}: {where}.params: expected a table of parameter = value")
    seeds = entry.get("seeds", [entry["seed"]] if "seed" in entry else None)
    out["seeds"] = _seeds(seeds, f"{where}.seeds", source) if seeds is not None else None
    out["set"] = entry.get("set") or {}
    if not isinstance(out["set"], dict):
        raise ValueError(f"{source}: {where}.set: expected a table of \"dotted.path\" = value")
    out["scenarios"] = (
        _scenarios(entry["scenario"], f"{where}.scenario", source, base_dir) if "scenario" in entry else None
    )
    return out


# --- expansion ----------------------------------------------------------------------------------


def _count(spec: SweepSpec) -> int:
    n_axes = 1
    for values in spec.scenario_axes.values():
        n_axes *= len(values)
    per_policy = 0
    for pol in spec.policies:
        n = 1
        for values in spec.param_axes.get(pol, {}).values():
            n *= len(values)
        per_policy += n
    seeds = len(spec.seeds) if spec.seeds else 1
    return len(spec.scenarios) * n_axes * per_policy * seeds + len(spec.explicit)


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _apply(base: ScenarioSpec, overrides: dict[str, Any], duration_s: float | None, where: str) -> ScenarioSpec:
    over = dict(overrides)
    if duration_s is not None:
        over.setdefault("duration_s", duration_s)
    if "duration_s" in over and "warmup_s" not in over and base.warmup_s > 0:
        over["warmup_s"] = base.warmup_s * float(over["duration_s"]) / base.duration_s
    try:
        return base.with_overrides(over) if over else base
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _make_trial(
    spec: SweepSpec, scen: ScenarioSpec, axes: dict[str, Any], policy: str, params: dict[str, Any], seed: int
) -> TrialSpec:
    data = scen.model_dump(mode="json")
    key = run_key(data, policy, params, seed)
    parts = [scen.name, policy]
    parts += [f"{_short(k)}={v}" for k, v in axes.items()]
    parts.append(f"seed={seed}")
    return TrialSpec(
        run_key=key,
        sweep=spec.name,
        label=" ".join(parts),
        scenario=data,
        scenario_name=scen.name,
        spec_hash=scen.spec_hash(),
        policy=policy,
        policy_params=params,
        seed=seed,
        duration_s=scen.duration_s,
        axes=axes,
    )


def _validated_params(spec: SweepSpec, policy: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        make_policy(policy, params)
    except ValueError as exc:
        raise ValueError(f"{spec.source}: {where}: {exc}") from None
    return params


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """Expand a sweep into trials; duplicates (same run key) are kept once, first occurrence wins.

    Raises ValueError with one line when an axis value makes an invalid scenario or parameter set.
    """
    trials: dict[str, TrialSpec] = {}
    policy_sets = []  # (policy, its axis values, validated parameters): validated once, not per scenario
    for policy in spec.policies:
        p_axes = spec.param_axes.get(policy, {})
        for p_combo in itertools.product(*p_axes.values()):
            p_values = dict(zip(p_axes, p_combo, strict=True))
            params = {**spec.policy_params.get(policy, {}), **p_values}
            policy_sets.append((policy, p_values, _validated_params(spec, policy, params, f"params of {policy}")))
    axis_names = list(spec.scenario_axes)
    for base in spec.scenarios:
        for combo in itertools.product(*spec.scenario_axes.values()):
            axes = dict(zip(axis_names, combo, strict=True))
            where = f"{spec.source}: axes " + ", ".join(f"{k}={v!r}" for k, v in axes.items())
            scen = _apply(base, axes, spec.duration_s, where)
            seeds = spec.seeds or (scen.seed,)
            for policy, p_values, params in policy_sets:
                labels = {**axes, **{f"{policy}.{k}": v for k, v in p_values.items()}}
                for seed in seeds:
                    t = _make_trial(spec, scen, labels, policy, params, seed)
                    trials.setdefault(t.run_key, t)
    for i, entry in enumerate(spec.explicit):
        where = f"{spec.source}: trials[{i}]"
        params = {**spec.policy_params.get(entry["policy"], {}), **entry["params"]}
        params = _validated_params(spec, entry["policy"], params, f"trials[{i}].params")
        for base in entry["scenarios"] or spec.scenarios:
            scen = _apply(base, entry["set"], spec.duration_s, f"{where}.set")
            for seed in entry["seeds"] or spec.seeds or (scen.seed,):
                t = _make_trial(spec, scen, dict(entry["set"]), entry["policy"], params, seed)
                trials.setdefault(t.run_key, t)
    return list(trials.values())


def single_trial(
    scenario: ScenarioSpec,
    policy: str = "static",
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    duration_s: float | None = None,
) -> SweepSpec:
    """A sweep of one (what ``vcoal sim`` runs through the same path as ``vcoal sweep``); a
    ``duration_s`` scales the warm-up with it, as a sweep's does."""
    return SweepSpec(
        name=scenario.name,
        description="single run",
        scenarios=(scenario,),
        duration_s=duration_s,
        seeds=(seed,) if seed is not None else None,
        policy_params={policy: dict(params or {})},
        policies=(_check_policy_name(policy, "policy", "run"),),
        scenario_axes={},
        param_axes={},
        source="run",
    )
