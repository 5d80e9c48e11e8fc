"""Cpu: application work is preempted by softirq work and resumes; ``running`` tells stale
completions from live ones (what a trace of the event loop relies on)."""

from vcoal.sim.cpu import APP, SOFTIRQ, Cpu
from vcoal.sim.kernel import Kernel


def test_preempted_app_job_resumes_and_its_old_completion_is_stale():
    k = Kernel()
    cpu = Cpu(k, "c0")
    done: list[tuple[str, int]] = []
    seen: list[tuple[str, object]] = []

    def trace(t, _prio, _seq, fn, arg):
        if getattr(fn, "__self__", None) is cpu:
            job = cpu.running(arg)
            seen.append(("stale", None) if job is None else (job[0], job[1].__name__))

    def app(_):
        done.append(("app", k.now))

    def soft(_):
        done.append(("soft", k.now))

    k.trace = trace
    cpu.submit(APP, 1000, app)
    k.at(400, 0, lambda _: cpu.submit(SOFTIRQ, 300, soft))
    k.run(10_000)
    assert done == [("soft", 700), ("app", 1300)]  # 400 ns done, preempted for 300 ns, 600 ns left
    assert seen == [(SOFTIRQ, "soft"), ("stale", None), (APP, "app")]
    assert cpu.busy_ns == [0, 300, 1000]
