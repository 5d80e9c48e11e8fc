"""The HTML report of a small stored sweep (real simulator): every plot drawn, self-contained, renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import tiny_scenarios as tiny
from conftest import tool_path
from vcoal.experiments import parse_sweep, run_sweep
from vcoal.experiments.worker import run_simulation
from vcoal.report import render_report
from vcoal.report.data import load_report_data, slo_table

STEP = tiny.scenario("step", tiny.rr(60.0), tiny.poisson("burst", step=(0.015, 90000), p99_us=200.0), duration_s=0.03)

FLAT = """
name = "flat"
duration_s = 0.02
warmup_s = 0.002
[window]
duration_us = 2000
[[guests]]
name = "bulk"
workload = { kind = "bulk", window_pkts = 16 }
"""


def flaky_simulation(spec, policy, seed=None, duration_s=None):
    """The simulator, except that seed 13 fails (to show a failure in the report)."""
    if seed == 13:
        raise RuntimeError("injected failure for seed 13")
    return run_simulation(spec, policy, seed=seed, duration_s=duration_s)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "step.toml").write_text(STEP)
    (root / "flat.toml").write_text(FLAT)
    data = {"name": "report-test", "scenario": ["step.toml", "flat.toml"], "seeds": [1],
            "axes": {"policy": "all"}, "trials": [{"policy": "static", "seeds": [13]}]}
    out = root / "results"
    outcome = run_sweep(parse_sweep(data, "report", root).expand(), out, workers=2, trial_fn=flaky_simulation)
    assert outcome.failed == 2, outcome.failures
    return out


def test_every_plot_is_drawn_with_data(stored):
    info = render_report(stored, stored / "report.html")
    kinds = [p.spec.kind for p in info.plots]
    assert kinds.count("pareto") == 2 and kinds.count("cdf") == 2 and kinds.count("timeseries") >= 1
    for p in info.plots:
        assert p.series > 0 and p.points > 0, p.spec.id
        assert p.svg.startswith("<svg") and p.svg.count("<path") > 5, p.spec.id
    page = (stored / "report.html").read_text()
    assert page.count("<svg") == len(info.plots)
    # the phase-change plot is the step scenario's, with its load change marked
    assert any(p.spec.kind == "timeseries" and p.spec.scenario == "step" for p in info.plots)


def test_page_is_self_contained_and_complete(stored):
    info = render_report(stored)
    page = info.html
    # offline: no scripts, stylesheets, images or fonts fetched from anywhere
    assert not re.search(r'<(script|link|img)\b', page)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "url(http" not in page
    # ids are unique across the inlined SVGs
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    # SLO table, decisions, failures and provenance of every trial
    assert "SLO attainment per scenario × policy" in page
    assert "injected failure for seed 13" in page
    data = load_report_data(stored)
    assert len(data.trials) == info.trials
    for t in data.trials:
        assert t.run_key in page
    assert "decision records" in page


def test_slo_table_counts(stored):
    data = load_report_data(stored)
    cells = slo_table(data)
    assert {s for s, _ in cells} == {"step", "flat"}
    static = cells[("step", "static")]
    assert static.trials == 2 and static.failed == 1
    assert static.attainment is not None and 0 <= static.attainment <= 1


@pytest.mark.tools("chromium")
def test_report_renders_in_headless_chromium(stored, tmp_path):
    browser = tool_path("chromium")
    render_report(stored, stored / "report.html")
    shot = tmp_path / "report.png"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400", "--hide-scrollbars",
        f"--screenshot={shot}", (stored / "report.html").resolve().as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    img = imread(str(shot))[:, :, :3]
    non_white = (img.mean(axis=2) < 0.9).mean()
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    assert 0.02 < non_white < 0.9  # text, tables and plots drawn; not blank, not an error page
    # the plots area (below the header) has colour: policy markers and lines
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 0.3).mean() > 0.001


def test_unreadable_files_are_listed_not_fatal(stored, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    (copy / "trials" / "0000bad.json").write_text("{broken")
    newer = next((copy / "trials").glob("[!0]*.json"))
    newer.write_text(newer.read_text().replace('"format_version":2', '"format_version":99', 1))
    info = render_report(copy)
    assert "not valid JSON" in info.html and "format_version 99 is newer" in info.html
    assert info.trials == len(load_report_data(stored).trials) - 1
    assert all(p.points > 0 for p in info.plots)


def test_cpu_per_packet_is_shown_in_microseconds_with_three_significant_digits(stored):
    from vcoal.report.render import _fmt

    assert [_fmt(v) for v in (12234.0, 12.234, 1.2345, 0.012345, 999.9, 0.0)] == \
        ["12,200", "12.2", "1.23", "0.0123", "1,000", "0"]
    page = render_report(stored).html
    cells = slo_table(load_report_data(stored))
    shown = re.findall(r"µs · ([0-9.,]+) µs CPU/pkt", page)
    expected = sorted(_fmt(c.cpu_ns_per_packet_median / 1e3) for c in cells.values()
                      if c.cpu_ns_per_packet_median is not None)
    assert shown and sorted(shown) == expected
    assert "ns/pkt" not in page and not re.search(r"\d\.\d+e[+-]\d", page)
