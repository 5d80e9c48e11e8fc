"""Verification of the ``qos`` controller's changes: realised vs predicted saving and latency, revert.

Every adopted change predicted to save CPU (``relax``) is checked on every *chain* it gives more
delay (a saving bought with latency; a chain whose delay falls is not checked) (a gate
belongs to exactly one chain, and chains do not feed each other, so each chain's counters judge the
gates changed on it): its predicted saving (fraction of that chain's corrected CPU before the change)
against the realised one, measured against a counterfactual (the old setting's measured ratio times
the model's prediction of the old setting at each window's own rates, so a load drift does not read
as a saving). The test is sequential: after every window, a chain whose realised saving falls short
of ``verify_fraction`` of its predicted one by more than ``VERIFY_Z`` standard errors of the
measurement (the old ratio's per-window noise over its windows and the after windows' spread, each
at least ``NOISE_FLOOR`` relative) fails; one that exceeds it by as much passes; the change is
concluded as soon as a chain fails or all pass (on quiet counters after one window, so verifying
does not slow the controller down), else after ``verify_windows`` windows, when a shortfall still
within the noise is kept, said so. A failed chain's gates are reverted. Every
changed gate is reverted when a tenant's mean measured p99 rose more than ``verify_slack_us`` beyond
the change's predicted rise and beyond ``VERIFY_Z`` standard errors of the p99 windows' spread before
the change (a 2-vCPU host's window p99 moves by 100s of µs with no change at all), and its mean now
exceeds its limit (target less margin). A revert restores only the reverted gates' fields, sets their efficacy
to the realised fraction of the modelled saving (``Evidence.credit``, the site's model corrected) and
freezes them for ``retry_windows`` windows (the cool-down); a change kept beyond the noise moves the
efficacy halfway toward what it realised (one kept within the noise leaves it). A verification whose load jumps by more than ``phase_change_ratio`` is
abandoned, not judged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from vcoal.model.params import CoalesceParams
from vcoal.model.stats import WindowStats
from vcoal.model.units import NS_PER_S, Layer, Site
from vcoal.policies._qos_evidence import NOISE_FLOOR, setting_key
from vcoal.policies._qos_plan import Evaluation, Planner

VERIFY_Z = 2.0  # standard errors a shortfall must exceed to revert


@dataclass
class ChainCheck:
    """One chain of a change under verification (independent of the other chains' checks)."""

    window: int  # the window after which the change was decided
    gates: tuple[str, ...]  # gate keys changed on this chain
    old: dict[str, dict]  # gate key -> its fields before the change
    predicted_fraction: float  # predicted saving / corrected chain CPU before the change
    old_ratio: float  # measured / predicted at the old setting (its last window, at the burst factor kept)
    old_n: float  # windows behind it
    old_cv: float  # its relative per-window noise
    load_pps: float  # packets per second into the chain when the change was decided
    predicted_added: dict[str, float]  # tenant of the chain -> added p99 (µs) predicted by the change
    before_p99: dict[str, float]  # tenant of the chain -> mean measured p99 before the change
    measured: list[float] = field(default_factory=list)  # per window: measured CPU fraction
    counterfactual: list[float] = field(default_factory=list)  # per window: the old setting's
    modelled: list[float] = field(default_factory=list)  # per window: the new setting's (model x old ratio)
    after_p99: dict[str, list[float]] = field(default_factory=dict)
    before_sd: dict[str, tuple[float, int]] = field(default_factory=dict)  # tenant -> (p99 sd, windows) before

    def judge(self, verify_fraction: float, final: bool) -> tuple[str, float, float, str]:
        """(status, realised fraction, modelled fraction, text) after the windows so far: ``revert``
        (short beyond the noise), ``keep`` (delivered beyond the noise, or ``final``) or ``open``."""
        m, cf, mod = sum(self.measured), sum(self.counterfactual), sum(self.modelled)
        realised = 1.0 - m / cf if cf > 0 else 0.0
        modelled = 1.0 - mod / cf if cf > 0 else 0.0
        ys = [a / b for a, b in zip(self.measured, self.counterfactual, strict=True) if b > 0]
        cv_after = max(NOISE_FLOOR, self.old_cv)
        if len(ys) >= 2:
            mean_y = sum(ys) / len(ys)
            sd_y = math.sqrt(sum((y - mean_y) ** 2 for y in ys) / (len(ys) - 1))
            cv_after = max(NOISE_FLOOR, sd_y / mean_y if mean_y > 0 else NOISE_FLOOR)
        se = math.sqrt(max(NOISE_FLOOR, self.old_cv) ** 2 / max(1.0, self.old_n) + cv_after**2 / max(1, len(ys)))
        shortfall = verify_fraction * self.predicted_fraction - realised
        text = f"realised saving {realised * 100:+.1f}% of {self.predicted_fraction * 100:+.1f}% predicted"
        if shortfall > VERIFY_Z * se:
            return "revert", realised, modelled, text + f" (short by more than {VERIFY_Z:g} s.e. = {VERIFY_Z * se * 100:.1f}%)"
        if -shortfall > VERIFY_Z * se:
            return "keep", realised, modelled, text
        if not final:
            return "open", realised, modelled, text
        return "keep", realised, modelled, text + f" (within the noise: s.e. {se * 100:.1f}%)"

    def latency(self, slack_us: float, limits: dict[str, float]) -> list[str]:
        """Tenants whose mean measured p99 rose more than predicted + ``slack_us`` + ``VERIFY_Z``
        standard errors of the difference of means (the per-window p99 spread seen before the change)
        and now exceeds its limit (p99 target less margin; tenants without one are not judged). A rise
        beyond the prediction that stays within the limit is the learned base's to absorb."""
        out = []
        for t, v in sorted(self.after_p99.items()):
            after = sum(v) / len(v)
            rise = after - self.before_p99[t]
            sd, n = self.before_sd.get(t, (0.0, 1))
            noise = VERIFY_Z * sd * math.sqrt(1.0 / n + 1.0 / len(v))
            if rise > self.predicted_added.get(t, 0.0) + slack_us + noise and after > limits.get(t, math.inf):
                out.append(f"{t} p99 +{rise:.1f}us (predicted +{self.predicted_added.get(t, 0.0):.1f}us"
                           + (f", noise {noise:.1f}us)" if noise > 0 else ")"))
        return out


def start(q, index: int, planner: Planner, cur: Evaluation, plan: Evaluation,
          changed: dict[Site, CoalesceParams]) -> dict[str, ChainCheck]:
    """The checks of a relaxing change of the controller ``q`` (a ``Qos``): one per chain that gets
    more delay, has a predicted saving and a measured old setting to compare with."""
    moved = tuple(k for k, g in q.gates.items() if g.site in changed and any(
        getattr(changed[g.site], f) != getattr(q.current[g.site], f) for f in g.fields()))
    before_p99 = {t: sum(v) / len(v) for t, v in q.p99_recent.items() if v}
    before_sd = {t: (statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for t, v in q.p99_recent.items() if v}
    checks: dict[str, ChainCheck] = {}
    for c in planner.chains:
        gates = tuple(g.key for g in c.gates if g.key in moved)
        before = cur.chains[c.key].cost
        if not gates or before <= 0 or c.lam_pkts <= 0 or plan.chains[c.key].p99_us <= cur.chains[c.key].p99_us + 1e-6:
            continue  # a chain that gets no more delay bought nothing with latency: nothing to check
        key = setting_key(c.key, c.gates, q.current)
        stat = q.evidence.setting.get(key)
        fraction = (before - plan.chains[c.key].cost) / before
        if stat is None or fraction <= 0:
            continue
        old = {k: {f: getattr(q.current[q.gates[k].site], f) for f in q.gates[k].fields()} for k in gates}
        added = {t: plan.chains[c.key].p99_us - cur.chains[c.key].p99_us for t in c.tenants}
        last = q.last_x.get(c.key)  # the last window at the old setting, at the burst factor in force
        ratio, n = (last[1], 1.0) if last is not None and last[0] == key else (stat.mean, min(stat.n, q.evidence.cap))
        checks[c.key] = ChainCheck(index, gates, old, fraction, ratio, n,
                                   stat.rel_sd(), c.lam_pkts * 1e6, added,
                                   {t: before_p99[t] for t in c.tenants if t in before_p99},
                                   before_sd={t: before_sd[t] for t in c.tenants if t in before_sd})
    return checks


def track(q, stats: WindowStats, planner: Planner, ev: Evaluation, measured: dict[str, tuple[float, int, int]]) -> None:
    """One window of every open check of the controller ``q``; concludes the decisive ones."""
    p = q.params
    reverts: list[tuple[str, ChainCheck, str]] = []
    verdicts = []
    limits = {t: st.slo.p99_us * (1.0 - p.slo_margin) for t, st in q.state.items() if st.slo.p99_us is not None}
    for k, chk in list(q.checks.items()):
        m = measured.get(k)
        load = m[1] * NS_PER_S / stats.interval_ns if m is not None else 0.0
        if m is None or abs(load - chk.load_pps) > p.phase_change_ratio * max(chk.load_pps, 1.0):
            del q.checks[k]
            verdicts.append(f"{k} check of window {chk.window} abandoned: load {load:.0f} pps vs "
                            f"{chk.load_pps:.0f} pps when decided")
            continue
        old = {**q.current}
        for g, fields in chk.old.items():
            site = q.gates[g].site
            old[site] = old[site].with_changes(**fields)
        chk.measured.append(m[0])
        chk.counterfactual.append(chk.old_ratio * planner.evaluate(old).chains[k].cost)
        chk.modelled.append(chk.old_ratio * ev.chains[k].cost)
        for t in chk.before_p99:
            ts = stats.tenants.get(t)
            if ts is not None and ts.p99_us is not None and ts.packets >= p.min_samples:
                chk.after_p99.setdefault(t, []).append(ts.p99_us)
        final = len(chk.measured) >= p.verify_windows
        status, realised, modelled, text = chk.judge(p.verify_fraction, final)
        worse = chk.latency(p.verify_slack_us, limits) if final or status != "open" else []
        if status == "open" and not worse:
            continue
        del q.checks[k]
        if modelled > 0 and "within the noise" not in text:  # a verdict within the noise teaches nothing
            q.evidence.credit(chk.gates, realised / modelled, full=status == "revert" or bool(worse))
        text = f"{k} change of window {chk.window} ({len(chk.measured)} windows): {text}"
        if worse:
            text += "; " + ", ".join(worse)
        if status == "revert" or worse:
            reverts.append((k, chk, text))
        else:
            verdicts.append("verified " + text)
    q.verdict = "; ".join(verdicts)
    if reverts:
        _revert(q, reverts)


def _revert(q, reverts: list[tuple[str, ChainCheck, str]]) -> None:
    """Schedule the failed checks' gates back to their old fields and hold them (the cool-down)."""
    now = q.window.index if q.window is not None else 0
    restore: dict[Site, CoalesceParams] = {}
    names = []
    for _, chk, _ in reverts:
        for key, fields in chk.old.items():
            site = q.gates[key].site
            q.frozen[key] = now + q.params.retry_windows
            restore[site] = restore.get(site, q.current[site]).with_changes(**fields)
            names.append(key)
    q.revert = (restore, f"revert {', '.join(names)}: " + "; ".join(t for _, _, t in reverts))


def one_layer(q, planner: Planner, cur: Evaluation, target: dict[Site, CoalesceParams]) -> list[dict[Site, CoalesceParams]]:
    """The candidate changes of the controller ``q`` toward ``target``: a change at the NIC and in the
    guests at once that adds delay is split in its two halves (the controller adopts the better one,
    the other is planned again next window); otherwise ``[target]``. On veth a guest device is polled
    by the NET_RX runs the NIC's polls start, so a NIC change moves the guests' counters too and would
    be credited to (or blamed on) a guest change checked with it."""
    halves = [{s: p for s, p in target.items() if (s.layer is Layer.NIC) == nic and p != q.current[s]}
              for nic in (True, False)]
    if not all(halves):
        return [target]
    full = planner.evaluate(target)
    if not any(full.chains[k].p99_us > cur.chains[k].p99_us + 1e-6 for k in cur.chains):
        return [target]  # it adds no delay anywhere: nothing to check, nothing to split
    return [{**q.current, **h} for h in halves]
