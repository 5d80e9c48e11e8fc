"""Decision records of the ``qos`` controller: one per site per window, naming that site and its tenants.

The reason of a record is ``"<site> set <field old->new ...>, predicted saving here <signed %>"`` or
``"<site> kept"``, then the window's decision (tighten / relax / cut delay / revert / keep, with its
signed objective gain), then for each tenant crossing the site its regime, the cause and its budget.
"""

from __future__ import annotations

from vcoal.model.params import CoalesceParams
from vcoal.model.policy import DecisionRecord
from vcoal.model.units import Site
from vcoal.policies._qos_evidence import setting_key
from vcoal.policies._qos_plan import Evaluation, Planner
from vcoal.policies._qos_regime import INFEASIBLE

DELAY_FIELDS = ("rx_usecs", "rx_frames", "tx_usecs", "tx_frames", "timer", "napi_defer_hard_irqs",
                "gro_flush_timeout_ns")


def site_records(
    self, index: int, planner: Planner, ev: Evaluation, changed: dict[Site, CoalesceParams], reason: str,
    budgets: dict[str, float], why: dict[str, str], cur: Evaluation,
) -> tuple[DecisionRecord, ...]:
    """The records of one decision of the controller ``self`` (a ``Qos``) for every site."""
    preds: dict[Site, dict[str, float]] = {}
    site_cost: dict[Site, float] = {}
    for c in planner.chains:
        cp = ev.chains[c.key]
        for g, sp in zip(c.gates, cp.stages, strict=True):
            d = preds.setdefault(g.site, {})
            d[f"{g.knob}.p99_us"] = sp.p99_us
            d[f"{g.knob}.mean_delay_us"] = sp.mean_us
            d[f"{g.knob}.irq_per_s"] = sp.out_per_us * 1e6
            d[f"{g.knob}.efficacy"] = self.evidence.efficacy.get(g.key, 1.0)
        first = c.gates[0].site
        preds.setdefault(first, {})[f"{c.kind}.cpu_frac"] = cp.cost
        preds[first][f"{c.kind}.correction"] = self.evidence.factor(setting_key(c.key, c.gates, self.current))
        preds[first][f"{c.kind}.burst"] = c.burst
        for g in {g.site for g in c.gates}:
            site_cost[g] = site_cost.get(g, 0.0) + cur.chains[c.key].cost - cp.cost
    records = []
    for site in sorted(self.context.sites):
        info = self.context.sites[site]
        inputs: dict[str, float] = {
            "rx_pps": self.rates.get((site, "rx"), 0.0),
            "tx_pps": self.rates.get((site, "tx"), 0.0),
        }
        s = self.window.sites.get(site) if self.window else None
        if s is not None:
            inputs["rx_irq_per_s"] = s.irq_per_s("rx")
            inputs["tx_irq_per_s"] = s.irq_per_s("tx")
            inputs["cpu_util"] = s.cpu_ns / s.interval_ns if s.interval_ns else 0.0
        predicted = dict(preds.get(site, {}))
        notes = []
        for t in info.tenants:
            st = self.state[t]
            inputs[f"{t}.budget_us"] = budgets.get(t, 0.0)
            inputs[f"{t}.infeasible"] = 1.0 if st.regime == INFEASIBLE else 0.0
            predicted[f"{t}.added_p99_us"] = ev.tenant_p99_us.get(t, 0.0)
            if st.base_us is not None:
                inputs[f"{t}.base_us"] = float(st.base_us)
            if st.measured_p99 is not None:
                inputs[f"{t}.measured_p99_us"] = float(st.measured_p99)
            if st.thr_ratio is not None:
                inputs[f"{t}.throughput_ratio"] = float(st.thr_ratio)
            notes.append(f"tenant {t}: {why.get(t, '')}, budget {budgets.get(t, 0.0):.1f}us")
        if site in changed:
            old, new = self.current[site], changed[site]
            diff = " ".join(f"{k} {getattr(old, k)}->{getattr(new, k)}" for k in DELAY_FIELDS
                            if getattr(old, k) != getattr(new, k))
            action = f"{site} set {diff}, predicted saving here {site_cost.get(site, 0.0) * 100:+.2f}% of a CPU"
        else:
            action = f"{site} kept"
        text = f"{action}; {reason}" + ("; " + "; ".join(notes) if notes else "")
        params = changed.get(site, self.current[site])
        records.append(DecisionRecord(index, site, params, site in changed, text, inputs, predicted))
    return tuple(records)
