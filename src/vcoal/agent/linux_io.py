"""The agent's Linux parts: interface discovery + counters (a CounterSource) and the safe applier.

``LinuxSource`` finds the interfaces of the configured groups (names or globs) in the agent's
network namespace, re-scans every ``rescan_every_windows`` windows and whenever one vanished, and
samples their counters. ``KnobApplier`` turns decided ``CoalesceParams`` into knob writes under the
safety rules: only configured and supported knobs, clamped to the configured bounds, at most
``max_changes_per_minute`` changes per interface, journaled before the first change, read back
after each write; a knob found changed by someone else puts the interface in back-off (its journal
entries are dropped: the administrator owns it now) for ``backoff_s``. A driver that applies a
nearby value (ENA's rx-usecs buckets, ixgbevf's usecs << 2) is written once per decided value:
the applier remembers what the driver applied for what was asked and rewrites only when the
decision changes; the policy sees the applied value.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from vcoal.agent.config import AgentConfig, ConfigError, InterfaceGroup
from vcoal.agent.loop import Applied
from vcoal.linux.counters import InterfaceCounters
from vcoal.linux.knobs import InterfaceGone, KnobUnsupported, LinuxKnobs, split_unit
from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision, PolicyContext, SiteInfo, TenantInfo
from vcoal.model.slo import Slo
from vcoal.model.stats import CounterSample
from vcoal.model.units import Layer, Site

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Managed:
    """One interface under control."""

    ifname: str
    group: InterfaceGroup
    site: Site
    supported: frozenset[str]
    in_force: CoalesceParams
    knob_values: dict[str, int]
    changes: deque = field(default_factory=deque)
    backoff_until: float = 0.0
    last_reason: str = ""
    controlled: tuple[str, ...] = ()  # the knobs the agent may write here: configured and supported
    quantized: dict[str, tuple[int, int]] = field(default_factory=dict)  # knob: (asked, driver applied)

    def __post_init__(self) -> None:
        self.controlled = tuple(k for k in self.group.knobs if k in self.supported)


def params_from_knobs(values: Mapping[str, int], base: CoalesceParams | None = None) -> CoalesceParams:
    """CoalesceParams with the knob values a device reported (others keep ``base``'s values)."""
    return (base or CoalesceParams()).with_changes(**dict(values))


class KnobApplier:
    """Safe, journaled application of decisions to Linux knobs (see module doc)."""

    def __init__(
        self,
        config: AgentConfig,
        knobs: LinuxKnobs,
        dry_run: bool = False,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.knobs = knobs
        self.dry_run = dry_run
        self.clock_s = clock_s
        self.managed: dict[str, Managed] = {}
        self.backoffs = 0

    # --- the set of interfaces ------------------------------------------------------------
    def adopt(self, ifname: str, group: InterfaceGroup) -> Managed | None:
        """Start managing an interface or a queue ``IF:qN`` (reads its knobs); None when it vanished
        meanwhile. A queue without a NAPI of its own or per-queue statistics raises ConfigError."""
        base, queue = split_unit(ifname)
        try:
            values = self.knobs.read(ifname)
            supported = self.knobs.supported(ifname)
            if queue is not None:
                self.knobs.queue_stats(base)  # per-queue statistics, or refuse the config
        except InterfaceGone:
            return None
        except KnobUnsupported as exc:
            if queue is None:
                raise
            index = next(i for i, g in enumerate(self.config.interfaces) if g is group)
            raise ConfigError(f"interfaces.{index}.queues: {exc.strerror or exc}; use queues = \"all\"") from None
        site = Site(Layer(group.layer), ifname)
        m = Managed(ifname, group, site, supported, params_from_knobs(values), values)
        unsupported = sorted(set(group.knobs) - supported)
        if unsupported:
            log.info("%s: driver does not support %s; not touching them", ifname, ", ".join(unsupported))
        log.info("%s: now under control as %s, knobs %s", ifname, site, {k: values[k] for k in m.controlled})
        self.managed[ifname] = m
        return m

    def drop(self, ifname: str, restore: bool = True) -> None:
        """Stop managing an interface (restoring its knobs when it still exists)."""
        m = self.managed.pop(ifname, None)
        if m is None:
            return
        if restore and not self.dry_run:
            try:
                self.knobs.restore(ifname)
            except OSError as exc:
                log.warning("%s: restore on release failed: %s", ifname, exc)
        self.knobs.forget(ifname)
        log.info("%s: no longer under control", ifname)

    # --- Applier protocol -------------------------------------------------------------------
    def params(self, site: Site) -> CoalesceParams:
        m = self.managed.get(site.instance)
        return m.in_force if m else CoalesceParams()

    def begin_window(self, window: int) -> None:
        """Every ``verify_every_windows``: detect knobs changed by someone else (not in dry run)."""
        if self.dry_run or window % self.config.safety.verify_every_windows:
            return
        now = self.clock_s()
        current = self.knobs.read_many({name: m.controlled for name, m in self.managed.items()})
        for ifname, m in list(self.managed.items()):
            if ifname not in current:
                log.info("%s: vanished; forgetting it", ifname)
                self.drop(ifname, restore=False)
                continue
            values = {**m.knob_values, **current[ifname]}
            if values == m.knob_values:
                continue  # as the agent left it (the usual case): nothing to update
            moved = {k: (m.knob_values.get(k), values[k]) for k in m.controlled if values.get(k) != m.knob_values.get(k)}
            if moved:
                self.backoffs += 1
                detail = ", ".join(f"{k} {a}->{b}" for k, (a, b) in moved.items())
                log.warning(
                    "%s: changed by someone else (%s); backing off for %.0f s and leaving it as set",
                    ifname, detail, self.config.safety.backoff_s,
                )
                self.knobs.forget(ifname, tuple(moved))
                m.backoff_until = now + self.config.safety.backoff_s
                m.last_reason = f"external change: {detail}"
            m.knob_values = values
            m.in_force = params_from_knobs(values, m.in_force)

    def apply(self, decision: Decision, window: int) -> list[Applied]:
        """Apply each site's decided parameters within the safety rules."""
        now = self.clock_s()
        plans = [
            (m, self._plan(m, params, now)) for site, params in decision.params.items()
            if (m := self.managed.get(site.instance)) is not None and m.site == site
        ]
        if not self.dry_run:  # one durable journal write for every first change of this window
            self.knobs.prepare({m.ifname: tuple(plan) for m, plan in plans if isinstance(plan, dict) and plan})
        return [self._apply_one(m, plan, now) for m, plan in plans]

    def _plan(self, m: Managed, params: CoalesceParams, now: float) -> dict[str, int] | str:
        """The knob writes for ``params`` (clamped to the bounds, only those that differ from the
        current values), or why there are none this window ("backed off", "rate limit")."""
        if now < m.backoff_until:
            return "backed off"
        wanted = {}
        for k in m.controlled:
            v = int(getattr(params, k))
            lo, hi = m.group.bounds.get(k, (None, None))
            if lo is not None:
                v = min(max(v, lo), hi)
            wanted[k] = v
        changes = {
            k: v for k, v in wanted.items()
            if v != m.knob_values.get(k) and m.quantized.get(k) != (v, m.knob_values.get(k))
        }
        if not changes:
            return changes
        while m.changes and now - m.changes[0] >= 60.0:
            m.changes.popleft()
        if len(m.changes) >= self.config.safety.max_changes_per_minute:
            log.debug("%s: change rate limit reached, keeping %s", m.ifname, m.knob_values)
            return "rate limit"
        return changes

    def _apply_one(self, m: Managed, changes: dict[str, int] | str, now: float) -> Applied:
        if isinstance(changes, str):
            return Applied(m.site, m.in_force, skipped=changes)
        if not changes:
            return Applied(m.site, m.in_force)
        m.changes.append(now)  # counted toward the rate limit once it is written (or would be: dry run)
        if self.dry_run:
            m.knob_values = {**m.knob_values, **changes}
            m.in_force = params_from_knobs(changes, m.in_force)
            return Applied(m.site, m.in_force, tuple(changes), skipped="dry run")
        try:
            got = self.knobs.set(m.ifname, changes)
        except InterfaceGone:
            log.info("%s: vanished while being set; forgetting it", m.ifname)
            self.drop(m.ifname, restore=False)
            return Applied(m.site, m.in_force, skipped="interface gone")
        except KnobUnsupported as exc:
            log.warning("%s: %s", m.ifname, exc)
            return Applied(m.site, m.in_force, skipped="unsupported")
        off = {k: (changes[k], got[k]) for k in changes if got.get(k) != changes[k]}
        for k in changes:
            if k in off:
                m.quantized[k] = off[k]  # asking again would only get the same (and may reset a queue)
            else:
                m.quantized.pop(k, None)
        if off:
            log.info("%s: driver applied %s instead of %s", m.ifname, {k: b for k, (_, b) in off.items()},
                     {k: a for k, (a, _) in off.items()})
        before = {k: m.knob_values.get(k) for k in changes}
        m.knob_values = {**m.knob_values, **got}
        m.in_force = params_from_knobs(got, m.in_force)
        log.info("%s: set %s (was %s)", m.ifname, got, before)
        return Applied(m.site, m.in_force, tuple(changes))


class LinuxSource:
    """Counters of the configured interfaces in this namespace, with (re)discovery."""

    def __init__(self, config: AgentConfig, applier: KnobApplier, counters: InterfaceCounters | None = None) -> None:
        self.config = config
        self.applier = applier
        self.counters = counters or InterfaceCounters(queue_stats=applier.knobs.queue_stats)
        self._windows = 0
        self._queued = any(g.queues != "all" for g in config.interfaces)
        self._rescan = True
        self._context: PolicyContext | None = None
        self._context_of: tuple[str, ...] = ()  # the interfaces under control when it was built
        self._warned_unmatched = False
        self._order_of: tuple[Managed, ...] = ()
        self._order: tuple[list[str], list[Site]] = ([], [])

    def scan(self) -> None:
        """Adopt matching interfaces that appeared, forget the ones that vanished."""
        present = self.counters.present()
        managed = self.applier.managed
        bases = {split_unit(n)[0] for n in managed} if self._queued else set(managed)
        for ifname in sorted(name for name in managed if (split_unit(name)[0] if self._queued else name) not in present):
            log.info("%s: vanished; forgetting it", ifname)
            self.applier.drop(ifname, restore=False)
        for ifname in sorted(present - bases):
            group = self.config.group_of(ifname)
            if group is not None:
                for unit in group.units(ifname):
                    if unit not in self.applier.managed:
                        self.applier.adopt(unit, group)
        if not self._warned_unmatched:
            self._warned_unmatched = True
            for i, g in enumerate(self.config.interfaces):
                if not any(g.matches(name) for name in present):
                    log.warning("interfaces.%d: match %s matches no interface here (yet); "
                                "one that appears is picked up at a rescan", i, g.match)
        if tuple(self.applier.managed) != self._context_of:
            self._context = None  # (unchanged: the loop would keep its context anyway)

    def context(self) -> PolicyContext:
        """The sites under control now (re-scanning when due)."""
        if self._rescan or self._windows % self.config.rescan_every_windows == 0:
            self.scan()
            self._rescan = False
        self._windows += 1
        if self._context is None:
            self._context = build_context(self.config, self.applier.managed)
            self._context_of = tuple(self.applier.managed)
        return self._context

    def sample(self) -> Mapping[Site, CounterSample]:
        """Counters of every interface under control (a vanished one triggers a re-scan)."""
        managed = self.applier.managed
        now = tuple(managed.values())
        if now != self._order_of:  # the names in the context's order, and their sites
            self._order_of = now
            names = sorted(managed)
            self._order = (names, [managed[name].site for name in names])
        out = self.counters.sample(*self._order)
        if len(out) != len(managed):
            self._rescan = True
        return out

    def close(self) -> None:
        """Close the counter files."""
        self.counters.close()


def build_context(config: AgentConfig, managed: Mapping[str, Managed]) -> PolicyContext:
    """The PolicyContext of the interfaces under control and the configured tenants."""
    import fnmatch

    tenants: dict[str, TenantInfo] = {}
    on_site: dict[str, list[str]] = {}
    for t in config.tenants:
        path = tuple(
            m.site for name, m in sorted(managed.items())
            if any(fnmatch.fnmatchcase(name, p) for p in t.interfaces)
        )
        for s in path:
            on_site.setdefault(s.instance, []).append(t.name)
        tenants[t.name] = TenantInfo(t.name, Slo(t.p99_us, t.min_throughput_bps), path, t.kind)
    sites = {
        m.site: SiteInfo(m.site, m.in_force, tuple(on_site.get(name, ())), frozenset(m.controlled))
        for name, m in sorted(managed.items())
    }
    return PolicyContext(sites, tenants, config.costs, config.host_profile)
