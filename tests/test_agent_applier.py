"""KnobApplier safety rules and LinuxSource discovery, against a fake knob layer."""

from __future__ import annotations

import errno
import logging

import pytest

from vcoal.agent.config import parse_config
from vcoal.agent.linux_io import KnobApplier, build_context
from vcoal.linux.knobs import InterfaceGone, KnobUnsupported
from vcoal.model.params import CoalesceParams
from vcoal.model.policy import Decision
from vcoal.model.units import Layer, Site


class FakeKnobs:
    """Interfaces as dicts; records writes, restores and forgets."""

    def __init__(self, devices: dict[str, dict[str, int]]) -> None:
        self.devices = devices
        self.writes: list[tuple[str, dict]] = []
        self.forgotten: list[str] = []
        self.restored: list[str] = []

    def read(self, ifname, knobs=None):
        if ifname not in self.devices:
            raise InterfaceGone(errno.ENODEV, ifname)
        return dict(self.devices[ifname])

    def read_many(self, knobs):
        return {n: {k: v for k, v in self.devices[n].items() if k in ks} for n, ks in knobs.items() if n in self.devices}

    def prepare(self, plan):
        self.prepared = plan

    def supported(self, ifname):
        return frozenset(self.read(ifname))

    def set(self, ifname, values):
        if ifname not in self.devices:
            raise InterfaceGone(errno.ENODEV, ifname)
        self.writes.append((ifname, dict(values)))
        if "rx_usecs" in values and values["rx_usecs"] % 2:
            values = {**values, "rx_usecs": values["rx_usecs"] + 1}  # the driver rounds
        self.devices[ifname].update(values)
        return {k: self.devices[ifname][k] for k in values}

    def restore(self, ifname=None):
        self.restored.append(ifname)
        return 0

    def forget(self, ifname, knobs=None):
        self.forgotten.append(ifname if knobs is None else (ifname, knobs))


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


def _cfg(**safety):
    return parse_config({
        "safety": {"max_changes_per_minute": 2, "backoff_s": 60, **safety},
        "interfaces": [
            {"match": ["vif*"], "layer": "backend", "bounds": {"gro_flush_timeout_ns": [0, 100_000]}},
            {"match": ["eth0"], "layer": "nic", "knobs": ["rx_usecs", "tx_usecs"]},
        ],
        "tenants": [{"name": "g1", "interfaces": ["vif1.*"], "p99_us": 200}],
    })


def _setup(dry_run=False, **safety):
    knobs = FakeKnobs({
        "vif1.0": {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0},
        "eth0": {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0, "rx_usecs": 3},
        "lo": {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0},
    })
    clock = Clock()
    cfg = _cfg(**safety)
    app = KnobApplier(cfg, knobs, dry_run=dry_run, clock_s=clock)
    for name in ("vif1.0", "eth0", "lo"):
        group = cfg.group_of(name)
        if group:
            app.adopt(name, group)
    return app, knobs, clock


VIF, ETH = Site(Layer.BACKEND, "vif1.0"), Site(Layer.NIC, "eth0")


def _decide(site, **kw):
    return Decision({site: CoalesceParams().with_changes(**kw)})


def test_only_configured_and_supported_knobs_within_bounds():
    app, knobs, _ = _setup()
    assert set(app.managed) == {"vif1.0", "eth0"}  # lo matches nothing: never touched
    assert app.managed["eth0"].controlled == ("rx_usecs",)  # tx_usecs configured but unsupported
    app.apply(_decide(VIF, gro_flush_timeout_ns=500_000, napi_defer_hard_irqs=2, rx_usecs=9), 0)
    assert knobs.writes == [("vif1.0", {"gro_flush_timeout_ns": 100_000, "napi_defer_hard_irqs": 2})]
    [a] = app.apply(_decide(ETH, rx_usecs=7, napi_defer_hard_irqs=5), 1)
    assert knobs.writes[-1] == ("eth0", {"rx_usecs": 7})
    assert a.params.rx_usecs == 8  # what the driver applied, read back
    assert app.params(ETH).rx_usecs == 8


def test_change_rate_limit():
    app, knobs, clock = _setup()
    for i, t in enumerate((0, 1, 2, 61)):
        clock.t = 1000.0 + t
        app.apply(_decide(VIF, napi_defer_hard_irqs=i + 1), i)
    assert [w[1]["napi_defer_hard_irqs"] for w in knobs.writes] == [1, 2, 4]


def test_rate_limited_and_backed_off_sites_are_not_journaled():
    app, knobs, clock = _setup()
    for i in range(2):
        clock.t = 1000.0 + i
        app.apply(_decide(VIF, napi_defer_hard_irqs=i + 1), i)
    clock.t = 1002.0
    [a] = app.apply(_decide(VIF, napi_defer_hard_irqs=3), 2)
    assert a.skipped == "rate limit" and knobs.prepared == {}
    app.managed["vif1.0"].backoff_until = 2000.0
    [a] = app.apply(_decide(VIF, napi_defer_hard_irqs=3), 3)
    assert a.skipped == "backed off" and knobs.prepared == {}
    [a] = app.apply(_decide(ETH, rx_usecs=5), 4)
    assert a.skipped == "" and a.changed == ("rx_usecs",) and knobs.prepared == {"eth0": ("rx_usecs",)}


def test_external_change_backs_off_and_gives_up_the_journal(caplog):
    app, knobs, clock = _setup(verify_every_windows=1)
    app.apply(_decide(VIF, napi_defer_hard_irqs=2), 0)
    knobs.devices["vif1.0"]["napi_defer_hard_irqs"] = 7  # an administrator
    with caplog.at_level(logging.WARNING):
        app.begin_window(1)
    assert "changed by someone else" in caplog.text and "backing off" in caplog.text
    assert knobs.forgotten == [("vif1.0", ("napi_defer_hard_irqs",))]  # only what the administrator moved
    assert app.apply(_decide(VIF, napi_defer_hard_irqs=3), 2)[0].skipped == "backed off"
    assert knobs.devices["vif1.0"]["napi_defer_hard_irqs"] == 7
    clock.t += 61
    app.apply(_decide(VIF, napi_defer_hard_irqs=3), 3)
    assert knobs.devices["vif1.0"]["napi_defer_hard_irqs"] == 3


def test_vanished_interface_is_forgotten_without_error():
    app, knobs, _ = _setup()
    del knobs.devices["vif1.0"]
    assert app.apply(_decide(VIF, napi_defer_hard_irqs=2), 0)[0].skipped == "interface gone"
    assert "vif1.0" not in app.managed
    del knobs.devices["eth0"]
    app.begin_window(0)
    assert app.managed == {}


def test_dry_run_writes_nothing_and_reports():
    app, knobs, _ = _setup(dry_run=True)
    [a] = app.apply(_decide(VIF, napi_defer_hard_irqs=2), 0)
    assert knobs.writes == [] and a.skipped == "dry run" and a.params.napi_defer_hard_irqs == 2


def test_unsupported_write_is_reported_not_raised():
    app, knobs, _ = _setup()

    def refuse(ifname, values):
        raise KnobUnsupported(errno.EOPNOTSUPP, "no")

    knobs.set = refuse
    assert app.apply(_decide(VIF, napi_defer_hard_irqs=2), 0)[0].skipped == "unsupported"


def test_context_has_tenants_and_supported_sets():
    app, _, _ = _setup()
    ctx = build_context(app.config, app.managed)
    assert ctx.sites[VIF].tenants == ("g1",)
    assert ctx.sites[ETH].supported == {"rx_usecs"}
    assert ctx.tenants["g1"].path == (VIF,) and ctx.tenants["g1"].slo.p99_us == 200
    assert ctx.sites[ETH].initial.rx_usecs == 3


@pytest.mark.parametrize("window, reads", [(0, True), (1, False)])
def test_verification_interval(window, reads):
    app, knobs, _ = _setup(verify_every_windows=2)
    knobs.devices["vif1.0"]["napi_defer_hard_irqs"] = 9
    app.begin_window(window)
    assert (app.managed["vif1.0"].backoff_until > 0) is reads


class _QueueFakeKnobs(FakeKnobs):
    def queue_stats(self, ifname):
        return {("rx", q): (0, 0) for q in range(4)}


class _Counters:
    def __init__(self, present):
        self.now = set(present)

    def present(self):
        return set(self.now)


def test_queues_become_sites_and_are_decided_alone():
    from vcoal.agent.linux_io import LinuxSource

    napi = {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}
    knobs = _QueueFakeKnobs({"eth0:q0": dict(napi), "eth0:q2": dict(napi), "vif1.0": dict(napi)})
    cfg = parse_config({"interfaces": [
        {"match": ["eth0"], "layer": "nic", "queues": [0, 2]}, {"match": ["vif*"], "layer": "backend"},
    ]})
    app = KnobApplier(cfg, knobs)
    counters = _Counters({"eth0", "vif1.0", "lo"})
    src = LinuxSource(cfg, app, counters)
    ctx = src.context()
    q2 = Site.parse("nic:eth0:q2")
    assert q2 == Site(Layer.NIC, "eth0:q2")
    assert set(ctx.sites) == {Site(Layer.NIC, "eth0:q0"), q2, Site(Layer.BACKEND, "vif1.0")}
    app.apply(_decide(q2, gro_flush_timeout_ns=20_000), 1)
    assert knobs.writes == [("eth0:q2", {"gro_flush_timeout_ns": 20_000})]
    counters.now = {"vif1.0"}  # eth0 vanished: both of its queues go
    src.scan()
    assert set(app.managed) == {"vif1.0"} and {"eth0:q0", "eth0:q2"} <= set(knobs.forgotten)


_ENA_BUCKETS = (0, 8, 16, 32, 50, 100, 200)  # rx-usecs the device can do; it pins to the nearest


class QuantizingKnobs(FakeKnobs):
    """rx_usecs applied like ENA (nearest device bucket) or ixgbevf (stored as usecs << 2 in 2-usec units)."""

    def __init__(self, devices, quantize):
        super().__init__(devices)
        self.quantize = quantize

    def set(self, ifname, values):
        self.writes.append((ifname, dict(values)))
        applied = {k: self.quantize(v) if k == "rx_usecs" else v for k, v in values.items()}
        self.devices[ifname].update(applied)
        return applied


def _ena(v):
    return min(_ENA_BUCKETS, key=lambda b: (abs(b - v), b))


def _ixgbevf(v):
    return ((v << 2) >> 3) << 1  # the register keeps 2-usec units: odd values come back one lower


@pytest.mark.parametrize("quantize, asked, applied", [(_ena, 64, 50), (_ixgbevf, 25, 24)])
def test_a_quantizing_driver_is_written_once_per_decision(quantize, asked, applied, caplog):
    knobs = QuantizingKnobs({"eth0": {"rx_usecs": 8, "napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}}, quantize)
    cfg = parse_config({"safety": {"max_changes_per_minute": 60},
                        "interfaces": [{"match": ["eth0"], "layer": "nic", "knobs": ["rx_usecs"]}]})
    clock = Clock()
    app = KnobApplier(cfg, knobs, clock_s=clock)
    app.adopt("eth0", cfg.group_of("eth0"))
    with caplog.at_level(logging.INFO):
        for w in range(10):
            clock.t += 1
            [a] = app.apply(_decide(ETH, rx_usecs=asked), w)
            assert a.params.rx_usecs == applied and app.params(ETH).rx_usecs == applied  # the policy sees it
    assert knobs.writes == [("eth0", {"rx_usecs": asked})]  # not once a window until the rate limit
    assert caplog.text.count("instead of") == 1
    app.apply(_decide(ETH, rx_usecs=120), 10)  # a new decision is written
    app.apply(_decide(ETH, rx_usecs=asked), 11)  # and going back asks again
    assert [w[1]["rx_usecs"] for w in knobs.writes] == [asked, 120, asked]


def test_an_outside_change_of_a_quantized_knob_is_still_noticed():
    knobs = QuantizingKnobs({"eth0": {"rx_usecs": 8, "napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}}, _ena)
    cfg = parse_config({"safety": {"verify_every_windows": 1, "backoff_s": 10},
                        "interfaces": [{"match": ["eth0"], "layer": "nic", "knobs": ["rx_usecs"]}]})
    clock = Clock()
    app = KnobApplier(cfg, knobs, clock_s=clock)
    app.adopt("eth0", cfg.group_of("eth0"))
    app.apply(_decide(ETH, rx_usecs=64), 0)
    knobs.devices["eth0"]["rx_usecs"] = 200  # an administrator
    app.begin_window(1)
    assert app.managed["eth0"].backoff_until > clock.t
    clock.t += 11
    app.apply(_decide(ETH, rx_usecs=64), 2)  # after the back-off the decision is applied again
    assert [w[1]["rx_usecs"] for w in knobs.writes] == [64, 64] and knobs.devices["eth0"]["rx_usecs"] == 50


def test_a_group_matching_no_interface_is_a_warning(caplog):
    from vcoal.agent.linux_io import LinuxSource

    cfg = parse_config({"interfaces": [{"match": ["vif*"], "layer": "backend"}, {"match": ["eth0"], "layer": "nic"}]})
    knobs = FakeKnobs({"eth0": {"napi_defer_hard_irqs": 0, "gro_flush_timeout_ns": 0}})
    with caplog.at_level(logging.WARNING):
        LinuxSource(cfg, KnobApplier(cfg, knobs), _Counters({"eth0", "lo"})).context()
    assert "interfaces.0: match ['vif*'] matches no interface" in caplog.text
    assert "interfaces.1" not in caplog.text
