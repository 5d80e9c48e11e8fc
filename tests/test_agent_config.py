"""Agent config validation: examples load, mistakes are refused with one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vcoal.agent.config import ConfigError, load_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "agent"
OK = {"interfaces": [{"match": ["vif*"], "layer": "backend"}]}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_are_valid(path):
    cfg = load_config(path)
    assert cfg.interfaces and cfg.metrics.address == "127.0.0.1"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"window_ms": 0}, "window_ms"),
        ({"interfaces": [{"match": ["vif*"], "layer": "dom0"}]}, "interfaces.0.layer"),
        ({"interfaces": [{"match": ["vif*"], "layer": "nic", "knobs": ["mtu"]}]}, "interfaces.0.knobs.0"),
        ({"interfaces": [{"match": ["a b"], "layer": "nic"}]}, "interfaces.0.match"),
        ({"interfaces": [{"match": ["x"], "layer": "nic", "bounds": {"rx_usecs": [5, 1]}}]}, "interfaces.0.bounds"),
        ({"interfaces": []}, "interfaces"),
        ({"policy": {"name": "nope"}}, "policy"),
        ({"policy": {"name": "static", "params": {"nic": {"rx_usec": 1}}}}, "policy"),
        ({"safety": {"max_changes_per_minute": 0}}, "safety.max_changes_per_minute"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"typo": 1}, "typo"),
    ],
)
def test_invalid_configs_give_one_line_naming_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        parse_config({**OK, **change})
    text = str(err.value)
    assert "\n" not in text and f"config: {field}" in text


def test_cli_refuses_invalid_config_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('window_ms = -5\n[[interfaces]]\nmatch = ["vif*"]\nlayer = "backend"\n')
    out = subprocess.run([str(Path(sys.executable).with_name("vcoal")), "agent", "run", "-c", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "window_ms" in out.stderr and "greater than or equal to 1" in out.stderr


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "x.toml").write_text("window_ms = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "x.toml")


@pytest.mark.parametrize(
    "queues, words",
    [
        ("some", "non-empty list"),
        ([], "non-empty list"),
        ([0, -1], "non-empty list"),
        ([0, "1"], "non-empty list"),
        ([1, 1], "repeated"),
    ],
)
def test_invalid_queues_give_one_line_naming_the_field(queues, words):
    with pytest.raises(ConfigError) as err:
        parse_config({"interfaces": [{"match": ["eth*"], "layer": "nic", "queues": queues}]})
    text = str(err.value)
    assert "\n" not in text and "config: interfaces.0.queues:" in text and words in text


def test_queues_take_only_the_napi_knobs():
    with pytest.raises(ConfigError, match=r"^config: interfaces\.0\.queues: per-queue control takes only .*rx_usecs"):
        parse_config({"interfaces": [{"match": ["eth*"], "layer": "nic", "knobs": ["rx_usecs"], "queues": [0]}]})


def test_queues_make_one_site_per_queue():
    cfg = parse_config({"interfaces": [
        {"match": ["eth*"], "layer": "nic", "queues": [0, 2]}, {"match": ["vif*"], "layer": "backend"},
    ]})
    assert cfg.interfaces[0].units("eth0") == ["eth0:q0", "eth0:q2"]
    assert cfg.interfaces[1].queues == "all" and cfg.interfaces[1].units("vif1.0") == ["vif1.0"]


@pytest.mark.parametrize(
    "group",
    [
        {"match": ["*"], "layer": "nic"},
        {"match": ["*"], "exclude": ["lo"], "layer": "nic"},  # still every other interface
        {"match": ["l*"], "layer": "nic"},  # takes lo
        {"match": ["eth0", "lo"], "layer": "nic"},
    ],
)
def test_lo_or_every_interface_needs_allow_all(group):
    with pytest.raises(ConfigError) as err:
        parse_config({"interfaces": [group]})
    text = str(err.value)
    assert "\n" not in text and text.startswith("config: interfaces.0.allow_all:") and "allow_all = true" in text
    cfg = parse_config({"interfaces": [{**group, "allow_all": True}]})  # said explicitly: accepted
    assert cfg.interfaces[0].allow_all


def test_a_narrow_match_needs_no_allow_all():
    cfg = parse_config({"interfaces": [{"match": ["l*"], "exclude": ["lo"], "layer": "nic"}, *OK["interfaces"]]})
    assert not cfg.interfaces[0].allow_all and cfg.group_of("lo") is None


# --- cost_file: the costs the policy plans with -------------------------------------------------


def test_cost_file_reaches_the_policy_context(tmp_path):
    from vcoal.agent.linux_io import build_context
    from vcoal.model.costs import DEFAULT_COSTS

    (tmp_path / "costs.toml").write_text("[cost]\nirq_us = 4.5\nvirq_us = 3\n")
    (tmp_path / "agent.toml").write_text('cost_file = "costs.toml"\n[[interfaces]]\nmatch = ["vif*"]\nlayer = "backend"\n')
    cfg = load_config(tmp_path / "agent.toml")  # relative to the config file
    ctx = build_context(cfg, {})
    assert ctx.cost["irq_us"] == 4.5 and ctx.cost["virq_us"] == 3.0
    assert ctx.cost["poll_us"] == DEFAULT_COSTS["poll_us"]  # names the file omits keep their default
    assert "costs.toml" in cfg.cost_source


def test_without_cost_file_the_policy_gets_the_defaults_and_status_says_so():
    from vcoal.agent.linux_io import build_context
    from vcoal.model.costs import DEFAULT_COSTS

    cfg = parse_config(OK)
    assert dict(build_context(cfg, {}).cost) == dict(DEFAULT_COSTS)
    assert cfg.cost_source.startswith("built-in defaults")


def test_host_profile_reaches_the_policy_context_and_a_bad_one_is_refused():
    from vcoal.agent.linux_io import build_context

    assert build_context(parse_config(OK), {}).profile == "xen"  # the default
    assert build_context(parse_config({**OK, "host_profile": "veth"}), {}).profile == "veth"
    with pytest.raises(ConfigError, match="host_profile"):
        parse_config({**OK, "host_profile": "kvm"})


@pytest.mark.parametrize("text, needle", [("irq_usec = 1\n", "irq_usec: unknown cost"),
                                          ("irq_us = -1\n", "irq_us=-1"), ("irq_us = 'x'\n", "must be a number")])
def test_bad_cost_file_is_one_line_naming_the_entry(tmp_path, text, needle):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        parse_config({**OK, "cost_file": str(tmp_path / "c.toml")})
    assert "\n" not in str(err.value) and needle in str(err.value) and str(err.value).startswith("cost_file: ")


def test_spec_and_qos_share_one_default_cost_table():
    from vcoal.model.costs import DEFAULT_COSTS
    from vcoal.policies._qos_model import Costs
    from vcoal.spec.scenario import CostSpec

    spec = CostSpec().model_dump()
    assert {k: spec[k] for k in DEFAULT_COSTS} == dict(DEFAULT_COSTS)
    assert Costs.from_mapping({}) == Costs.from_mapping(dict(DEFAULT_COSTS))
