"""``static``: fixed settings per layer and per site (the testbed oracle's per-path grid)."""

from __future__ import annotations

import random

import pytest

from test_policy_qos import context
from vcoal.model import CoalesceParams, Slo
from vcoal.policies import make_policy

DEFER_50 = {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50_000}


def _decide(params: dict) -> dict[str, CoalesceParams]:
    p = make_policy("static", params)
    p.reset(context({"lat": Slo(p99_us=300.0), "bulk": Slo()}), random.Random(0))
    d = p.decide()
    return {} if d is None else {str(s): v for s, v in d.params.items()}


def test_a_site_table_wins_over_its_layer_and_touches_only_that_site():
    got = _decide({"backend": {"napi_defer_hard_irqs": 1, "gro_flush_timeout_ns": 10_000},
                   "sites": {"backend:bulk": DEFER_50, "frontend:bulk": DEFER_50}})
    assert set(got) == {"backend:lat", "backend:bulk", "frontend:bulk"}
    assert (got["backend:bulk"].napi_defer_hard_irqs, got["backend:bulk"].gro_flush_timeout_ns) == (2, 50_000)
    assert (got["backend:lat"].napi_defer_hard_irqs, got["backend:lat"].gro_flush_timeout_ns) == (1, 10_000)
    assert got["frontend:bulk"].gro_flush_timeout_ns == 50_000


def test_site_tables_are_validated_and_must_name_a_site_of_the_scenario():
    with pytest.raises(ValueError, match="site 'nic'"):
        make_policy("static", {"sites": {"nic": DEFER_50}})
    with pytest.raises(ValueError, match="gro_flush"):
        make_policy("static", {"sites": {"nic:q0": {"gro_flush_timeout_ns": -1}}})
    with pytest.raises(ValueError, match=r"sites\.backend:nosuch: not a site"):
        _decide({"sites": {"backend:nosuch": DEFER_50}})
    assert make_policy("static", {"sites": {}}).is_noop and not make_policy("static", {"sites": {"nic:q0": DEFER_50}}).is_noop
