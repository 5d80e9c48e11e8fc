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


def test_softirq_runs_count_stretches_of_irq_and_softirq_work():
    """A run starts when IRQ/SOFTIRQ work arrives at a CPU with none queued, running or
    completing; work submitted meanwhile (also from a completing job) joins it."""
    from vcoal.sim.cpu import IRQ

    k = Kernel()
    cpu = Cpu(k, "c0")
    chain = lambda _: cpu.submit(SOFTIRQ, 100, lambda _: None)  # noqa: E731 - a hard irq raising a poll
    cpu.submit(IRQ, 50, chain)  # run 1: irq 0-50, then its poll 50-150 (submitted while completing)
    k.at(120, 0, lambda _: cpu.submit(SOFTIRQ, 100, lambda _: None))  # joins run 1 (150-250)
    k.at(400, 0, lambda _: cpu.submit(APP, 500, lambda _: None))  # application work: no run
    k.at(600, 0, lambda _: cpu.submit(SOFTIRQ, 100, lambda _: None))  # run 2, preempting the app
    k.at(750, 0, lambda _: cpu.submit(SOFTIRQ, 100, lambda _: None))  # run 2 ended at 700: run 3
    k.run(10_000)
    assert cpu.runs == 3
    assert cpu.busy_ns == [50, 400, 500]
