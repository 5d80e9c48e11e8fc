"""kill -9 of a sweep's driver leaves no orphans: the forkserver, the pool workers and the
resource tracker all exit (before, the workers stayed blocked on their queue for good)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from test_experiments_signal import SCRIPT

GONE_DEADLINE_S = 30.0  # generous on a loaded machine; they exit well within a second normally


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return proc.children(recursive=True)
    return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def test_kill_9_of_the_driver_leaves_no_process_behind(tmp_path: Path):
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 120
        # the forkserver and the resource tracker, and the two workers under the forkserver
        while time.monotonic() < deadline and len(seen) < 4:
            seen.update({p.pid: p for p in _descendants(driver)})
            time.sleep(0.1)
        assert len(seen) >= 4, f"the sweep did not start its pool: {seen}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + GONE_DEADLINE_S
        while _alive(list(seen.values())) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [(p.pid, p.name()) for p in _alive(list(seen.values()))]
        assert not left, f"orphans of the killed driver: {left}"
    finally:
        for p in _alive(list(seen.values())):  # only processes this test started
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if proc.poll() is None:
            proc.kill()
