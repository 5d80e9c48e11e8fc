"""Tool drivers on captured real output (tests/golden/testbed/, sockperf 3.7 / iperf 3.12 on the
testbed topology, 2026-11-26) and the pure mappings of the testbed (no root needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from vcoal.linux import netns, topology
from vcoal.model.params import CoalesceParams
from vcoal.model.units import Site
from vcoal.spec import parse_scenario
from vcoal.testbed import iperf3, sockperf
from vcoal.testbed.load import client_argv, plan_loads
from vcoal.testbed.sites import SitePolls, counter_sample, merge_nic, site_devices
from vcoal.testbed.summary import rtt_histogram, split_windows

GOLDEN = Path(__file__).parent / "golden" / "testbed"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


# --- sockperf ------------------------------------------------------------------------------------


def test_sockperf_parse_udp_ping_pong():
    r = sockperf.parse(golden("sockperf_pp_udp.txt"))
    assert r.valid_s == pytest.approx(0.55)
    assert (r.sent, r.received, r.observations, r.dropped) == (9590, 9590, 9590, 0)
    assert r.percentiles_us["p50"] == pytest.approx(57.835)
    assert r.percentiles_us["p99"] == pytest.approx(90.273)
    assert r.percentiles_us["min"] <= r.percentiles_us["p25"] <= r.percentiles_us["p50"] <= r.percentiles_us["max"]
    assert {"p99_9", "p99_99", "p99_999", "p90", "p75"} <= set(r.percentiles_us)
    assert r.transactions_per_s == pytest.approx(9590 / 0.55)


def test_sockperf_parse_tcp_and_under_load():
    tcp = sockperf.parse(golden("sockperf_pp_tcp.txt"))
    assert tcp.received == 28256
    assert tcp.percentiles_us["p50"] == pytest.approx(18.457)
    assert tcp.avg_rtt_us == pytest.approx(19.454)
    ul = sockperf.parse(golden("sockperf_ul_udp.txt"))
    # under-load answers only every 100th message by default
    assert (ul.sent, ul.received, ul.observations) == (2501, 26, 26)
    assert ul.percentiles_us["p50"] == pytest.approx(67.394)


def test_sockperf_parse_rejects_output_without_statistics():
    with pytest.raises(ValueError, match="Valid Duration"):
        sockperf.parse("sockperf: ERROR: connection refused\n")


def test_sockperf_full_log_samples():
    text = golden("sockperf_full_log_udp.csv")
    samples = sockperf.parse_full_log(text)
    assert len(samples) == 41  # the captured file is trimmed to its first and last samples
    t0, rtt0 = samples[0]
    assert rtt0 > 0 and t0 > 2.0  # tx time counts from the client's start (2 s idle + warm-up)
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(samples))
    summary = sockperf.parse(text)  # the log repeats the summary
    assert summary.received == 9590


def test_sockperf_argv():
    c = sockperf.SockperfClient("198.18.1.1", 11111, 2.45, full_log="/tmp/x.csv")
    assert sockperf.build_argv(c) == [
        "sockperf", "pp", "-i", "198.18.1.1", "-p", "11111", "-t", "3", "-m", "64", "--full-rtt",
        "--full-log", "/tmp/x.csv",
    ]
    ul = sockperf.SockperfClient("198.18.1.1", 1, 2, mode="ul", tcp=True, mps=5000, reply_every=1)
    assert sockperf.build_argv(ul)[-5:] == ["--tcp", "--mps", "5000", "--reply-every", "1"]
    assert sockperf.build_server_argv("198.18.1.1", 7, tcp=True) == ["sockperf", "sr", "-i", "198.18.1.1", "-p", "7", "--tcp"]
    with pytest.raises(ValueError, match="mode"):
        sockperf.SockperfClient("198.18.1.1", 1, 2, mode="tp")
    with pytest.raises(ValueError, match="duration"):
        sockperf.SockperfClient("198.18.1.1", 1, 0.3)


# --- iperf3 --------------------------------------------------------------------------------------


def test_iperf3_parse_forward_and_reverse():
    fwd = iperf3.parse(golden("iperf3_tcp.json"))
    assert fwd.bits_per_second == pytest.approx(6.97192255401736e9)
    assert fwd.cpu_sender_pct == pytest.approx(84.97186239753157)  # client sends
    assert fwd.cpu_receiver_pct == pytest.approx(33.77050031813637)
    assert len(fwd.interval_bps) == 2 and fwd.seconds > 1.9
    rev = iperf3.parse(golden("iperf3_tcp_reverse.json"))
    assert rev.bits_per_second == pytest.approx(6.021845509244305e9)
    assert rev.cpu_sender_pct == pytest.approx(38.3240876175037)  # server sends in -R


def test_iperf3_parse_errors():
    with pytest.raises(ValueError, match="not JSON"):
        iperf3.parse("iperf3: error - unable to connect")
    with pytest.raises(ValueError, match="unable to connect"):
        iperf3.parse('{"start": {}, "error": "unable to connect to server"}')


def test_iperf3_argv():
    c = iperf3.IperfClient("198.18.1.2", 5201, 2.5, reverse=True, rate_bps=1e9)
    assert iperf3.build_argv(c) == ["iperf3", "-c", "198.18.1.2", "-p", "5201", "-t", "3", "-J", "-R", "-b", "1000000000"]
    assert iperf3.build_server_argv("198.18.1.2", 5201) == ["iperf3", "-s", "-B", "198.18.1.2", "-p", "5201", "-1"]


# --- topology names, sites, loads ------------------------------------------------------------------

SPEC = {
    "name": "t",
    "duration_s": 2.0,
    "nic": {"queues": 1},
    "guests": [
        {"name": "lat", "workload": {"kind": "request_response"}, "slo": {"p99_us": 300.0}},
        {"name": "bulk", "workload": {"kind": "bulk", "direction": "tx", "pace_gbps": 1.0}},
    ],
}


def test_plan_names_and_addresses():
    p = topology.plan("abc1", ["lat", "bulk"])
    assert p.namespaces == ("vcoal-abc1-wire", "vcoal-abc1-dom0", "vcoal-abc1-g-lat", "vcoal-abc1-g-bulk")
    assert [(g.vif, g.dev, g.ip) for g in p.guests] == [("vif1.0", "geth1", "198.18.1.1"), ("vif2.0", "geth2", "198.18.1.2")]
    assert p.napi_devices() == ("peth0", "wire0", "vif1.0", "geth1", "vif2.0", "geth2")  # unique: one trace name each
    assert topology.guest_ip(250) == "198.18.2.1"
    assert all(netns.tag_of(n) == "abc1" for n in p.namespaces)
    assert netns.tag_of("vct-123456") is None and netns.tag_of("other") is None
    with pytest.raises(ValueError, match="tag"):
        topology.plan("Bad-Tag", ["x"])
    with pytest.raises(ValueError):
        netns.remove("not-ours")


def test_sites_map_to_the_devices_whose_napi_moderates_them():
    spec = parse_scenario(SPEC)
    p = topology.plan("abc1", ["lat", "bulk"])
    d = site_devices(spec, p)
    assert (d[Site.parse("nic:q0")].dev, d[Site.parse("nic:q0")].napi_direction) == ("peth0", "rx")
    assert (d[Site.parse("backend:lat")].dev, d[Site.parse("backend:lat")].napi_direction) == ("vif1.0", "tx")
    assert d[Site.parse("frontend:bulk")].ns == "vcoal-abc1-g-bulk"
    stats = {"rx_packets": 10, "tx_packets": 20, "rx_bytes": 100, "tx_bytes": 200, "rx_dropped": 1, "tx_dropped": 2}
    # every site's transmit wakes the NAPI at the other end of its veth
    assert [(str(s), sd.dev, sd.peer_dev) for s, sd in d.items() if s.instance in ("q0", "lat")] == [
        ("nic:q0", "peth0", "wire0"), ("backend:lat", "vif1.0", "geth1"), ("frontend:lat", "geth1", "vif1.0")]
    back = counter_sample(d[Site.parse("backend:lat")], stats, 5, SitePolls(own=77, peer=33))
    # the vif transmits towards the guest (model rx) and receives what the guest sends (model tx)
    assert (back.rx.packets, back.tx.packets) == (20, 10)
    # its own NAPI moderates tx (polls = wake-ups); its transmit wakes geth1's NAPI (the guest's interrupt)
    assert (back.tx.interrupts, back.tx.polls, back.rx.interrupts, back.rx.polls) == (77, 77, 33, 0)
    front = counter_sample(d[Site.parse("frontend:lat")], stats, 5, SitePolls(own=77, peer=33))
    assert (front.rx.interrupts, front.rx.polls, front.tx.interrupts, front.tx.polls) == (77, 77, 33, 0)
    nic = counter_sample(d[Site.parse("nic:q0")], stats, 5, SitePolls(own=77, peer=33))
    assert (nic.rx.packets, nic.rx.interrupts, nic.rx.polls, nic.rx.drops) == (10, 77, 77, 1)
    assert (nic.tx.interrupts, nic.tx.polls) == (0, 0)  # a veth has no TX completions
    # without tracing: the host-wide NET_RX count everywhere a NAPI wakes (today's fallback)
    front = counter_sample(d[Site.parse("frontend:lat")], stats, 5, SitePolls.host_wide(9))
    assert (front.rx.interrupts, front.rx.polls, front.tx.interrupts, front.tx.polls) == (9, 9, 9, 0)


def test_merge_nic_takes_the_smallest_deferral():
    a = CoalesceParams(napi_defer_hard_irqs=2, gro_flush_timeout_ns=200_000)
    b = CoalesceParams(napi_defer_hard_irqs=2, gro_flush_timeout_ns=50_000)
    c = CoalesceParams(napi_defer_hard_irqs=0, gro_flush_timeout_ns=500_000)  # no deferral at all
    assert merge_nic({Site.parse("nic:q0"): a, Site.parse("nic:q1"): b}) == b
    assert merge_nic({Site.parse("nic:q0"): a, Site.parse("nic:q1"): c}) == c


def test_loads_from_spec():
    spec = parse_scenario(SPEC)
    p = topology.plan("abc1", ["lat", "bulk"])
    loads = plan_loads(spec, p, 2.0, "/tmp/logs")
    lat, bulk = loads
    assert (lat.tool, lat.server_ns, lat.client_ns, lat.proto) == ("sockperf", "vcoal-abc1-g-lat", "vcoal-abc1-wire", "udp")
    assert client_argv(lat)[:8] == ["sockperf", "pp", "-i", "198.18.1.1", "-p", "11111", "-t", "3"]
    assert "/tmp/logs/lat.csv" in client_argv(lat)
    argv = client_argv(bulk)
    assert argv[:3] == ["iperf3", "-c", "198.18.1.2"] and "-R" in argv and "1000000000" in argv
    trace = parse_scenario({**SPEC, "guests": [{"name": "t", "workload": {"kind": "trace", "trace_rows": [[0, 64, "rx"]]}}]})
    with pytest.raises(ValueError, match="not supported"):
        plan_loads(trace, topology.plan("abc1", ["t"]), 2.0, "/tmp")


def test_window_split_of_samples():
    samples = [(2.40, 10.0), (2.90, 20.0), (3.45, 30.0), (3.50, 40.0), (9.0, 99.0)]
    started_ns, t_start_ns = 1_000_000_000, 3_400_000_000
    per = split_windows(samples, started_ns, t_start_ns, 1_000_000_000, 2)
    assert [h.count for h in per] == [2, 2]
    assert rtt_histogram(samples).count == 5


def test_tap_filter_frames_lines_and_window_quantiles(tmp_path):
    from vcoal.testbed import tap

    prog = tap.bpf_program(16)
    assert prog[4] == (0x30, 0, 0, 49) and prog[5] == (0x54, 0, 0, 15) and len(prog) == 9
    with pytest.raises(ValueError, match="power of two"):
        tap.bpf_program(12)
    # a captured sockperf request (Ethernet + IPv4 + UDP 40000 -> 11111, seq 16)
    payload = bytes.fromhex("0000000000000010000300000040968f")
    frame = bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x11" + bytes(10) + (40000).to_bytes(2, "big") \
        + (11111).to_bytes(2, "big") + bytes(4) + payload
    assert tap.parse_frame(frame) == (40000, 11111, 16)
    assert tap.parse_frame(frame[:40]) is None
    path = tmp_path / "tap.txt"
    path.write_text("11111 100 20000\n11111 200 30000\n11112 150 90000\n111")  # last line still being written
    reader = tap.TapReader(path)
    samples = reader.read_new()
    assert samples == [(11111, 100, 20000), (11111, 200, 30000), (11112, 150, 90000)]
    with path.open("a") as fh:
        fh.write("11 300 50000\n")
    assert reader.read_new() == [(11111, 300, 50000)]
    assert tap.window_quantiles(samples, 11111, 100, 300) == (2, 20.0, 30.0)
    assert tap.window_quantiles(samples, 11112, 0, 1000) == (1, 90.0, 90.0)
    assert tap.window_quantiles(samples, 11111, 5000, 6000) == (0, None, None)


def test_knobset_merges_nic_queues_and_writes_only_changes():
    from vcoal.testbed.trial import KnobSet

    spec = parse_scenario({**SPEC, "nic": {"queues": 2}})
    devices = site_devices(spec, topology.plan("abc1", ["lat", "bulk"]))
    writes = []

    class FakeKnobs:
        def set(self, dev, values):
            writes.append((dev, dict(values)))
            return dict(values)

        def close(self):
            pass

    ks = KnobSet.__new__(KnobSet)
    ks.devices, ks._knobs, ks._applied = devices, {d.ns: FakeKnobs() for d in devices.values()}, {}
    params = dict(spec.site_params())
    deferred = CoalesceParams(napi_defer_hard_irqs=2, gro_flush_timeout_ns=200_000)
    lighter = CoalesceParams(napi_defer_hard_irqs=2, gro_flush_timeout_ns=50_000)
    params[Site.parse("nic:q0")], params[Site.parse("nic:q1")] = deferred, lighter
    out = ks.apply(params)
    assert len(writes) == 5  # peth0 once for both queues, two vifs, two geths
    peth0 = next(w for w in out if w["dev"].endswith("/peth0"))
    assert peth0["sites"] == ["nic:q0", "nic:q1"] and peth0["applied"]["gro_flush_timeout_ns"] == 50_000
    writes.clear()
    assert ks.apply(params, {Site.parse("nic:q0")}) == [] and writes == []  # nothing changed
    params[Site.parse("frontend:lat")] = deferred
    ks.apply(params, {Site.parse("frontend:lat")})
    assert writes == [("geth1", {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 200_000})]


def test_counters_name_a_device_that_is_gone():
    """A site's device missing from its namespace's link dump: one line naming both, not a KeyError."""
    from vcoal.model.units import Layer
    from vcoal.testbed.sites import SiteDevice
    from vcoal.testbed.trial import Counters

    class Links:
        def read(self):
            return {"vc-a": {"peth0": {}}}

    c = object.__new__(Counters)  # no namespaces: only the sampling is under test
    c.devices = {Site(Layer.NIC, "q0"): SiteDevice(Site(Layer.NIC, "q0"), "vc-a", "peth0", "rx", False)}
    c.tenant_dev = {"g1": ("vc-b", "eth0")}
    c._links = Links()
    c.kthreads = []
    c.trace = None
    with pytest.raises(RuntimeError, match="netns vc-b: no device 'eth0'"):
        c.sample()


def _one(workload: dict) -> object:
    return parse_scenario({**SPEC, "guests": [{"name": "g", "workload": workload}]})


def test_a_constant_think_time_maps_like_a_number():
    """think_us = constant 50 µs with 2 outstanding: sockperf under-load at 2 x 1e6 / 50 = 40 000 msg/s,
    the same argv as think_us = 50; a constant interarrival runs at rate_pps (even pacing)."""
    argv = []
    for think in ({"dist": "constant", "value": 50.0}, 50.0):
        spec = _one({"kind": "request_response", "outstanding": 2, "request_bytes": 200, "think_us": think})
        check_tools_ok(spec)
        argv.append(client_argv(plan_loads(spec, topology.plan("abc1", ["g"]), 2.0, "/tmp")[0]))
    assert argv[0] == argv[1]
    assert argv[0][argv[0].index("--mps") + 1] == "40000" and argv[0][argv[0].index("-m") + 1] == "200"
    even = _one({"kind": "poisson", "rate_pps": 5000, "interarrival": {"dist": "constant", "value": 1}})
    check_tools_ok(even)
    ul = client_argv(plan_loads(even, topology.plan("abc1", ["g"]), 2.0, "/tmp")[0])
    assert ul[ul.index("--mps") + 1] == "5000"


def test_a_one_way_stream_sends_the_simulators_packet_size():
    """poisson, reply_every 0: iperf3 -u with -l packet_bytes and -b rate_pps x packet_bytes x 8 (the
    field the simulator draws a poisson packet's size from; request_bytes is a request-response field)."""
    spec = _one({"kind": "poisson", "rate_pps": 30000, "packet_bytes": 64, "reply_every": 0})
    argv = client_argv(plan_loads(spec, topology.plan("abc1", ["g"]), 2.0, "/tmp")[0])
    assert argv[0] == "iperf3" and "-u" in argv
    assert argv[argv.index("-l") + 1] == "64" and argv[argv.index("-b") + 1] == str(30000 * 64 * 8)
    answered = _one({"kind": "poisson", "rate_pps": 1000, "packet_bytes": 300, "reply_every": 4})
    ul = client_argv(plan_loads(answered, topology.plan("abc1", ["g"]), 2.0, "/tmp")[0])
    assert ul[ul.index("-m") + 1] == "300"


def check_tools_ok(spec) -> None:
    from vcoal.testbed.load import workload_problem

    assert [workload_problem(g) for g in spec.guests] == [None]


@pytest.mark.parametrize(("workload", "message"), [
    ({"kind": "request_response", "think_us": {"dist": "exponential", "mean": 50}},
     r"^guests\.g\.workload\.think_us: dist = 'exponential': the testbed's load tools send fixed sizes"),
    ({"kind": "poisson", "interarrival": {"dist": "lognormal", "mean": 1, "sigma": 1}},
     r"^guests\.g\.workload\.interarrival: dist = 'lognormal'"),
    ({"kind": "poisson", "app_us": {"dist": "uniform", "low": 1, "high": 3}}, r"^guests\.g\.workload\.app_us: dist = 'uniform'"),
    ({"kind": "poisson", "on_us": {"dist": "constant", "value": 100}, "off_us": 900.0, "burst_group": "x"},
     r"^guests\.g\.workload\.on_us: dist = 'constant'"),
    ({"kind": "poisson", "on_us": 100.0, "off_us": 900.0}, r"^guests\.g\.workload\.on_us: on/off bursts: the testbed's load tools send at one steady rate"),
    ({"kind": "poisson", "steps": [[0.5, 2000.0]]}, r"^guests\.g\.workload\.steps: rate steps"),
])
def test_the_testbed_refuses_what_its_tools_cannot_send_in_one_line(workload, message):
    from vcoal.testbed.load import check_tools

    with pytest.raises(ValueError, match=message) as info:
        check_tools(_one(workload))
    assert "\n" not in str(info.value)


def test_only_round_trips_sent_in_the_measured_period_count():
    """A sample's time is the client's start plus its tx time; the period is [t0, t1)."""
    from vcoal.testbed.summary import in_period

    started = 5_000_000_000
    samples = [(0.5, 10.0), (1.0, 20.0), (1.5, 30.0), (2.0, 40.0), (2.5, 50.0)]
    assert in_period(samples, started, started + 1_000_000_000, started + 2_000_000_000) == [(1.0, 20.0), (1.5, 30.0)]
    assert in_period(samples, started, 0, 0) == []
