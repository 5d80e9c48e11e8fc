"""Measured response of the ``qos`` controller: what the host really does at the settings in force.

Measured chain CPU. From a window's site counters, per chain (``_qos_plan.Chain``):
``events * event cost + max(0, polls - events) * poll cost`` where the events are the interrupts of
the direction that wakes the chain's consumer (NIC rx / tx; ``backend:G`` rx, the virtual interrupt;
``frontend:G`` tx, the notification) and the polls are its consumer NAPI's (NIC rx, ``frontend:G`` rx,
``backend:G`` tx). On the veth testbed both are the per-device NAPI polls, so a deferral that does
not remove wake-ups shows as no saving, and one that adds timer polls as a loss.

Estimator (model as prior, measurements as evidence). Each window with at least
``MIN_EVIDENCE_PACKETS`` packets into a chain gives one observation ``x = measured / predicted`` CPU
(clamped to [0, ``MAX_RATIO``]), both at the window's own rates and the setting in force. Two running
statistics of ``x`` are kept, each the mean of its ``n`` windows up to ``prior_weight +
evidence_windows`` windows (an EWMA from then on, so a drifting host is followed) with its variance:
one per chain (all settings) and one per (chain, setting). Predicting a chain at a candidate setting ``s`` when ``r`` is
in force, with ``M`` the model (which already includes the burst factor, ``_qos_burst``):

* the chain ratio shrunk to the model: ``rho = (w0 + n_c * mean_c) / (w0 + n_c)`` (``w0`` =
  ``prior_weight`` windows of the model's ``x = 1``);
* the anchored prior: ``A(s) = rho * (M(r) + e * (M(s) - M(r)))``, where ``e`` is the smallest
  *efficacy* of the gates whose fields differ between ``s`` and ``r`` (1 until a change of that gate
  was verified: the fraction of its modelled saving that it realised);
* where the measurements at ``s`` disagree with it (their mean ratio differs from ``A(s) / M(s)`` by
  more than ``DISAGREE_REL`` relative and ``DISAGREE_Z`` standard errors), shrinkage toward them:
  ``C(s) = (w0 * A(s) + n_s * mean_s * M(s)) / (w0 + n_s)``; otherwise ``C(s) = A(s)`` (settings that
  agree are compared through one chain ratio, so counter noise cannot reorder them).

So a setting never in force is predicted by the model's *change* from what is measured now, scaled
by what the gate has been seen to deliver, and a setting measured often enough by its measurement.

Verification and revert of changes: ``_qos_verify`` (which credits the gates' efficacy here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from vcoal.model.hostpath import hop_kind
from vcoal.model.params import CoalesceParams
from vcoal.model.stats import WindowStats
from vcoal.model.units import Site
from vcoal.policies._qos_model import Costs, Gate, chain_event_cost

MIN_EVIDENCE_PACKETS = 50
MAX_RATIO = 8.0  # largest measured / predicted CPU taken from one window
MAX_EFFICACY = 1.5  # largest realised / modelled saving a gate is credited with
NOISE_FLOOR = 0.03  # smallest relative per-window noise assumed for a ratio
DISAGREE_REL = 0.15  # a setting's measured ratio within this of the anchored one agrees with it...
DISAGREE_Z = 2.0  # ...as does one within this many standard errors
EFFICACY_ALPHA = 0.5  # step of the efficacy toward a verified change's realised fraction


def chain_sites(kind: str, gates: tuple[Gate, ...], profile: str = "xen") -> tuple[Site, str, Site, str]:
    """(site, direction) of a chain's wake-up events and (site, direction) of its consumer's polls:
    the gate and NAPI sites of its hop (``vcoal.model.hostpath``)."""
    hop = hop_kind(profile, kind)
    inst = gates[0].site.instance
    return Site(hop.gate, inst), hop.direction, Site(hop.napi, inst), hop.direction


def measured_chain(kind: str, gates: tuple[Gate, ...], stats: WindowStats, costs: Costs) -> tuple[float, int, int] | None:
    """(CPU fraction, input packets, wake-up events) of one chain in a window, or None when its sites
    are missing."""
    ev_site, ev_dir, poll_site, poll_dir = chain_sites(kind, gates, costs.profile)
    s, c = stats.sites.get(ev_site), stats.sites.get(poll_site)
    if s is None or c is None or not s.interval_ns:
        return None
    d = s.rx if ev_dir == "rx" else s.tx
    polls = (c.rx if poll_dir == "rx" else c.tx).polls
    us = d.interrupts * chain_event_cost(kind, costs) + max(0, polls - d.interrupts) * costs.timer_poll_us
    return us * 1000.0 / s.interval_ns, d.packets, d.interrupts


def setting_key(chain_key: str, gates: tuple[Gate, ...], params: Mapping[Site, CoalesceParams]) -> tuple:
    """The evidence key of a chain at a full assignment: the values of its gates' fields."""
    return (chain_key, *(getattr(params[g.site], f) for g in gates for f in g.fields()))


@dataclass
class Stat:
    """A running mean and variance of ``n`` observations: the plain mean up to ``cap`` observations,
    then an EWMA of gain ``1 / cap`` (recent windows count); ``n`` keeps counting (the evidence weight)."""

    n: float = 0.0
    mean: float = 0.0
    var: float = 0.0

    def add(self, x: float, cap: float) -> None:
        self.n += 1.0
        a = 1.0 / min(self.n, cap)
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    def rel_sd(self) -> float:
        """Relative standard deviation of one observation (at least ``NOISE_FLOOR``)."""
        if self.n < 2 or self.mean <= 0:
            return NOISE_FLOOR
        return max(NOISE_FLOOR, math.sqrt(self.var) / self.mean)


@dataclass
class Evidence:
    """Measured / predicted CPU per chain and per (chain, setting), and per-gate efficacy."""

    prior_weight: float
    evidence_windows: float
    chain: dict[str, Stat] = field(default_factory=dict)
    setting: dict[tuple, Stat] = field(default_factory=dict)
    efficacy: dict[str, float] = field(default_factory=dict)

    @property
    def cap(self) -> float:
        return self.prior_weight + self.evidence_windows

    def add(self, key: tuple, measured: float, predicted: float) -> float:
        """Fold one window's observation (CPU fractions) of the setting ``key`` (chain key first);
        returns its ratio."""
        x = measured / predicted if predicted > 0 else (1.0 if measured <= 0 else MAX_RATIO)
        x = min(MAX_RATIO, max(0.0, x))
        self.chain.setdefault(key[0], Stat()).add(x, self.cap)
        self.setting.setdefault(key, Stat()).add(x, self.cap)
        return x

    def rho(self, chain_key: str) -> float:
        """The chain's measured / predicted ratio shrunk toward the model (1)."""
        s = self.chain.get(chain_key)
        if s is None:
            return 1.0
        return (self.prior_weight + s.n * s.mean) / (self.prior_weight + s.n)

    def factor(self, key: tuple) -> float:
        """The shrunk ratio of one setting (1: the model, when never measured); shown in records."""
        s = self.setting.get(key)
        rho = self.rho(key[0])
        if s is None:
            return rho
        return (self.prior_weight * rho + s.n * s.mean) / (self.prior_weight + s.n)

    def correct(self, key: tuple, model: float, ref_model: float, changed_gates: tuple[str, ...]) -> float:
        """The corrected CPU of a chain at setting ``key`` (model ``model``) when the setting in force
        is predicted ``ref_model`` and differs from it in ``changed_gates`` (module docstring)."""
        e = min((self.efficacy.get(g, 1.0) for g in changed_gates), default=1.0)
        anchored = self.rho(key[0]) * (ref_model + e * (model - ref_model))
        s = self.setting.get(key)
        if s is None or s.n <= 0 or model <= 0 or anchored <= 0:
            return max(0.0, anchored)
        tol = max(DISAGREE_REL, DISAGREE_Z * s.rel_sd() / math.sqrt(min(s.n, self.cap)))
        if abs(s.mean * model / anchored - 1.0) <= tol:
            return anchored  # the measurements agree with the anchored model: no per-setting noise
        w0 = self.prior_weight
        return max(0.0, (w0 * anchored + s.n * s.mean * model) / (w0 + s.n))

    def credit(self, gates: tuple[str, ...], realised_fraction: float, full: bool) -> None:
        """Update the efficacy of ``gates`` from a judged change (``full``: after a revert)."""
        e_obs = min(MAX_EFFICACY, max(0.0, realised_fraction))
        for g in gates:
            old = self.efficacy.get(g, 1.0)
            self.efficacy[g] = e_obs if full else old + EFFICACY_ALPHA * (e_obs - old)


