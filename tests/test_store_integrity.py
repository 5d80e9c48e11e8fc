"""Nothing lost: damaged trial files are found and run again, a damaged summary is rebuilt, a
results path is a path (not a glob), and ``results query`` cannot touch anything but the views."""

from __future__ import annotations

import tomllib
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import tiny_scenarios as tiny
from vcoal.experiments import parse_sweep, run_sweep
from vcoal.experiments.synthetic import synthetic_trial
from vcoal.results import check_store, load_trial, query
from vcoal.results.store import SUMMARY_DIR, TRIALS_DIR

SEEDS = 4


def make_trials():
    data = {"name": "integrity", "scenario": tomllib.loads(tiny.scenario("tiny", tiny.rr())), "seeds": SEEDS}
    return parse_sweep(data, "test").expand()


def sweep(out: Path):
    return run_sweep(make_trials(), out, workers=1, trial_fn=synthetic_trial)


def count(out: Path) -> int:
    return query(out, "SELECT count(*) FROM trials WHERE status = 'ok'")[1][0][0]


def cli(*args):
    from vcoal.cli import main

    if not main.app.registered_commands[1:]:
        main._register()
    return CliRunner().invoke(main.app, [str(a) for a in args])


@pytest.fixture
def store(tmp_path) -> Path:
    out = tmp_path / "store"
    assert sweep(out).ok == SEEDS
    return out


@pytest.mark.parametrize("summarised", [True, False], ids=["with-row", "without-row"])
def test_a_truncated_trial_file_is_reported_and_run_again(store, summarised):
    victim = sorted((store / TRIALS_DIR).glob("*.json"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    if not summarised:  # a driver killed between the file and its summary row
        for part in (store / SUMMARY_DIR).glob("*.parquet"):
            part.unlink()
    check = check_store(store)
    assert check.damaged_keys() == {victim.stem}
    res = cli("results", "show", store)
    assert res.exit_code == 0 and f"{victim}: damaged" in res.output
    outcome = sweep(store)
    assert (outcome.ok, outcome.skipped) == (1, SEEDS - 1)
    assert any(str(victim) in w for w in outcome.store_warnings)
    assert load_trial(victim).ok  # the new result replaced the damaged file
    assert check_store(store).damaged_files == {} and count(store) == SEEDS


def test_a_same_size_damage_is_caught_by_the_checksum(store):
    victim = sorted((store / TRIALS_DIR).glob("*.json"))[0]
    data = bytearray(victim.read_bytes())
    data[data.index(b'"status":"ok"') + 10] = ord("x")  # still JSON-shaped text, same length
    victim.write_bytes(bytes(data))
    assert "checksum" in check_store(store).damaged_files[victim]


def test_report_names_a_truncated_file(store, tmp_path):
    victim = sorted((store / TRIALS_DIR).glob("*.json"))[0]
    victim.write_bytes(victim.read_bytes()[:50])
    res = cli("report", store, "-o", tmp_path / "r.html")
    assert res.exit_code == 0 and str(victim) in res.output


def test_a_damaged_summary_part_is_rebuilt_with_a_warning(store):
    parts = sorted((store / SUMMARY_DIR).glob("*.parquet"))
    for part in parts:
        part.write_bytes(b"not parquet at all" * 8)
    res = cli("results", "query", store, "SELECT count(*) AS n FROM trials", "-f", "csv")
    assert res.exit_code == 0, res.output
    assert "damaged summary part" in res.output and "rebuilt" in res.output
    assert res.output.strip().splitlines()[-1] == str(SEEDS)
    assert sorted(p.name for p in (store / SUMMARY_DIR / "damaged").iterdir()) == sorted(p.name for p in parts)
    assert sweep(store).skipped == SEEDS  # resume works and runs nothing again


def test_a_results_path_with_glob_characters_is_a_path(tmp_path):
    out = tmp_path / "res[1]*?"
    assert sweep(out).ok == SEEDS
    (tmp_path / "res1").mkdir()  # what the pattern would have matched instead
    assert count(out) == SEEDS
    assert sweep(out).skipped == SEEDS
    res = cli("results", "show", out)
    assert res.exit_code == 0 and "Traceback" not in res.output


@pytest.mark.parametrize(
    "sql",
    [
        "COPY trials TO '{tmp}/copy.csv'",
        "ATTACH '{tmp}/attached.db'",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_parquet('{store}/summary/*.parquet')",
        "INSTALL httpfs",
        "SET enable_external_access = true",
    ],
)
def test_query_is_read_only(store, tmp_path, sql):
    sql = sql.format(tmp=tmp_path, store=store)
    with pytest.raises(duckdb.Error):
        query(store, sql)
    res = cli("results", "query", store, sql)
    assert res.exit_code == 2 and res.output.startswith("vcoal: error: query:"), res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "copy.csv").exists() and not (tmp_path / "attached.db").exists()


@pytest.mark.parametrize("sql", ["", "   ", "/* only a comment */"])
def test_empty_sql_gets_one_line(store, sql):
    res = cli("results", "query", store, sql)
    assert res.exit_code == 2 and res.output.startswith("vcoal: error:") and "SQL" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
