"""Measured response of the ``qos`` controller: per chain and setting, realised vs predicted CPU.

Estimator. For every chain (``_qos_plan.Chain``) and setting of its gates (the gates' fields), a
ratio ``r = measured chain CPU / model-predicted chain CPU``, both at the window's own rates and
the setting in force. The model is the prior: ``r = 1`` with weight ``prior_weight`` windows; each
window with at least ``MIN_EVIDENCE_PACKETS`` packets into the chain adds weight 1 (a running mean),
the weight capped at ``prior_weight + evidence_windows`` (an EWMA from then on). The planner
multiplies a chain's predicted CPU at a setting by its ``r`` (1 for a setting never in force).

Measured chain CPU from the window's site counters: ``events * event cost + max(0, polls - events) *
poll cost`` where the events are the interrupts of the direction that wakes the chain's consumer
(NIC rx / tx; ``backend:G`` rx, the virtual interrupt; ``frontend:G`` tx, the notification) and the
polls are its consumer NAPI's (NIC rx, ``frontend:G`` rx, ``backend:G`` tx). On the veth testbed both
are the per-device NAPI polls, so a deferral that does not remove wake-ups shows as no saving.

Verification. Every adopted change that was predicted to save CPU carries its predicted saving
(per packet, over the chains it touches) and the added p99 of every tenant; over the next
``verify_windows`` windows the realised saving per packet (measured before vs after) and the
tenants' measured p99 are compared: realising less than ``verify_fraction`` of the saving, or a p99
rise more than ``verify_slack_us`` beyond the predicted one, reverts the change and sets the ratio of
that setting to what was measured (full weight): the model of that site is corrected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vcoal.model.params import CoalesceParams
from vcoal.model.stats import WindowStats
from vcoal.model.units import Layer, Site
from vcoal.policies._qos_model import Costs, Gate, chain_event_cost

MIN_EVIDENCE_PACKETS = 50


def chain_sites(kind: str, gates: tuple[Gate, ...]) -> tuple[Site, str, Site, str]:
    """(site, direction) of a chain's wake-up events and (site, direction) of its consumer's polls."""
    first = gates[0].site
    if kind == "nic_rx":
        return first, "rx", first, "rx"
    if kind == "nic_txc":
        return first, "tx", first, "tx"
    g = first.instance
    if kind == "guest_rx":
        return Site(Layer.BACKEND, g), "rx", Site(Layer.FRONTEND, g), "rx"
    return Site(Layer.FRONTEND, g), "tx", Site(Layer.BACKEND, g), "tx"


def measured_chain(kind: str, gates: tuple[Gate, ...], stats: WindowStats, costs: Costs) -> tuple[float, int] | None:
    """(CPU fraction, input packets) of one chain in a window, or None when its sites are missing."""
    ev_site, ev_dir, poll_site, poll_dir = chain_sites(kind, gates)
    s, c = stats.sites.get(ev_site), stats.sites.get(poll_site)
    if s is None or c is None or not s.interval_ns:
        return None
    d = s.rx if ev_dir == "rx" else s.tx
    polls = (c.rx if poll_dir == "rx" else c.tx).polls
    us = d.interrupts * chain_event_cost(kind, costs) + max(0, polls - d.interrupts) * costs.poll_us
    return us * 1000.0 / s.interval_ns, d.packets


def setting_key(chain_key: str, gates: tuple[Gate, ...], params: Mapping[Site, CoalesceParams]) -> tuple:
    """The evidence key of a chain at a full assignment: the values of its gates' fields."""
    return (chain_key, *(getattr(params[g.site], f) for g in gates for f in g.fields()))


@dataclass
class Evidence:
    """Per (chain, setting) ratio of measured to predicted CPU, with its weight."""

    prior_weight: float
    evidence_windows: float
    ratio: dict[tuple, tuple[float, float]] = field(default_factory=dict)

    def factor(self, key: tuple) -> float:
        """The correction of a setting (1: the model, when never measured)."""
        hit = self.ratio.get(key)
        return 1.0 if hit is None else hit[0]

    def add(self, key: tuple, measured: float, predicted: float) -> None:
        """Fold one window's observation (CPU fractions) into the ratio of ``key``."""
        x = measured / predicted if predicted > 0 else (1.0 if measured <= 0 else 4.0)
        r, w = self.ratio.get(key, (1.0, self.prior_weight))
        w = min(w + 1.0, self.prior_weight + self.evidence_windows)
        self.ratio[key] = (r + (x - r) / w, w)

    def set(self, key: tuple, ratio: float) -> None:
        """Replace a setting's ratio by a measured one, at full weight (after a refuted change)."""
        self.ratio[key] = (ratio, self.prior_weight + self.evidence_windows)


@dataclass
class Pending:
    """A change under verification."""

    window: int
    old: dict[Site, CoalesceParams]
    chains: tuple[str, ...]
    predicted_saving_pp: float  # CPU µs per packet, over ``chains``
    predicted_added: dict[str, float]  # tenant -> added p99 (µs) predicted by the change
    before_pp: float  # measured CPU µs per packet over ``chains`` before the change
    before_p99: dict[str, float]
    after: list[tuple[float, float]] = field(default_factory=list)  # (cpu fraction, packets/µs)
    after_p99: dict[str, list[float]] = field(default_factory=dict)
