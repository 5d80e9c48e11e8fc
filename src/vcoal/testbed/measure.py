"""Host-wide measurements of a testbed trial: NET_RX softirqs and exact task CPU time.

Why these (docs/testbed.md, "CPU measure"): on a small KVM guest /proc/stat is sampled by the
250 Hz tick without IRQ-time accounting and the machine's capacity itself swings ±25 %, so
whole-machine CPU % is not trustworthy. What is exact:

* NET_RX softirq counts (/proc/softirqs, summed over CPUs): one per ``net_rx_action`` run, the
  testbed's "interrupt" count; reported per delivered packet.
* Task run time from ``/proc/PID/task/*/schedstat`` (the scheduler's ns clock): the tool processes
  (their ``sendmsg``/``recvmsg`` paths, which also run the softirqs they raise) plus the kernel's
  ``ksoftirqd/N`` and ``napi/*`` threads. Softirq work done from an interrupt while a CPU is idle is
  charged to no task and therefore missed (deferral moves work there: the hrtimer fires on an
  idle CPU); NET_RX counts do not miss it.
* The run time of every other task (background load) is logged so disturbed runs can be flagged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vcoal.linux.counters import parse_softirqs
from vcoal.linux.procs import cpu_ns

_KTHREAD_PREFIXES = ("ksoftirqd/", "napi/")


def pids_whose_comm(match: Callable[[str], bool]) -> list[int]:
    """PIDs of the host's processes whose ``/proc/PID/comm`` satisfies ``match``, ascending."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
        except OSError:
            continue
        if match(comm):
            out.append(int(entry.name))
    return sorted(out)


def kernel_net_threads() -> list[int]:
    """PIDs of the softirq and threaded-NAPI kernel threads (``ksoftirqd/N``, ``napi/DEV-ID``)."""
    return pids_whose_comm(lambda comm: comm.startswith(_KTHREAD_PREFIXES))


def load_tools_running() -> list[int]:
    """PIDs of the sockperf and iperf3 processes on the host (anyone's)."""
    return pids_whose_comm(lambda comm: comm in ("sockperf", "iperf3"))


def all_tasks_cpu_ns() -> int:
    """Run time (ns) of every task on the host so far (sum of per-thread schedstat)."""
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            total += cpu_ns(int(entry.name))
    return total


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Host-wide counters at one instant."""

    t_ns: int
    net_rx: int
    net_tx: int
    kthreads_cpu_ns: int
    all_cpu_ns: int


def snapshot(kthreads: list[int], with_all: bool = False) -> HostSnapshot:
    """Read NET_RX/NET_TX softirq totals and kernel-thread CPU (and all tasks' CPU if asked)."""
    soft = parse_softirqs(Path("/proc/softirqs").read_text())
    return HostSnapshot(
        t_ns=time.monotonic_ns(),
        net_rx=sum(soft.get("NET_RX", [])),
        net_tx=sum(soft.get("NET_TX", [])),
        kthreads_cpu_ns=sum(cpu_ns(p) for p in kthreads),
        all_cpu_ns=all_tasks_cpu_ns() if with_all else 0,
    )
