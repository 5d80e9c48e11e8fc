"""Outputs never damage anything: every command that writes a file checks its target first.

A directory, a missing parent, a name or path longer than the kernel takes, a target in /proc or
/sys, a FIFO, a device node, /dev/stdout: one ``vcoal: error:`` line naming the option and the
path, exit 2, and the command's work (simulation, comparison, sweep, report, fit) never starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcoal.results.files import write_atomic
from vcoal.results.outpath import NAME_MAX, OutputPathError, check_output_path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "examples" / "reference.toml"
GRID = ROOT / "tests" / "golden" / "calibrate" / "grid_small.json"


class Ran(Exception):
    """Raised by a stand-in for a command's work: the command got past its checks."""


@pytest.fixture
def cli(monkeypatch):
    """Invoke the app in-process with every command's work replaced by ``Ran``."""
    import vcoal.experiments as experiments
    import vcoal.experiments.calibrate as cal
    import vcoal.experiments.compare as compare
    import vcoal.experiments.worker as worker
    import vcoal.report as report
    from vcoal.cli import main

    def ran(*args, **kwargs):
        raise Ran

    for module, name in ((worker, "execute_trial"), (compare, "compare"), (experiments, "run_sweep"),
                         (report, "render_report"), (cal, "fit")):
        monkeypatch.setattr(module, name, ran)
    if not main.app.registered_commands[1:]:
        main._register()

    def invoke(*args: str | Path):
        res = CliRunner().invoke(main.app, [str(a) for a in args])
        assert not isinstance(res.exception, Ran), f"{args}: the work ran before the target was checked"
        return res

    return invoke


def _results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "res"
    (d / "trials").mkdir(parents=True, exist_ok=True)
    return d


def _commands(tmp_path: Path, target: Path) -> dict[str, tuple]:
    return {
        "sim": ("sim", SCENARIO, "--out", target),
        "compare": ("compare", SCENARIO, "--json", target),
        "report": ("report", _results_dir(tmp_path), "--out", target),
        "calibrate fit": ("calibrate", "fit", GRID, "--out", target),
    }


def _bad_targets(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "adir").mkdir()
    return {
        "missing parent": tmp_path / "nodir" / "x.json",
        "directory": tmp_path / "adir",
        "name too long": tmp_path / ("x" * (NAME_MAX + 1)),
        "path too long": tmp_path.joinpath(*["y" * 200] * 22),
        "in /proc": Path("/proc/vcoal-out.json"),
        "in /sys": Path("/sys/vcoal-out.json"),
        "fifo": fifo,
        "/dev/stdout": Path("/dev/stdout"),
        "/dev/null": Path("/dev/null"),
    }


@pytest.mark.parametrize("command", ["sim", "compare", "report", "calibrate fit"])
def test_bad_file_targets_get_one_line_before_any_work(cli, tmp_path, command):
    for why, target in _bad_targets(tmp_path).items():
        res = cli(*_commands(tmp_path, target)[command])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2, f"{command} -> {why}: {res.output}"
        assert len(lines) == 1 and lines[0].startswith("vcoal: error: --"), f"{why}: {res.output}"
        assert repr(str(target)) in lines[0] and "accepted:" in lines[0], why
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert not (tmp_path / "nodir").exists()


@pytest.mark.parametrize("target", ["file", "/proc/vcoal-sweep", "toolong"])
def test_bad_sweep_directories_are_refused_before_any_trial(cli, tmp_path, target):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "s"\nscenario = "{SCENARIO}"\n[axes]\npolicy = ["off"]\n')
    out = {"file": sweep, "toolong": tmp_path / ("z" * (NAME_MAX + 1))}.get(target, Path(target))
    res = cli("sweep", sweep, "-o", out)
    assert res.exit_code == 2 and res.output.startswith("vcoal: error: --out"), res.output
    assert len(res.output.strip().splitlines()) == 1


def test_good_targets_pass(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "old.json")
    for target in ("new.json", "old.json", "link.json"):
        assert check_output_path(tmp_path / target, "--out") == tmp_path / target
    for target in ("new/deeper", "."):
        check_output_path(tmp_path / target, "--out", directory=True)


def test_write_atomic_never_replaces_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="not a regular file"):
        write_atomic(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]  # no temporary left either
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    write_atomic(tmp_path / "link.json", "new")  # the link stays, its target is replaced
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_is_not_replaced_by_sim(cli, tmp_path):
    node = tmp_path / "full"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # what /dev/full is
    res = cli("sim", SCENARIO, "-o", node)
    assert res.exit_code == 2 and "not a regular file" in res.output
    assert stat.S_ISCHR(os.lstat(node).st_mode)


@pytest.mark.parametrize("name", ["..", ".", "...", "", "/"])
def test_sweep_names_cannot_leave_the_results_root(cli, tmp_path, monkeypatch, name):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "{name}"\nscenario = "{SCENARIO}"\n[axes]\npolicy = ["off"]\n')
    work = tmp_path / "cwd" / "inner"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    res = cli("sweep", sweep)
    assert res.exit_code == 2 and "name:" in res.output and "letter or digit" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "cwd").rglob("*")) == ["inner"]
