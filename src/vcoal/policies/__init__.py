"""Coalescing policies and their explicit registry.

``POLICIES`` maps a name to a policy class. Every class has ``name``, ``description``, a frozen
dataclass ``Params`` of typed parameters with defaults, and implements ``vcoal.model.Policy``.
``make_policy(name, params)`` validates parameters (unknown keys and out-of-range values raise
ValueError with one line).
"""

from __future__ import annotations

from typing import Any

from vcoal.policies.base import PolicyBase, params_from_dict
from vcoal.policies.dxzl import Dxzl
from vcoal.policies.intel_itr import IntelItr
from vcoal.policies.napi_defer import NapiDefer
from vcoal.policies.net_dim import NetDim
from vcoal.policies.off import Off
from vcoal.policies.qos import Qos
from vcoal.policies.static import Static

POLICIES: dict[str, type[PolicyBase]] = {
    Off.name: Off,
    Static.name: Static,
    NetDim.name: NetDim,
    IntelItr.name: IntelItr,
    NapiDefer.name: NapiDefer,
    Dxzl.name: Dxzl,
    Qos.name: Qos,
}


def make_policy(name: str, params: dict[str, Any] | None = None) -> PolicyBase:
    """Instantiate a registered policy with validated parameters."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"policy {name!r}: unknown; registered: {', '.join(sorted(POLICIES))}") from None
    return cls(params_from_dict(cls.Params, params or {}, f"policy {name}"))


__all__ = ["POLICIES", "PolicyBase", "make_policy", "params_from_dict"]
