"""Scenario specification: the TOML a user writes, validated with pydantic.

The same ``ScenarioSpec`` drives the simulator (``vcoal.sim``), the real-kernel testbed
(``vcoal.testbed``) and sweeps (``vcoal.experiments``). Loading rejects unknown keys and
out-of-range values with one line naming the field and the accepted range.
"""

from vcoal.spec.advice import link_warning, placement_line
from vcoal.spec.context import context_from_spec
from vcoal.spec.scenario import (
    CostSpec,
    GuestSpec,
    HostSpec,
    NicSpec,
    ScenarioSpec,
    SloSpec,
    WindowSpec,
    WorkloadSpec,
    load_scenario,
    parse_scenario,
    spec_error_line,
)

__all__ = [
    "CostSpec",
    "GuestSpec",
    "HostSpec",
    "NicSpec",
    "ScenarioSpec",
    "SloSpec",
    "WindowSpec",
    "WorkloadSpec",
    "context_from_spec",
    "link_warning",
    "load_scenario",
    "parse_scenario",
    "placement_line",
    "spec_error_line",
]
