"""Scenario advice: open-loop offered load above the link is warned about (not refused)."""

from __future__ import annotations

from typer.testing import CliRunner

from vcoal.spec import link_warning, parse_scenario


def _spec(rate_pps: float, packet_bytes: int = 1500, link_gbps: float = 10.0, **extra) -> dict:
    return {
        "name": "hot", "duration_s": 0.002, "warmup_s": 0.0002, "host": {"layers": ["nic"], "link_gbps": link_gbps},
        "guests": [{"name": "g", "workload": {"kind": "poisson", "rate_pps": rate_pps, "packet_bytes": packet_bytes,
                                              **extra}}],
    }


def test_poisson_above_the_link_warns_with_both_figures():
    rate, size, link = 1_000_000, 1500, 10.0
    line = link_warning(parse_scenario(_spec(rate, size, link)))
    assert line is not None and "\n" not in line
    assert f"rx {rate * size * 8 / 1e9:.2f} Gbit/s" in line and "host.link_gbps = 10 Gbit/s" in line
    assert link_warning(parse_scenario(_spec(rate, size, link_gbps=rate * size * 8 / 1e9 * 1.01))) is None


def test_a_step_above_the_link_counts_at_its_peak():
    base = _spec(10_000, 1000, steps=[[0.001, 2_000_000]])
    assert f"rx {2_000_000 * 1000 * 8 / 1e9:.2f} Gbit/s" in link_warning(parse_scenario(base))


def test_trace_average_over_its_span():
    rows = [[float(i), 1500, "rx"] for i in range(101)]  # 101 packets of 1500 B in 100 µs
    spec = _spec(0)
    spec["guests"][0]["workload"] = {"kind": "trace", "trace_rows": rows}
    gbps = 101 * 1500 * 8 / 100e-6 / 1e9
    assert f"rx {gbps:.2f} Gbit/s" in link_warning(parse_scenario(spec))
    spec["host"]["link_gbps"] = 20.0
    assert link_warning(parse_scenario(spec)) is None


def test_closed_loop_is_never_warned():
    spec = {"guests": [{"name": "b", "workload": {"kind": "bulk", "window_pkts": 10_000}}]}
    assert link_warning(parse_scenario(spec)) is None


def test_sim_and_compare_print_the_warning_and_still_run(tmp_path):
    from vcoal.cli import main

    path = tmp_path / "hot.toml"
    path.write_text('name = "hot"\nduration_s = 0.002\nwarmup_s = 0.0002\n[host]\nlayers = ["nic"]\n'
                    '[[guests]]\nname = "g"\nworkload = { kind = "poisson", rate_pps = 1000000 }\n')
    if not main.app.registered_commands[1:]:
        main._register()
    for args in (["sim", str(path), "--json"], ["compare", str(path), "--policies", "off", "--workers", "1"]):
        res = CliRunner().invoke(main.app, args)
        assert res.exit_code == 0, res.output
        warned = [x for x in res.output.splitlines() if x.startswith("vcoal: warning: hot: open-loop")]
        assert len(warned) == 1 and "12.00 Gbit/s" in warned[0]
