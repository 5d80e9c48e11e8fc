"""The same tiny sweep through a Dask LocalCluster and the process pool gives identical results."""

from __future__ import annotations

import tomllib

import pytest

import tiny_scenarios as tiny
from vcoal.experiments import parse_sweep, run_sweep
from vcoal.results import iter_documents, query

pytest.importorskip("distributed", reason="Dask is the optional [cluster] extra")

SCENARIO = tiny.scenario("tiny-dask", tiny.rr(), tiny.poisson("bg", step=(0.01, 60000)))


def _comparable(root):
    """Every stored result without wall-clock facts (meta holds the simulator's wall time)."""
    out = {}
    for d in iter_documents(root):
        res = d.result.to_dict()
        res.pop("meta")
        out[d.run_key] = (d.doc["status"], d.doc["spec_hash"], d.doc["summary"], res)
    return out


def test_dask_local_and_process_pool_agree_for_identical_seeds(tmp_path):
    data = {"name": "dask-vs-pool", "scenario": tomllib.loads(SCENARIO), "seeds": [1, 2],
            "axes": {"policy": ["off", "static"], "nic.coalesce.rx_frames": [1, 16]}}
    trials = parse_sweep(data, "test").expand()
    pool = run_sweep(trials, tmp_path / "pool", workers=2)
    dask = run_sweep(trials, tmp_path / "dask", dask_local=2)
    assert pool.complete and dask.complete, (pool.failures, dask.failures)
    assert pool.ok == dask.ok == len(trials) == 8
    assert dask.engine.startswith("dask local")
    a, b = _comparable(tmp_path / "pool"), _comparable(tmp_path / "dask")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    sql = "SELECT run_key, p99_us_max, cpu_ns_per_packet, irq_per_s FROM trials ORDER BY run_key"
    assert query(tmp_path / "pool", sql) == query(tmp_path / "dask", sql)
    engines = {d.provenance["engine"] for d in iter_documents(tmp_path / "dask")}
    assert engines == {dask.engine}
