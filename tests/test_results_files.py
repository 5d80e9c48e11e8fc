"""Result files: round trip, upgrade of version 1, refusal of newer versions, the summary store."""

from __future__ import annotations

import json
import tomllib

import pytest

from vcoal.experiments.synthetic import synthetic_trial
from vcoal.policies import make_policy
from vcoal.results import (
    FORMAT_VERSION,
    ResultFormatError,
    SummaryWriter,
    compact,
    connect,
    load_trial,
    make_document,
    query,
    store_document,
    sync_summary,
)
from vcoal.results.store import trial_path
from vcoal.spec import parse_scenario

SCENARIO = """
name = "files"
duration_s = 0.02
[window]
duration_us = 2000
[[guests]]
name = "a"
workload = { kind = "poisson", rate_pps = 20000, steps = [[0.01, 50000]] }
slo = { p99_us = 100.0 }
"""


@pytest.fixture
def result():
    spec = parse_scenario(tomllib.loads(SCENARIO))
    return spec, synthetic_trial(spec, make_policy("static", {"nic": {"rx_usecs": 8}}), seed=3)


def _doc(spec, result, key="k1", finished="2026-01-01T00:00:00.000+00:00"):
    return make_document(
        run_key=key,
        trial={"sweep": "s", "label": "files static seed=3", "scenario": spec.name, "policy": "static",
               "policy_params": {"nic": {"rx_usecs": 8}}, "seed": 3, "duration_s": 0.02, "axes": {}},
        spec=spec.model_dump(mode="json"),
        spec_hash=spec.spec_hash(),
        provenance={"package_version": "0.1.0", "git_commit": "abc", "git_dirty": False,
                    "host": {"hostname": "h"}, "finished_at": finished, "wall_s": 0.1},
        result=result,
    )


def test_round_trip_is_self_describing(tmp_path, result):
    spec, res = result
    path, facts = store_document(tmp_path, _doc(spec, res))
    assert facts["file_bytes"] == path.stat().st_size
    raw = json.loads(path.read_text())
    assert raw["format_version"] == FORMAT_VERSION and raw["kind"] == "vcoal.trial"
    assert raw["fields"] == list(raw)  # the explicit field list names every top-level key, in order
    for key in ("spec", "spec_hash", "provenance", "summary", "series", "trial"):
        assert raw[key]
    assert raw["series"]["windows"] and raw["series"]["decisions"]
    loaded = load_trial(path)
    assert loaded.ok and loaded.result == res
    assert loaded.summary["p99_us_max"] == res.tenants[0].p99_us


def test_version_1_is_upgraded(tmp_path, result):
    spec, res = result
    v1 = {
        "format_version": 1,
        "run_key": "old1",
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "seed": 3,
        "policy": "static",
        "provenance": {"git_commit": "abc", "package_version": "0.0.9"},
        "result": res.to_dict(),
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    doc = load_trial(path)
    assert doc.doc["format_version"] == FORMAT_VERSION
    assert doc.doc["provenance"]["upgraded_from"] == 1
    assert doc.trial["seed"] == 3 and doc.trial["policy"] == "static" and doc.trial["scenario"] == "files"
    assert doc.result == res
    assert doc.summary["cpu_ns_per_packet"] == res.cpu_ns_per_packet()
    failed_v1 = {"format_version": 1, "run_key": "old2", "spec": {}, "error": "it broke"}
    path.write_text(json.dumps(failed_v1))
    doc = load_trial(path)
    assert not doc.ok and doc.doc["error"]["message"] == "it broke"


def test_newer_versions_are_refused_with_a_clear_message(tmp_path, result):
    spec, res = result
    doc = _doc(spec, res)
    doc["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "new.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultFormatError) as exc:
        load_trial(path)
    msg = str(exc.value)
    assert str(path) in msg and f"format_version {FORMAT_VERSION + 1} is newer" in msg and "upgrade vcoal" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"kind": "other", "run_key": "x"}', "not a vcoal trial result"),
        ('{"run_key": "x", "format_version": "two"}', "format_version 'two': expected an integer in [1,"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultFormatError, match=expected.replace("[", r"\[")) as exc:
        load_trial(path)
    assert "\n" not in str(exc.value)


def test_summary_parts_views_sync_and_compact(tmp_path, result):
    spec, res = result
    writer = SummaryWriter(tmp_path, batch_rows=2, batch_s=1e9)
    for i in range(5):
        doc = _doc(spec, res, key=f"k{i}")
        store_document(tmp_path, doc)
        writer.add(doc)
    assert len(list((tmp_path / "summary").glob("trials-*.parquet"))) == 2  # 2 full batches
    writer.flush()
    assert query(tmp_path, "SELECT count(*) FROM trials")[1] == [(5,)]
    assert query(tmp_path, "SELECT count(*) FROM tenants")[1] == [(5,)]
    # a failure later superseded by a success: the view keeps the latest row per run key
    failed = make_document(run_key="k5", trial=_doc(spec, res)["trial"], spec={}, spec_hash="",
                           provenance={"finished_at": "2026-01-01T00:00:00.000+00:00"},
                           error={"type": "RuntimeError", "message": "boom", "traceback": ""})
    store_document(tmp_path, failed)
    assert sync_summary(tmp_path) == 1
    ok = _doc(spec, res, key="k5", finished="2026-01-02T00:00:00.000+00:00")
    store_document(tmp_path, ok)
    assert not (tmp_path / "failed" / "k5.json").exists() and trial_path(tmp_path, "k5").exists()
    assert sync_summary(tmp_path) == 1
    assert sync_summary(tmp_path) == 0
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM trials_all").fetchone() == (7,)
    assert con.execute("SELECT status FROM trials WHERE run_key = 'k5'").fetchall() == [("ok",)]
    con.close()
    compact(tmp_path)
    assert len(list((tmp_path / "summary").glob("trials-*.parquet"))) == 1
    assert query(tmp_path, "SELECT count(*), count(DISTINCT run_key) FROM trials")[1] == [(6, 6)]
    assert query(tmp_path, "SELECT count(*) FROM tenants")[1] == [(6,)]


def test_empty_directory_has_empty_views(tmp_path):
    assert query(tmp_path, "SELECT count(*) FROM trials")[1] == [(0,)]


@pytest.mark.parametrize("content", [b"\xff\xfe{", b"{not json", b""])
def test_unreadable_sweep_meta_reads_as_empty(tmp_path, content):
    from vcoal.results import read_sweep_meta

    (tmp_path / "sweep.json").write_bytes(content)
    assert read_sweep_meta(tmp_path) == {}
    (tmp_path / "sweep.json").write_text('{"name": "s", "runs": []}')
    assert read_sweep_meta(tmp_path) == {"name": "s", "runs": []}
