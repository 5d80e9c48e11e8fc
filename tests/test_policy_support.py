"""Builders of window statistics and contexts for the policy tests, and a closed-loop runner.

Imported by the other ``test_policy_*`` modules (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from vcoal.model import (
    CoalesceParams,
    Decision,
    DirStats,
    PolicyContext,
    Site,
    SiteInfo,
    SiteStats,
    WindowStats,
)

NIC = Site.parse("nic:q0")
NIC1 = Site.parse("nic:q1")
BACKEND = Site.parse("backend:g1")
FRONTEND = Site.parse("frontend:g1")
MS_NS = 1_000_000


def context(*sites: Site, supported: frozenset[str] | None = None, initial: CoalesceParams | None = None):
    """A PolicyContext over ``sites`` (default: one site per layer) with the same start values."""
    sites = sites or (NIC, BACKEND, FRONTEND)
    p = initial or CoalesceParams()
    return PolicyContext({s: SiteInfo(s, p, ("g1",), supported) for s in sites})


def site_stats(
    site: Site,
    params: CoalesceParams | None = None,
    *,
    interval_ns: int = MS_NS,
    rx: tuple[int, int, int] = (0, 0, 0),
    tx: tuple[int, int, int] = (0, 0, 0),
) -> SiteStats:
    """One site's window; ``rx``/``tx`` are (packets, bytes, interrupts)."""
    return SiteStats(
        site=site,
        interval_ns=interval_ns,
        rx=DirStats(rx[0], rx[1], rx[2], rx[2]),
        tx=DirStats(tx[0], tx[1], tx[2], tx[2]),
        cpu_ns=0,
        params=params or CoalesceParams(),
    )


def window(index: int, *stats: SiteStats, t_ns: int | None = None) -> WindowStats:
    """A WindowStats holding ``stats``; its interval is the first site's."""
    interval = stats[0].interval_ns if stats else MS_NS
    return WindowStats(index, t_ns if t_ns is not None else (index + 1) * interval, interval, {s.site: s for s in stats})


# (packets, bytes, interrupts) per window and direction: idle, trickle, request/response, bulk,
# a phase change back to light load, a zero-length window and a burst.
_SCRIPT: tuple[tuple[tuple[int, int, int], tuple[int, int, int], int], ...] = (
    ((0, 0, 0), (0, 0, 0), MS_NS),
    ((3, 300, 3), (3, 300, 3), MS_NS),
    ((50, 5_000, 48), (50, 5_000, 48), MS_NS),
    ((200, 24_000, 150), (200, 24_000, 150), MS_NS),
    *(((800, 1_200_000, 90), (400, 26_000, 90), MS_NS),) * 6,
    *(((20, 2_000, 20), (20, 2_000, 20), MS_NS),) * 4,
    ((500, 50_000, 200), (0, 0, 0), 0),
    ((5_000, 7_500_000, 400), (2_500, 160_000, 300), MS_NS),
    *(((1_000, 64_000, 100), (1_000, 64_000, 100), 2 * MS_NS),) * 5,
)


def canned_trace_stats(sites: Iterable[Site]) -> list[list[tuple[Site, tuple, tuple, int]]]:
    """The scripted per-window load of every site (params are filled in by ``run_closed_loop``)."""
    return [[(s, rx, tx, iv) for s in sites] for rx, tx, iv in _SCRIPT]


def run_closed_loop(policy, ctx: PolicyContext, seed: int = 1) -> list[Decision | None]:
    """Reset ``policy``, feed the canned trace with each window reporting the params in force.

    Decisions are applied at the window boundary, like the simulator's caller does.
    """
    policy.reset(ctx, random.Random(seed))
    current: dict[Site, CoalesceParams] = {s: i.initial for s, i in ctx.sites.items()}
    out: list[Decision | None] = [policy.decide()]
    _apply(current, out[-1])
    t_ns = 0
    for index, rows in enumerate(canned_trace_stats(ctx.sites)):
        stats = [site_stats(s, current[s], interval_ns=iv, rx=rx, tx=tx) for s, rx, tx, iv in rows]
        t_ns += rows[0][3]
        policy.observe(window(index, *stats, t_ns=t_ns))
        out.append(policy.decide())
        _apply(current, out[-1])
    return out


def _apply(current: dict[Site, CoalesceParams], decision: Decision | None) -> None:
    if decision is not None:
        current.update(decision.params)


def params_of(decision: Decision | None) -> Mapping[Site, CoalesceParams]:
    """The parameters a decision sets ({} for None)."""
    return {} if decision is None else decision.params


def test_canned_trace_has_a_zero_interval_window_and_every_layer():
    rows = canned_trace_stats([NIC, BACKEND, FRONTEND])
    assert any(r[0][3] == 0 for r in rows)
    assert {s.layer.value for s, *_ in rows[0]} == {"nic", "backend", "frontend"}


def test_window_builder_keeps_counts_per_direction():
    w = window(3, site_stats(NIC, rx=(10, 1000, 2), tx=(1, 60, 1)))
    s = w.sites[NIC]
    assert (s.rx.packets, s.rx.bytes, s.rx.interrupts, s.tx.packets) == (10, 1000, 2, 1)
    assert w.index == 3 and w.interval_ns == MS_NS
