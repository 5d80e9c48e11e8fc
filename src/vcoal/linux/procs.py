"""Processes inside namespaces: start, await readiness by polling, measure CPU, end by PID.

A process is started with ``ip netns exec NS tool ...`` (which execs, so the PID is the tool's);
its output goes to a temporary file, not a pipe, so a chatty tool can never block. Readiness is a
polled condition (a listening socket in the process's own ``/proc/PID/net/{tcp,udp}``), never a
fixed sleep. Processes are ended only by their PID: SIGTERM, a grace period, then SIGKILL.

CPU: ``cpu_ns(pid)`` sums ``/proc/PID/task/*/schedstat`` (run time in ns from the scheduler's
own clock, not the 250 Hz tick), which stays exact on a small VM where /proc/stat does not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from vcoal.linux import netns

# /proc/net/{tcp,udp} "st" column: 0A = TCP_LISTEN, 07 = TCP_CLOSE (an unconnected bound UDP socket)
_LISTEN_STATE = {"tcp": "0A", "udp": "07"}


def poll_until(cond: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    """Call ``cond`` until it is true or ``timeout_s`` passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def listening_ports(pid: int, proto: str) -> set[int]:
    """Local ports on which process ``pid``'s namespace has a listening (tcp) or bound (udp) socket."""
    ports: set[int] = set()
    for suffix in ("", "6"):
        try:
            text = Path(f"/proc/{pid}/net/{proto}{suffix}").read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            cols = line.split()
            if len(cols) > 3 and cols[3] == _LISTEN_STATE[proto]:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def cpu_ns(pid: int) -> int:
    """Run time (ns) of all threads of ``pid`` so far; 0 when the process is gone."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def end_pid(pid: int, grace_s: float = 2.0) -> None:
    """End one process by PID: SIGTERM, wait up to ``grace_s``, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not poll_until(lambda: not alive(pid), grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        poll_until(lambda: not alive(pid), grace_s)


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class NsProcess:
    """One tool process inside a namespace, its output captured in a temporary file."""

    def __init__(self, ns: str, argv: Sequence[str], label: str = "", cpus: Sequence[int] | None = None) -> None:
        self.ns = ns
        self.argv = list(argv)
        self.label = label or Path(argv[0]).name
        self._out = tempfile.TemporaryFile(mode="w+", prefix="vcoal-")  # noqa: SIM115 (closed in close())
        self._err = tempfile.TemporaryFile(mode="w+", prefix="vcoal-")  # noqa: SIM115
        self.popen = subprocess.Popen(
            netns.exec_argv(ns, self.argv), stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL
        )
        self.pid = self.popen.pid
        if cpus:  # ip netns exec execs the tool in this PID; the tools start no threads before it matters
            os.sched_setaffinity(self.pid, cpus)
        self.started_ns = time.monotonic_ns()

    def wait_listening(self, port: int, proto: str = "tcp", timeout_s: float = 5.0) -> None:
        """Poll until the process listens on ``port``; RuntimeError (with its stderr) otherwise."""
        ok = poll_until(
            lambda: self.popen.poll() is not None or (self.in_namespace() and port in listening_ports(self.pid, proto)),
            timeout_s,
        )
        if not ok or self.popen.poll() is not None:
            err = self.stderr().strip()[-400:]
            self.stop()
            raise RuntimeError(f"{self.label} in {self.ns} did not listen on {proto}/{port}: {err or 'timeout'}")

    def in_namespace(self) -> bool:
        """True once ``ip netns exec`` has moved the process into its namespace."""
        ident = netns.ns_inode(self.ns)
        try:
            st = os.stat(f"/proc/{self.pid}/ns/net")
        except OSError:
            return False
        return ident == (st.st_dev, st.st_ino)

    def wait(self, timeout_s: float) -> int:
        """Wait for a normal exit; on timeout end it by PID and raise RuntimeError."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.label} in {self.ns} ran past {timeout_s:.1f} s; ended") from None

    def cpu_ns(self) -> int:
        """Run time of the process so far (ns, all threads)."""
        return cpu_ns(self.pid)

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 2.0) -> int | None:
        """End the process by PID (if still running) and reap it; returns its exit code."""
        if self.popen.poll() is None:
            end_pid(self.pid, grace_s)
        try:
            return self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self) -> str:
        self._out.flush()
        self._out.seek(0)
        return self._out.read()

    def stderr(self) -> str:
        self._err.flush()
        self._err.seek(0)
        return self._err.read()

    def close(self) -> None:
        """Stop the process and drop its output files."""
        self.stop()
        self._out.close()
        self._err.close()


class ProcessSet(contextlib.AbstractContextManager):
    """Processes started together and always ended together (also on errors)."""

    def __init__(self) -> None:
        self.procs: list[NsProcess] = []

    def start(self, ns: str, argv: Sequence[str], label: str = "", cpus: Sequence[int] | None = None) -> NsProcess:
        proc = NsProcess(ns, argv, label, cpus)
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.close()
        self.procs.clear()
