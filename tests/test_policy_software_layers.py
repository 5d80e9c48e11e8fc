"""napi_defer (static NAPI deferral) and dxzl (frontend virtual-interrupt coalescing)."""

from __future__ import annotations

import random

import pytest

from test_policy_support import BACKEND, FRONTEND, MS_NS, NIC, context, site_stats, window
from vcoal.model import CoalesceParams
from vcoal.policies.dxzl import Dxzl, aic_gap_ns
from vcoal.policies.napi_defer import NapiDefer

DEFER = frozenset({"napi_defer_hard_irqs", "gro_flush_timeout_ns"})


def test_napi_defer_sets_software_layers_once_and_keeps_other_fields():
    start = CoalesceParams(rx_usecs=20, rx_frames=8)
    pol = NapiDefer()
    pol.reset(context(initial=start), random.Random(0))
    d = pol.decide()
    assert set(d.params) == {BACKEND, FRONTEND}
    for p in d.params.values():
        assert (p.napi_defer_hard_irqs, p.gro_flush_timeout_ns) == (100, 10_000)
        assert (p.rx_usecs, p.rx_frames) == (20, 8)
    assert all(r.changed for r in d.records)
    pol.observe(window(0, site_stats(FRONTEND, rx=(100, 6_400, 10))))
    assert pol.decide() is None  # static: the kernel has no adaptive rule


def test_napi_defer_layers_and_unsupported_sites():
    pol = NapiDefer(NapiDefer.Params(layers="nic", defer_hard_irqs=2, gro_flush_timeout_ns=50_000))
    pol.reset(context(NIC, FRONTEND), random.Random(0))
    d = pol.decide()
    assert set(d.params) == {NIC} and d.params[NIC].gro_flush_timeout_ns == 50_000
    pol = NapiDefer()
    pol.reset(context(BACKEND, supported=frozenset({"napi_defer_hard_irqs"})), random.Random(0))
    d = pol.decide()
    assert d.params == {} and "cannot" in d.records[0].reason


def test_aic_gap_rule():
    # low load: the latency floor 1/lif = 50 us
    assert aic_gap_ns(10_000, 0.5, 256, 20_000) == 50_000
    # 5 Mpps: 128 packets per interrupt -> 25.6 us
    assert aic_gap_ns(5_000_000, 0.5, 256, 20_000) == 25_600
    assert aic_gap_ns(0, 0.5, 256, 4_000) == 250_000
    assert aic_gap_ns(1e12, 0.5, 256, 20_000) == 1_000  # floor of 1 us


def run_dxzl(pol, rx_pps_list, ctx=None):
    ctx = ctx or context(NIC, BACKEND, FRONTEND)
    pol.reset(ctx, random.Random(0))
    out = [pol.decide()]
    for i, pps in enumerate(rx_pps_list):
        pkts = pps // 1000  # 1 ms windows
        stats = [site_stats(s, rx=(pkts, pkts * 1500, pkts)) for s in ctx.sites]
        pol.observe(window(i, *stats))
        out.append(pol.decide())
    return out


def test_dxzl_sets_only_frontend_deferral_with_the_aic_gap_and_hysteresis():
    out = run_dxzl(Dxzl(), [10_000, 6_000_000, 6_200_000, 8_000_000, 0])
    first = out[0].params
    assert set(first) == {FRONTEND}
    assert (first[FRONTEND].napi_defer_hard_irqs, first[FRONTEND].gro_flush_timeout_ns) == (1, 50_000)
    assert (first[FRONTEND].rx_usecs, first[FRONTEND].rx_frames) == (0, 1)  # no dom0-side timer
    assert out[1].params == {} and not out[1].records[0].changed  # 50 us again
    assert out[2].params[FRONTEND].gro_flush_timeout_ns == 21_333  # 128 / 6 Mpps
    assert out[3].params == {} and "keep" in out[3].records[0].reason  # 20.6 us is within 10 %
    assert out[4].params[FRONTEND].gro_flush_timeout_ns == 16_000
    assert out[4].records[0].predicted["target_virq_per_s"] == pytest.approx(62_500)
    assert out[5].params[FRONTEND].gro_flush_timeout_ns == 50_000  # idle: back to the floor


def test_dxzl_skips_frontends_without_deferral_knobs():
    pol = Dxzl()
    assert run_dxzl(pol, [10_000], context(FRONTEND, supported=frozenset({"rx_usecs"}))) == [None, None]
    assert run_dxzl(Dxzl(), [10_000], context(FRONTEND, supported=DEFER))[0].params[FRONTEND].napi_defer_hard_irqs == 1


def test_dxzl_ignores_windows_without_the_site():
    pol = Dxzl()
    pol.reset(context(FRONTEND), random.Random(0))
    pol.decide()
    pol.observe(window(0, site_stats(NIC, interval_ns=MS_NS, rx=(10, 10, 1))))
    assert pol.decide() is None


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (NapiDefer, {"defer_hard_irqs": -1}, "defer_hard_irqs"),
        (NapiDefer, {"gro_flush_timeout_ns": 10**9}, "gro_flush_timeout_ns"),
        (NapiDefer, {"layers": "guest"}, "layers"),
        (Dxzl, {"ratio": 0.0}, "ratio"),
        (Dxzl, {"lif_irq_per_s": 0}, "lif_irq_per_s"),
        (Dxzl, {"ring_buffers": 0}, "ring_buffers"),
        (Dxzl, {"defer_hard_irqs": 0}, "defer_hard_irqs"),
        (Dxzl, {"min_change_pct": 120.0}, "min_change_pct"),
    ],
)
def test_bad_params_are_rejected_naming_the_field(cls, params, field):
    with pytest.raises(ValueError, match=field) as exc:
        cls.Params(**params)
    assert "\n" not in str(exc.value)


def test_dxzl_reads_the_guests_backend_when_the_frontend_counts_nothing():
    pol = Dxzl()
    pol.reset(context(BACKEND, FRONTEND), random.Random(0))
    pol.decide()
    pol.observe(window(0, site_stats(BACKEND, rx=(6_000, 9_000_000, 500)), site_stats(FRONTEND)))
    d = pol.decide()
    assert d.params[FRONTEND].gro_flush_timeout_ns == 21_333
    assert d.records[0].inputs["rx_virq_per_s"] == pytest.approx(500_000)
