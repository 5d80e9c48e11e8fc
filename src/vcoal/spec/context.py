"""The policy context of a scenario: its sites, tenants, SLOs and paths."""

from __future__ import annotations

from vcoal.model.policy import PolicyContext, SiteInfo, TenantInfo
from vcoal.spec.scenario import ScenarioSpec


def context_from_spec(spec: ScenarioSpec, supported: frozenset[str] | None = None) -> PolicyContext:
    """Build the PolicyContext every environment (sim, testbed) hands to ``Policy.reset``.

    ``supported`` restricts the parameters every site can set (e.g. the testbed's veth hops only
    have the NAPI deferral knobs).
    """
    params = spec.site_params()
    tenants_of: dict = {site: [] for site in params}
    tenants = {}
    for i, g in enumerate(spec.guests):
        path = spec.tenant_path(i)
        for site in path:
            tenants_of[site].append(g.name)
        tenants[g.name] = TenantInfo(g.name, g.slo.to_slo(), path, g.workload.kind)
    sites = {
        site: SiteInfo(site, p, tuple(tenants_of[site]), supported) for site, p in params.items()
    }
    cost = spec.cost.model_dump()
    cost = {k: float(v) for k, v in cost.items() if isinstance(v, int | float)}
    return PolicyContext(sites, tenants, cost, spec.host.profile)
