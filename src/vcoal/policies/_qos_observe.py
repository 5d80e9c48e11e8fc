"""What the ``qos`` controller reads from a window: rates, drops, busy consumers, a latency prior.

All functions are pure; the controller keeps the state they update.
"""

from __future__ import annotations

from collections.abc import Mapping

from vcoal.model.costs import DEFAULT_COSTS
from vcoal.model.hostpath import profile_of
from vcoal.model.queueing import zero_cost_delay
from vcoal.model.stats import WindowStats
from vcoal.model.units import NS_PER_S, Site
from vcoal.policies._qos_model import Costs, chain_event_cost

MIN_PACKETS_FOR_BUSY = 100


def window_rates(stats: WindowStats) -> dict[tuple[Site, str], float]:
    """Offered packets per second (packets + drops) per site and direction in one window."""
    out = {}
    for site, s in stats.sites.items():
        if s.interval_ns:
            out[(site, "rx")] = (s.rx.packets + s.rx.drops) * NS_PER_S / s.interval_ns
            out[(site, "tx")] = (s.tx.packets + s.tx.drops) * NS_PER_S / s.interval_ns
    return out


def update_rate(old: float | None, x: float, low_streak: int, alpha: float, ratio: float) -> tuple[float, int]:
    """One step of the rate estimate; returns (new estimate, new count of confirmed-low windows).

    A window that differs from the estimate by more than ``ratio`` is a phase change: a rise is
    adopted at once, a fall only when a second window confirms it (a lull between bursts is not a
    phase change); otherwise the EWMA with gain ``alpha`` follows.
    """
    if old is None:
        return x, 0
    jump = abs(x - old) > ratio * max(old, 1.0)
    low = low_streak + 1 if jump and x < old else 0
    if jump and (x > old or low >= 2):
        return x, low
    return old + alpha * (x - old), low


def dropped_on(stats: WindowStats, path: tuple[Site, ...]) -> bool:
    """Whether any site of a path dropped packets in the window."""
    for site in path:
        s = stats.sites.get(site)
        if s is not None and (s.rx.drops or s.tx.drops):
            return True
    return False


def _consumer(site: Site, d: str, profile: str) -> tuple[str, Site] | None:
    """The chain (hop) whose interrupt a site's direction gates and delays packets at, and the site
    of its NAPI consumer (``vcoal.model.hostpath``); None for a direction that gates no packets."""
    hop = next((h for h in profile_of(profile).hops if h.gate is site.layer and h.direction == d and h.delays), None)
    return None if hop is None else (hop.chain, Site(hop.napi, site.instance))


def busy_sites(stats: WindowStats, costs: Costs, util_max: float) -> set[Site]:
    """Sites whose consumer CPU the exact model shows busy beyond ``util_max``.

    Inverts the NAPI Min(N,T) interrupt rate ``r = (1 - rho) / E[V]`` with ``E[V] = E[K]/lam + U``:
    an interrupt re-arms only when the consumer goes idle, so few interrupts per packet without
    coalescing mean a busy consumer. Needs the consumer's NAPI deferral off (it also removes
    interrupts) and enough packets.
    """
    out: set[Site] = set()
    for site, s in stats.sites.items():
        if not s.interval_ns:
            continue
        for d, ds in (("rx", s.rx), ("tx", s.tx)):
            which = _consumer(site, d, costs.profile)
            if which is None or ds.packets < MIN_PACKETS_FOR_BUSY:
                continue
            kind, consumer = which
            cp = stats.sites.get(consumer)
            if cp is None or cp.params.napi_defer_hard_irqs > 0:
                continue
            lam = ds.packets * 1000.0 / s.interval_ns  # per µs
            r = ds.interrupts * 1000.0 / s.interval_ns
            try:
                _, irq0 = zero_cost_delay(lam, s.params.frames(d) or None, s.params.usecs(d) or None)
            except ValueError:
                continue
            ek = lam / irq0 if irq0 > 0 else 1.0
            if 1.0 - r * (ek / lam + chain_event_cost(kind, costs)) >= util_max:
                out.add(site)
    return out


def nic_work_us(stats_site, costs: Costs) -> float | None:
    """Per-packet CPU work (µs) at a NIC site, net of the interrupt and poll costs, if measurable."""
    s = stats_site
    if s.rx.packets <= 0 or s.cpu_ns <= 0:
        return None
    ev = (s.rx.interrupts + s.tx.interrupts) * (costs.irq_us + costs.poll_us)
    return max(0.0, s.cpu_ns / 1000.0 - ev) / (s.rx.packets + s.tx.packets)


PRIOR_TERMS = ("irq_us", "poll_us", "nic_pkt_us", "bridge_pkt_us", "netback_pkt_us", "evtchn_send_us",
               "virq_us", "frontend_pkt_us", "stack_pkt_us")


def prior_base_us(cost: Mapping[str, float]) -> float:
    """Latency the model does not see, before any measurement: per-packet work of both directions
    (the ``PRIOR_TERMS`` of the cost table, ``DEFAULT_COSTS`` for names it lacks) and one wake-up."""
    c = {**DEFAULT_COSTS, **cost}
    return 2.0 * sum(c[k] for k in PRIOR_TERMS) + c["ctx_switch_us"]
