"""Placement fields: ``nic.irq_cores`` (queue -> driver-domain core) and per-guest ``backend_core``."""

from __future__ import annotations

import json

import pytest

from vcoal.sim import run_scenario
from vcoal.spec import parse_scenario, placement_line
from vcoal.spec.advice import core_users


def _strip(result, spec_too: bool = False) -> str:
    d = result.to_dict()
    d["meta"].pop("wall_s")
    d["meta"].pop("engine")
    if spec_too:
        d.pop("spec_hash")  # the spelled-out spec is another document
    return json.dumps(d, sort_keys=True)


PAIR = {
    "name": "pair", "duration_s": 0.01, "warmup_s": 0.001,
    "host": {"driver_domain_cores": 3}, "nic": {"queues": 2},
    "guests": [
        {"name": "rr", "nic_queue": 0, "workload": {"kind": "request_response", "think_us": 20}},
        {"name": "bulk", "nic_queue": 1, "workload": {"kind": "bulk", "pace_gbps": 0.5}},
        {"name": "pois", "nic_queue": 1, "workload": {"kind": "poisson", "rate_pps": 20000}},
    ],
}


def _with(**fields) -> dict:
    doc = json.loads(json.dumps(PAIR))
    if "irq_cores" in fields:
        doc["nic"]["irq_cores"] = fields["irq_cores"]
    for g, core in zip(doc["guests"], fields.get("backend_cores", ()), strict=False):
        g["backend_core"] = core
    return doc


@pytest.mark.parametrize(("fields", "needle"), [
    ({"irq_cores": [0]}, "nic.irq_cores: 1 entries, needs one per queue (nic.queues = 2)"),
    ({"irq_cores": [0, 3]}, "nic.irq_cores[1] = 3: core out of range [0, 2]"),
    ({"irq_cores": [-1, 0]}, "nic.irq_cores[0] = -1: core out of range [0, 2]"),
    ({"backend_cores": [0, 5]}, "guests.bulk.backend_core = 5: core out of range [0, 2]"),
])
def test_bad_placement_is_refused_with_one_line_naming_field_and_range(fields, needle):
    with pytest.raises(ValueError) as err:
        parse_scenario(_with(**fields))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_default_placement_is_queue_and_guest_index_mod_cores():
    spec = parse_scenario(PAIR)
    cores = spec.host.driver_domain_cores
    users = core_users(spec)
    for q in range(spec.nic.queues):
        assert f"nic:q{q}" in users[q % cores]
    for i, g in enumerate(spec.guests):
        assert f"backend:{g.name}" in users[i % cores]
    # spelling the default out changes nothing, bit for bit
    explicit = parse_scenario(_with(irq_cores=[q % cores for q in range(2)], backend_cores=[i % cores for i in range(3)]))
    assert _strip(run_scenario(spec, engine="compiled"), True) == _strip(run_scenario(explicit, engine="compiled"), True)


def test_placement_moves_the_work_and_both_engines_agree():
    placed = parse_scenario(_with(irq_cores=[0, 0], backend_cores=[0, 0, 0]))  # everyone on dom0-c0
    runs = {e: run_scenario(placed, engine=e) for e in ("des", "compiled")}
    assert _strip(runs["des"]) == _strip(runs["compiled"])
    cpus = {c.name: c for c in runs["des"].cpus}
    assert cpus["dom0-c1"].irq == cpus["dom0-c1"].softirq == 0.0
    assert cpus["dom0-c2"].irq == cpus["dom0-c2"].softirq == 0.0
    assert cpus["dom0-c0"].softirq > 0
    assert placement_line(placed) == ("placement: dom0-c0: nic:q0 + nic:q1 + backend:rr + backend:bulk + "
                                      "backend:pois (shared); dom0-c1: idle; dom0-c2: idle")


def test_moving_a_lone_queue_to_another_core_moves_its_figures_exactly():
    one = {"name": "one", "duration_s": 0.01, "warmup_s": 0.001, "host": {"layers": ["nic"], "driver_domain_cores": 2},
           "guests": [{"name": "g", "workload": {"kind": "poisson", "rate_pps": 50000}}]}
    base = run_scenario(parse_scenario(one), engine="compiled")
    moved = run_scenario(parse_scenario({**one, "nic": {"irq_cores": [1]}}), engine="compiled")
    b, m = ({c.name: c for c in r.cpus} for r in (base, moved))
    assert (m["dom0-c1"].irq, m["dom0-c1"].softirq) == (b["dom0-c0"].irq, b["dom0-c0"].softirq)
    assert m["dom0-c0"].irq == m["dom0-c0"].softirq == 0.0
    assert moved.to_dict()["tenants"] == base.to_dict()["tenants"]


def test_cli_sim_shows_who_shares_a_core(tmp_path):
    from typer.testing import CliRunner

    from vcoal.cli import main

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nduration_s = 0.005\nwarmup_s = 0.0005\n[nic]\nqueues = 2\nirq_cores = [1, 1]\n'
                    '[[guests]]\nname = "a"\nbackend_core = 1\nworkload = { kind = "poisson", rate_pps = 10000 }\n')
    if not main.app.registered_commands[1:]:
        main._register()
    res = CliRunner().invoke(main.app, ["sim", str(path)])
    assert res.exit_code == 0, res.output
    assert "placement: dom0-c0: idle; dom0-c1: nic:q0 + nic:q1 + backend:a (shared)" in res.output


def test_on_the_veth_profile_a_queue_core_runs_its_guests_receive_napis_and_no_backend():
    spec = parse_scenario({"host": {"profile": "veth"}, "nic": {"queues": 2}, "guests": [
        {"name": "a", "workload": {"kind": "poisson", "rate_pps": 1000.0}},
        {"name": "b", "nic_queue": 1, "workload": {"kind": "poisson", "rate_pps": 1000.0}}]})
    assert core_users(spec) == [["nic:q0", "frontend:a"], ["nic:q1", "frontend:b"]]
