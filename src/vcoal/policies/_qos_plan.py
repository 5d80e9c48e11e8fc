"""The ``qos`` planner: evaluate chains of gates, then a greedy budgeted cost minimisation.

``Planner.evaluate(params)`` predicts every chain (per-stage p99 bound, mean delay, interrupt rate,
CPU cost; with ``correct`` given, the CPU corrected by the measured response of ``_qos_evidence``) for
a full assignment of site parameters; a tenant's predicted added p99 is the sum of
the stage bounds of the chains on its path (NIC RX of its queue, its guest RX and guest TX).

``Planner.optimise(budgets)`` starts from no coalescing on every controllable gate and repeatedly
takes the move (one gate to a higher candidate level) with the best CPU saving per µs of added
delay, among the moves that keep every affected tenant within its budget and save at least
``min_gain`` of a CPU. A move on a shared NIC gate adds delay to every tenant of the queue, so the
tightest tenant bounds it. Ties break by gate order, so the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from vcoal.model.hostpath import profile_of
from vcoal.model.params import CoalesceParams
from vcoal.model.units import Site
from vcoal.policies._qos_model import (
    Costs,
    Gate,
    StagePred,
    chain_event_cost,
    level_params,
    share_events,
    stage,
)


@dataclass(frozen=True, slots=True)
class Chain:
    """Gates in series with their input rate and the tenants whose latency they add to."""

    key: str
    kind: str  # nic_rx | nic_txc | guest_rx | guest_tx
    gates: tuple[Gate, ...]
    tenants: tuple[str, ...]
    lam_pkts: float  # input packets per µs (own packets for guest chains)
    feed: str | None = None  # chain whose output events feed this one (guest_rx <- nic_rx)
    work_us: float | None = None  # per-packet work at the first stage, when known
    burst: float = 1.0  # on-rate / mean rate of its input (``_qos_burst``): 1 = Poisson at the mean


@dataclass(frozen=True, slots=True)
class ChainPred:
    """Prediction of one chain."""

    stages: tuple[StagePred, ...]
    p99_us: float
    mean_us: float
    out_per_us: float
    cost: float  # CPU fraction (µs of CPU per µs)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Predictions for a full assignment of site parameters."""

    chains: Mapping[str, ChainPred]
    tenant_p99_us: Mapping[str, float]
    cost: float


def _quantised(lam: float) -> float:
    """An input rate to 5 significant digits: a persistent memo, and decisions blind to float noise."""
    return float(f"{lam:.5g}")


class Planner:
    """Chains, candidate levels and the in-force parameters of one decision."""

    def __init__(
        self,
        chains: list[Chain],
        levels: Mapping[str, list[dict]],
        gates: Mapping[str, Gate],
        current: Mapping[Site, CoalesceParams],
        supported: Mapping[Site, frozenset[str] | None],
        costs: Costs,
        memo: dict | None = None,
        correct: Callable[[tuple, float, float, tuple[str, ...]], float] | None = None,
    ) -> None:
        order = {h.chain: i for i, h in enumerate(profile_of(costs.profile).hops)}
        self.chains = sorted(chains, key=lambda c: (order.get(c.kind, len(order)), c.key))
        self.by_key = {c.key: c for c in self.chains}
        self.levels = {k: v for k, v in levels.items() if len(v) >= 2}
        self.gates = gates
        self.current = dict(current)
        self.supported = supported
        self.costs = costs
        self.correct = correct  # measured response: corrected CPU of a (chain, setting) (_qos_evidence)
        self.gate_order = sorted(self.levels)
        self._gate_chains: dict[str, list[str]] = {k: [] for k in gates}
        for c in self.chains:
            for g in c.gates:
                self._gate_chains.setdefault(g.key, []).append(c.key)
        self._dependents: dict[str, list[str]] = {}
        for c in self.chains:
            if c.feed is not None:
                self._dependents.setdefault(c.feed, []).append(c.key)
        self._tenant_chains: dict[str, list[str]] = {}
        for c in self.chains:
            for t in c.tenants:
                self._tenant_chains.setdefault(t, []).append(c.key)
        # per chain: its gates' (key, site, fields getter) and their params in force (the evidence's
        # reference); every site is the very key object of the parameter dicts (found by identity,
        # compared with ``is``)
        canon = {site: site for site in self.current}
        self._site = {k: canon.setdefault(g.site, g.site) for k, g in gates.items()}
        self._fields = {c.key: tuple((g.key, canon[g.site], attrgetter(*g.fields())) for g in c.gates)
                        for c in self.chains}
        self._ref_ps = {c.key: tuple(self.current[site] for _, site, _ in self._fields[c.key]) for c in self.chains}
        self._ref_vals = {c.key: self._values(c, self._ref_ps[c.key]) for c in self.chains}
        # a chain's input rate quantised, for a chain no other feeds
        self._lam0 = {c.key: _quantised(c.lam_pkts) for c in self.chains}
        self._ev_cost: dict[str, float] = {}
        memo = memo if memo is not None else {}
        if sum(len(v) for v in memo.values()) > 200_000:  # a bound on the persistent memo
            memo.clear()
        self._memo: dict = memo.setdefault("chains", {})
        self._lvl_memo: dict = memo.setdefault("levels", {})
        # a chain's whole prediction (corrected) by (chain, its gates' field values, input rate): the
        # greedy search asks for the same ones again after every move; valid while this planner lives
        self._final: dict = {}

    # --- evaluation ------------------------------------------------------------------------------

    def params_for(self, idx: Mapping[str, int]) -> dict[Site, CoalesceParams]:
        """In-force parameters with the chosen level of every gate in ``idx`` applied."""
        out = dict(self.current)
        for key, i in idx.items():
            g = self.gates[key]
            out[g.site] = level_params(out[g.site], self.levels[key][i], self.supported.get(g.site))
        return out

    def _chain(self, c: Chain, params: Mapping[Site, CoalesceParams], feed: ChainPred | None,
               override: tuple[Site, CoalesceParams] | None = None) -> ChainPred:
        src = None if c.feed is None or feed is None else self.by_key.get(c.feed)
        if src is None or src.lam_pkts <= 0:
            lam = self._lam0[c.key]
        else:
            polls = feed.out_per_us + sum(s.polls_per_us for s in feed.stages)  # wake-ups and timer polls
            lam = _quantised(share_events(min(polls, src.lam_pkts), src.lam_pkts, c.lam_pkts))
        fields = self._fields[c.key]
        if override is None:
            ps = tuple([params[site] for _, site, _ in fields])
        else:
            o_site, o_params = override
            ps = tuple([o_params if site is o_site else params[site] for _, site, _ in fields])
        vals = self._values(c, ps)
        final_key = (c.key, vals, lam)
        hit = self._final.get(final_key)
        if hit is not None:
            return hit
        hit = self._predict_memo(c, ps, lam, vals)
        if self.correct is not None:
            ref_vals = self._ref_vals[c.key]
            changed = tuple(gk for (gk, _, _), v, r in zip(self._fields[c.key], vals, ref_vals, strict=True) if v != r)
            ref = hit if not changed else self._predict_memo(c, self._ref_ps[c.key], lam, ref_vals)
            key = (c.key, *(v for gate_vals in vals for v in gate_vals))  # setting_key's layout
            cost = self.correct(key, hit.cost, ref.cost, changed)
            if cost != hit.cost:
                hit = ChainPred(hit.stages, hit.p99_us, hit.mean_us, hit.out_per_us, cost)
        self._final[final_key] = hit
        return hit

    def _values(self, c: Chain, ps: tuple[CoalesceParams, ...]) -> tuple[tuple, ...]:
        """The values of the fields each gate of ``c`` owns (all that its prediction reads of ``ps``)."""
        return tuple([get(p) for (_, _, get), p in zip(self._fields[c.key], ps, strict=True)])

    def _predict_memo(self, c: Chain, ps: tuple[CoalesceParams, ...], lam: float, vals: tuple) -> ChainPred:
        memo_key = (c.key, vals, round(lam, 9), c.burst, c.work_us)
        hit = self._memo.get(memo_key)
        if hit is None:
            hit = self._memo[memo_key] = self._predict(c, ps, lam)
        return hit

    def chain_out(self, c: Chain, ps: tuple[CoalesceParams, ...], lam: float) -> float:
        """Output events per µs of a chain fed by Poisson packets at ``lam`` per µs (no burst)."""
        lam = _quantised(lam)
        flat = Chain(c.key, c.kind, c.gates, c.tenants, lam, None, c.work_us, 1.0)
        return self._predict_memo(flat, ps, lam, self._values(c, ps)).out_per_us

    def _predict(self, c: Chain, ps: tuple[CoalesceParams, ...], lam: float) -> ChainPred:
        """The chain at its input rate; with a burst factor b the stages see the on-rate ``b * lam``
        (delays as in a burst) and events, polls and CPU are scaled by the duty cycle ``1 / b``."""
        ev_cost = self._ev_cost.get(c.kind)
        if ev_cost is None:
            ev_cost = self._ev_cost[c.kind] = chain_event_cost(c.kind, self.costs)
        preds = []
        b = max(1.0, c.burst)
        pkts = c.lam_pkts * b
        lam *= b
        for i, (g, p) in enumerate(zip(c.gates, ps, strict=True)):
            k = pkts / lam if lam > 0 else 1.0
            work = c.work_us if i == 0 else None
            pred = stage(g, p, lam, k, work, ev_cost)
            preds.append(pred)
            lam = pred.out_per_us
        if b > 1.0:
            preds = [StagePred(s.p99_us, s.mean_us, s.out_per_us / b, s.polls_per_us / b) for s in preds]
            lam /= b
        cost = lam * ev_cost + sum(s.polls_per_us for s in preds) * self.costs.timer_poll_us
        p99 = sum(s.p99_us for s in preds)
        return ChainPred(tuple(preds), p99, sum(s.mean_us for s in preds), lam, cost)

    def evaluate(self, params: Mapping[Site, CoalesceParams]) -> Evaluation:
        """Predict every chain and every tenant's added p99 for ``params``."""
        preds: dict[str, ChainPred] = {}
        for c in self.chains:
            preds[c.key] = self._chain(c, params, preds.get(c.feed) if c.feed else None)
        return Evaluation(preds, self._tenant_delays(preds, self._tenant_chains), sum(p.cost for p in preds.values()))

    def _tenant_delays(self, preds: Mapping[str, ChainPred], which: Mapping[str, list[str]]) -> dict[str, float]:
        return {t: sum(preds[k].p99_us for k in keys) for t, keys in which.items()}

    # --- optimisation ----------------------------------------------------------------------------

    def _affected(self, gate_key: str) -> list[str]:
        keys = list(self._gate_chains.get(gate_key, []))
        for k in list(keys):
            keys.extend(d for d in self._dependents.get(k, []) if d not in keys)
        return [c.key for c in self.chains if c.key in keys]

    def _level(self, key: str, base: CoalesceParams, lv: int) -> CoalesceParams:
        memo_key = (key, base, lv)
        hit = self._lvl_memo.get(memo_key)
        if hit is None:
            g = self.gates[key]
            hit = level_params(base, self.levels[key][lv], self.supported.get(g.site))
            self._lvl_memo[memo_key] = hit
        return hit

    def _moves(self, key: str, idx: Mapping[str, int], params: Mapping[Site, CoalesceParams],
               preds: Mapping[str, ChainPred], chains: list[str], min_gain: float,
               prices: Mapping[str, float]) -> list[tuple]:
        """Every upward move of one gate worth its saving: (efficiency, level, site params, new chain
        preds, (tenant, Δp99) of the tenants it delays). A move must save ``min_gain`` and the price of
        the delay it adds; its efficiency is the saving per µs of the largest delay it adds."""
        site = self._site[key]
        old_cost = sum(preds[c].cost for c in chains)
        out = []
        for lv in range(idx[key] + 1, len(self.levels[key])):
            site_params = self._level(key, params[site], lv)
            new = self._reeval(chains, params, preds, (site, site_params))
            saving = old_cost - sum(new[c].cost for c in chains)
            if saving < min_gain:
                continue
            grow: dict[str, float] = {}
            for c in chains:
                dp = new[c].p99_us - preds[c].p99_us
                for t in self.by_key[c].tenants:
                    grow[t] = grow.get(t, 0.0) + dp
            delayed = tuple((t, dp) for t, dp in grow.items() if dp > 1e-9)
            added = 0.0
            price = 0.0
            for t, dp in delayed:
                added = max(added, dp)
                price += prices.get(t, 0.0) * dp
            if saving < price:
                continue
            out.append((saving / added if added > 1e-9 else math.inf, lv, site_params, new, delayed))
        return out

    def optimise(
        self, budgets: Mapping[str, float], min_gain: float, prices: Mapping[str, float] | None = None
    ) -> tuple[dict[str, int], Evaluation]:
        """Greedy cheapest assignment within the budgets (tenants missing from ``budgets``: no bound).

        ``prices`` (CPU fraction per µs, per tenant) make added delay cost something: a move must save
        at least the summed price of the delay it adds. Returns the chosen level index per
        controllable gate and its evaluation.
        """
        prices = prices or {}
        idx = {k: 0 for k in self.gate_order}
        params = self.params_for(idx)
        preds = dict(self.evaluate(params).chains)
        delays = self._tenant_delays(preds, self._tenant_chains)
        affected = {k: self._affected(k) for k in self.gate_order}
        cache: dict[str, list[tuple]] = {}  # a gate's moves, kept until a taken move touches its chains
        while True:
            best = None
            for key in self.gate_order:
                if key not in cache:
                    cache[key] = self._moves(key, idx, params, preds, affected[key], min_gain, prices)
                for eff, lv, site_params, new, delayed in cache[key]:
                    if best is not None and not eff > best[0] * (1 + 1e-12):
                        continue
                    if any(delays[t] + dp > budgets.get(t, math.inf) + 1e-9 for t, dp in delayed):
                        continue
                    best = (eff, key, lv, site_params, new)
            if best is None:
                break
            _, key, lv, site_params, new = best
            idx[key] = lv
            params = dict(params)
            params[self._site[key]] = site_params
            preds.update(new)
            delays = self._tenant_delays(preds, self._tenant_chains)
            touched = set(new)
            for k in list(cache):
                if k == key or touched.intersection(affected[k]) or self._site[k] is self._site[key]:
                    del cache[k]
        return idx, self.evaluate(params)

    def _reeval(self, chains: list[str], params: Mapping[Site, CoalesceParams], preds: Mapping[str, ChainPred],
                override: tuple[Site, CoalesceParams]) -> dict[str, ChainPred]:
        new: dict[str, ChainPred] = {}
        for ck in chains:
            c = self.by_key[ck]
            feed = None
            if c.feed is not None:
                feed = new.get(c.feed) or preds.get(c.feed)
            new[ck] = self._chain(c, params, feed, override)
        return new
