"""A CPU (driver-domain core or guest vCPU) serving jobs by priority class.

Classes: hard interrupt (0), softirq / NAPI poll / backend work (1), application (2). A job runs to
completion, except that application work is preempted by interrupt and softirq work and resumes
later (preemptive-resume). Busy time is accounted per class and charged to the job's counter.
"""

from __future__ import annotations

from collections import deque

from vcoal.sim.kernel import PRIO_COMPLETION, Kernel

IRQ, SOFTIRQ, APP = 0, 1, 2


class Job:
    """Work of ``cost_ns`` whose completion calls ``fn(arg)``; CPU time is charged to ``account``."""

    __slots__ = ("account", "arg", "cost_ns", "fn")

    def __init__(self, cost_ns: int, fn, arg, account) -> None:
        self.cost_ns = cost_ns
        self.fn = fn
        self.arg = arg
        self.account = account


class Cpu:
    """One CPU with three FIFO queues and an accounting of busy time per class."""

    __slots__ = ("_completing", "_queues", "_run_cls", "_run_job", "_run_start", "_token", "busy_ns", "k", "name")

    def __init__(self, k: Kernel, name: str) -> None:
        self.k = k
        self.name = name
        self._queues = (deque(), deque(), deque())
        self._run_job: Job | None = None
        self._run_cls = -1
        self._run_start = 0
        self._token = 0
        self._completing = False
        self.busy_ns = [0, 0, 0]

    def submit(self, cls: int, cost_ns: int, fn, arg=None, account=None) -> None:
        """Queue a job in class ``cls``; it may preempt running application work."""
        self._queues[cls].append(Job(cost_ns, fn, arg, account))
        if self._run_job is None:
            if not self._completing:
                self._next()
        elif self._run_cls == APP and cls < APP:
            self._preempt()

    def busy(self) -> bool:
        return self._run_job is not None

    def queued(self) -> int:
        return sum(len(q) for q in self._queues) + (self._run_job is not None)

    def _start(self, cls: int, job: Job) -> None:
        self._run_job = job
        self._run_cls = cls
        self._run_start = self.k.now
        self._token += 1
        self.k.at(self.k.now + job.cost_ns, PRIO_COMPLETION, self._complete, self._token)

    def _preempt(self) -> None:
        job = self._run_job
        now = self.k.now
        done = now - self._run_start
        self.busy_ns[APP] += done
        if job.account is not None:
            job.account.cpu_ns += done
        job.cost_ns -= done
        self._queues[APP].appendleft(job)
        self._run_job = None
        self._token += 1  # the scheduled completion is now stale
        self._next()

    def _complete(self, token: int) -> None:
        if token != self._token:
            return
        job = self._run_job
        cls = self._run_cls
        self.busy_ns[cls] += job.cost_ns
        if job.account is not None:
            job.account.cpu_ns += job.cost_ns
        self._run_job = None
        self._completing = True
        job.fn(job.arg)
        self._completing = False
        self._next()

    def _next(self) -> None:
        for cls, q in enumerate(self._queues):
            if q:
                self._start(cls, q.popleft())
                return
