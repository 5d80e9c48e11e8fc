"""The ``qos`` controller on windows shaped like the real-kernel testbed's (docs/testbed.md).

examples/testbed/mixed.toml: a UDP ping-pong tenant ``lat`` (p99 SLO 300 µs) and a TCP bulk tenant
sharing the veth "NIC" peth0; only the NAPI deferral knobs exist; every site's interrupt count is
the host-wide NET_RX softirq count; the measured p99 has a large base (~380 µs on the shared VM,
the SLO is infeasible even without deferral) and grows with every µs of deferral on lat's path.

Until 2026-11-26 the testbed reported 0 interrupts on the directions that wake the *peer's* NAPI
(backend rx, frontend tx): the exact-model inversion read "15k packets, no wake-up" as a consumer
that never idles, flagged ``lat`` capacity-bound, froze its latency correction at the 16 µs prior
and relaxed its path to 150 µs of deferral while its measured p99 doubled (1.3 ms measured).
"""

from __future__ import annotations

import random

from test_policy_qos import NAPI_ONLY, NIC0, be, context, fe
from vcoal.model import CoalesceParams, PolicyContext, Site, Slo
from vcoal.model.stats import DirStats, SiteStats, TenantStats, WindowStats
from vcoal.policies import make_policy
from vcoal.testbed.sites import SiteDevice, SitePolls, counter_sample

WINDOW_NS = 1_000_000_000  # 1 s policy windows, as on the testbed
BASE_P99_US = 380.0  # off's measured p99 with the paced bulk neighbour (SLO 300: infeasible)
BULK_PPS, ACK_PPS, LAT_PPS = 173_000.0, 3_500.0, 15_000.0


def napi_us(p: CoalesceParams) -> float:
    return p.gro_flush_timeout_ns / 1000 if p.napi_defer_hard_irqs else 0.0


def lat_hold_us(params: dict[Site, CoalesceParams]) -> float:
    """Deferral on lat's round trip: peth0, geth0 (request) and the vif (reply)."""
    return napi_us(params[NIC0]) + napi_us(params[fe("lat")]) + napi_us(params[be("lat")])


def make_window(i: int, ctx: PolicyContext, params: dict[Site, CoalesceParams], old_counters: bool,
                   rng: random.Random) -> WindowStats:
    """One window as vcoal.testbed.trial builds it (sites.counter_sample, host-wide NET_RX)."""
    hold = lat_hold_us(params)
    noise = 1 + 0.05 * rng.uniform(-1, 1)
    lat = LAT_PPS * 20.0 / (20.0 + hold)  # closed-loop ping-pong: slower round trips, fewer of them
    net_rx = int(1.5 * lat + 0.042 * BULK_PPS)
    p99 = (BASE_P99_US + 3.0 * hold) * noise
    flows = {  # site: (model rx pps, model tx pps, NAPI direction)
        NIC0: (lat + BULK_PPS, lat + ACK_PPS, "rx"),
        be("lat"): (lat, lat, "tx"), fe("lat"): (lat, lat, "rx"),
        be("bulk"): (BULK_PPS, ACK_PPS, "tx"), fe("bulk"): (BULK_PPS, ACK_PPS, "rx"),
    }  # fmt: skip
    sites = {}
    for site, (rx, tx, napi) in flows.items():
        dev = {"rx_packets": int(rx), "rx_bytes": int(rx) * 1000, "rx_dropped": 0,
               "tx_packets": int(tx), "tx_bytes": int(tx) * 100, "tx_dropped": 0}  # fmt: skip
        c = counter_sample(SiteDevice(site, "ns", "dev", napi, False), dev, 0, SitePolls.host_wide(net_rx))  # the window's counts
        d_rx, d_tx = c.rx, c.tx
        if old_counters:  # before 2026-11-26: NET_RX only on the device's own NAPI direction
            d_rx = DirStats(d_rx.packets, d_rx.bytes, d_rx.polls, d_rx.polls, 0)
            d_tx = DirStats(d_tx.packets, d_tx.bytes, d_tx.polls, d_tx.polls, 0)
        sites[site] = SiteStats(site, WINDOW_NS, d_rx, d_tx, 0, params[site])
    tenants = {
        "lat": TenantStats("lat", ctx.tenants["lat"].slo, int(2 * lat), int(2 * lat) * 92, 30.0, p99),
        "bulk": TenantStats("bulk", ctx.tenants["bulk"].slo, int(BULK_PPS + ACK_PPS), int(BULK_PPS) * 1500),
    }
    return WindowStats(i, (i + 1) * WINDOW_NS, WINDOW_NS, sites, tenants)


def closed_loop(old_counters: bool, n: int = 12, params: dict | None = None):
    ctx = context({"lat": Slo(p99_us=300.0), "bulk": Slo()}, supported=NAPI_ONLY)
    pol = make_policy("qos", params)
    pol.reset(ctx, random.Random(1))
    rng = random.Random(7)
    params = {s: i.initial for s, i in ctx.sites.items()}
    params.update(pol.decide().params)
    holds, records = [], []
    for i in range(n):
        pol.observe(make_window(i, ctx, params, old_counters, rng))
        d = pol.decide()
        params.update(d.params)
        holds.append(lat_hold_us(params))
        records.append(d.records)
    return pol, params, holds, records


def test_misleading_capacity_evidence_is_refuted_by_the_measured_p99():
    """Old testbed counters: lat looks capacity-bound; the measured p99 rising refutes it (the regime
    rule alone: without the measured response, which reverts the first step itself, see below)."""
    pol, _params, holds, records = closed_loop(old_counters=True, params={"measured_response": False})
    # the first window still reads a busy consumer (0 wake-ups for 15k packets) and relaxes ...
    assert holds[0] > 0
    # ... but when the measured p99 rises instead of falling, lat is latency-bound again: its path
    # gets no deferral (its SLO is infeasible: the best is none), and it stays so
    assert all(h == 0 for h in holds[3:]), holds
    assert pol.state["lat"].capacity_load is None and pol.state["lat"].refuted_load is not None
    nic_rec = next(r for r in records[-1] if r.site == NIC0)
    # and it is named for what it is: off's base alone (~380 µs) is above its 300 µs target
    assert "tenant lat: infeasible: measured base p99" in nic_rec.reason and "capacity-bound (" not in nic_rec.reason
    assert nic_rec.inputs["lat.infeasible"] == 1.0 and nic_rec.inputs["lat.base_us"] >= 300.0
    assert max(holds) <= 60.0  # two bounded steps (10 then 20 µs on its three hops) before the refutation


def test_testbed_counters_never_make_the_latency_tenant_capacity_bound():
    """Fixed counters (NET_RX on every NAPI-waking direction): lat's path is never deferred."""
    pol, params, holds, records = closed_loop(old_counters=False)
    assert holds == [0.0] * len(holds)
    assert pol.state["lat"].capacity_load is None and pol.state["lat"].refuted_load is None
    assert all("capacity-bound" not in r.reason for recs in records for r in recs)
    # the bulk guest's own deferral looks worth ~14 % of a CPU to the model, but these counters (the
    # host-wide NET_RX count, as without per-device tracing) do not move: it is tried once, reverted
    # with its realised saving in the record, and not tried again
    reasons = [r.reason for recs in records for r in recs if r.site == fe("bulk")]
    assert sum("set napi_defer_hard_irqs 0->" in r for r in reasons) == 1
    assert any("revert frontend:bulk.napi" in r and "realised saving +0.0% of" in r for r in reasons)
    assert napi_us(params[fe("bulk")]) == 0


def test_capacity_bound_tenant_whose_tail_falls_is_not_refuted():
    """The overload case (suite 07): coalescing for capacity shortens the queues; keep doing it."""
    ctx = context({"lat": Slo(p99_us=300.0), "bulk": Slo()}, supported=NAPI_ONLY)
    pol = make_policy("qos")
    pol.reset(ctx, random.Random(1))
    rng = random.Random(7)
    params = {s: i.initial for s, i in ctx.sites.items()}
    for i in range(8):
        w = make_window(i, ctx, params, True, rng)
        lat = w.tenants["lat"]
        falling = TenantStats("lat", lat.slo, lat.packets, lat.bytes, 30.0, 400.0 - 5.0 * lat_hold_us(params))
        w = WindowStats(w.index, w.t_ns, w.interval_ns, w.sites, {**w.tenants, "lat": falling})
        pol.observe(w)
        params.update(pol.decide().params)
    assert pol.state["lat"].refuted_load is None and pol.state["lat"].capacity_load is not None
    assert lat_hold_us(params) > 0


def test_misleading_capacity_evidence_with_the_measured_response():
    """Old testbed counters, default qos: after at most two steps lat's path gets no deferral and lat
    is named infeasible."""
    _pol, _params, holds, records = closed_loop(old_counters=True)
    assert holds[0] > 0 and all(h == 0 for h in holds[2:]), holds
    nic_rec = next(r for r in records[-1] if r.site == NIC0)
    assert "tenant lat: infeasible" in nic_rec.reason and nic_rec.inputs["lat.infeasible"] == 1.0
