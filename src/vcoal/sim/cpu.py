"""A CPU (driver-domain core or guest vCPU) serving jobs by priority class.

Classes: hard interrupt (0), softirq / NAPI poll / backend work (1), application (2). A job runs to
completion, except that application work is preempted by interrupt and softirq work and resumes
later (preemptive-resume). Busy time is accounted per class and charged to the job's counter.

``runs`` counts softirq runs: a job of class IRQ or SOFTIRQ submitted while the CPU has none queued,
running or completing starts a run; every such job submitted until those queues drain joins it
(the kernel's one ``net_rx_action`` polling every NAPI scheduled on its CPU).
"""

from __future__ import annotations

from collections import deque

from vcoal.sim.kernel import PRIO_COMPLETION, Kernel

IRQ, SOFTIRQ, APP = 0, 1, 2


# A job is a list [cost_ns, fn, arg, account]: work whose completion calls fn(arg), CPU time
# charged to account.cpu_ns. NOTE: a plain list, not a class, because one is made per packet-hop.
COST, FN, ARG, ACCOUNT = 0, 1, 2, 3


class Cpu:
    """One CPU with three FIFO queues and an accounting of busy time per class."""

    __slots__ = ("_completing", "_queues", "_run_cls", "_run_job", "_run_start", "_token", "busy_ns", "k", "name", "runs")

    def __init__(self, k: Kernel, name: str) -> None:
        self.k = k
        self.name = name
        self._queues = (deque(), deque(), deque())
        self._run_job: list | None = None
        self._run_cls = -1
        self._run_start = 0
        self._token = 0
        self._completing = False
        self.busy_ns = [0, 0, 0]
        self.runs = 0

    def submit(self, cls: int, cost_ns: int, fn, arg=None, account=None) -> None:
        """Queue a job in class ``cls``; it may preempt running application work."""
        if cls <= SOFTIRQ and not self._queues[IRQ] and not self._queues[SOFTIRQ] and not (
            (self._run_job is not None or self._completing) and self._run_cls <= SOFTIRQ
        ):
            self.runs += 1
        self._queues[cls].append([cost_ns, fn, arg, account])
        if self._run_job is None:
            if not self._completing:
                self._next()
        elif self._run_cls == APP and cls < APP:
            self._preempt()

    def _start(self, cls: int, job: list) -> None:
        self._run_job = job
        self._run_cls = cls
        now = self.k.now
        self._run_start = now
        self._token += 1
        self.k.at(now + job[COST], PRIO_COMPLETION, self._complete, self._token)

    def _preempt(self) -> None:
        job = self._run_job
        now = self.k.now
        done = now - self._run_start
        self.busy_ns[APP] += done
        if job[ACCOUNT] is not None:
            job[ACCOUNT].cpu_ns += done
        job[COST] -= done
        self._queues[APP].appendleft(job)
        self._run_job = None
        self._token += 1  # the scheduled completion is now stale
        self._next()

    def running(self, token: int) -> tuple[int, object] | None:
        """(class, continuation) of the running job whose completion event carries ``token``; None
        when that event is stale (its job was preempted). For tracing; the engine does not call it."""
        if token != self._token or self._run_job is None:
            return None
        return self._run_cls, self._run_job[FN]

    def _complete(self, token: int) -> None:
        if token != self._token:
            return
        cost, fn, arg, account = self._run_job
        self.busy_ns[self._run_cls] += cost
        if account is not None:
            account.cpu_ns += cost
        self._run_job = None
        self._completing = True
        fn(arg)
        self._completing = False
        self._next()

    def _next(self) -> None:
        for cls, q in enumerate(self._queues):
            if q:
                self._start(cls, q.popleft())
                return
