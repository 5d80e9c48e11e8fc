"""Every registered policy: defaults, bounds, determinism, supported fields, parameter errors."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from test_policy_support import run_closed_loop
from vcoal.model import CoalesceParams, Policy, PolicyContext, Site, SiteInfo, Slo, TenantInfo
from vcoal.model.params import PARAM_RANGES
from vcoal.policies import POLICIES, make_policy

SITES = [Site.parse(s) for s in ("nic:q0", "nic:q1", "backend:g1", "frontend:g1", "backend:g2", "frontend:g2")]
VETH_KNOBS = frozenset({"napi_defer_hard_irqs", "gro_flush_timeout_ns"})


def small_context(supported: frozenset[str] | None = None) -> PolicyContext:
    """Two guests, one NIC queue each; g1 is a latency tenant, g2 throughput-seeking."""
    initial = CoalesceParams(rx_usecs=8, rx_frames=32, tx_usecs=8, tx_frames=32)
    paths = {
        "g1": (SITES[0], SITES[2], SITES[3]),
        "g2": (SITES[1], SITES[4], SITES[5]),
    }
    tenants = {
        "g1": TenantInfo("g1", Slo(p99_us=200.0), paths["g1"], "request_response"),
        "g2": TenantInfo("g2", Slo(), paths["g2"], "bulk"),
    }
    sites = {
        s: SiteInfo(s, initial, tuple(g for g, path in paths.items() if s in path), supported) for s in SITES
    }
    return PolicyContext(sites, tenants, {})


def as_data(decisions):
    return [
        None if d is None else ({str(s): p.to_dict() for s, p in d.params.items()}, [r.to_dict() for r in d.records])
        for d in decisions
    ]


def test_the_baselines_are_registered():
    assert {"off", "static", "net_dim", "intel_itr", "napi_defer", "dxzl"} <= set(POLICIES)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_declares_itself(name):
    cls = POLICIES[name]
    assert cls.name == name and cls.description and "\n" not in cls.description
    assert dataclasses.is_dataclass(cls.Params)
    assert isinstance(make_policy(name), Policy)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_defaults_run_the_canned_trace_within_bounds(name):
    ctx = small_context()
    decisions = run_closed_loop(make_policy(name), ctx)
    assert len(decisions) > 20
    for d in decisions:
        if d is None:
            continue
        assert set(d.params) <= set(ctx.sites)
        for p in d.params.values():
            assert isinstance(p, CoalesceParams)
            for field, (lo, hi) in PARAM_RANGES.items():
                assert lo <= getattr(p, field) <= hi, (field, p)
        for r in d.records:
            assert r.site in ctx.sites and r.reason
            if r.site in d.params:
                assert r.params == d.params[r.site]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_identical_input_gives_identical_decisions(name):
    first = as_data(run_closed_loop(make_policy(name), small_context(), seed=7))
    second = as_data(run_closed_loop(make_policy(name), small_context(), seed=7))
    assert first == second


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_unsupported_fields_are_never_set(name):
    ctx = small_context(VETH_KNOBS)
    for d in run_closed_loop(make_policy(name), ctx):
        for site, p in (d.params.items() if d is not None else ()):
            initial = ctx.sites[site].initial
            for field in CoalesceParams.field_names():
                if field not in VETH_KNOBS:
                    assert getattr(p, field) == getattr(initial, field), (name, site, field)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_unknown_parameter_is_rejected_in_one_line(name):
    with pytest.raises(ValueError, match="no_such_knob") as exc:
        make_policy(name, {"no_such_knob": 1})
    assert "\n" not in str(exc.value)


_WRONG = {int: "x", float: "x", str: 3, bool: 3, dict: 3}


def _typed_fields(name):
    cls = POLICIES[name].Params
    hints = typing.get_type_hints(cls)
    return [(name, f.name, _WRONG[hints[f.name]]) for f in dataclasses.fields(cls) if hints[f.name] in _WRONG]


@pytest.mark.parametrize(("name", "field", "value"), [c for n in sorted(POLICIES) for c in _typed_fields(n)])
def test_wrongly_typed_parameter_is_rejected_naming_the_field(name, field, value):
    with pytest.raises(ValueError, match=field) as exc:
        make_policy(name, {field: value})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("net_dim", {"start_profile": 9}, "start_profile"),
        ("net_dim", {"mode": "eqe+cqe"}, "mode"),
        ("intel_itr", {"itr_mode": 4}, "itr_mode"),
        ("intel_itr", {"variant": "i40e"}, "variant"),
        ("napi_defer", {"gro_flush_timeout_ns": -5}, "gro_flush_timeout_ns"),
        ("dxzl", {"ratio": 1.5}, "ratio"),
    ],
)
def test_out_of_range_parameter_is_rejected_naming_the_field(name, params, field):
    with pytest.raises(ValueError, match=f"policy {name}: {field}") as exc:
        make_policy(name, params)
    assert "\n" not in str(exc.value)
