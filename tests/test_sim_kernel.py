"""The event heap: events run in (time, prio, scheduling order); ``HN`` counts what is scheduled.
The CPUs: application work is preempted by softirq work and resumes; the completion scheduled
for the preempted work is withdrawn, not run as an event (what a trace of the event loop shows).
Both on the interpreted engine, over the arena of a scenario whose workloads never start."""

import importlib

from vcoal.sim.engine import layout as L
from vcoal.sim.engine import load
from vcoal.sim.simulation import Simulation
from vcoal.spec import parse_scenario

ONE = {"duration_s": 0.001, "guests": [{"name": "g", "workload": {"kind": "poisson", "rate_pps": 1e5}}]}


def _bare():
    rows: list = []
    sim = Simulation(parse_scenario(ONE), None, 1, compiled=False, trace=rows.extend)
    loop = load(compiled=False)
    core = importlib.import_module(loop.__package__ + ".core")
    a = sim.arena
    return a, a.m.tolist(), a.x.tolist(), core, loop


def test_order_and_pending():
    _a, m, x, core, _loop = _bare()
    ran: list[tuple[int, int, int]] = []

    def pop():
        core.pop(m, x, L.SCRATCH)
        m[L.NOW] = m[L.SCRATCH]
        ran.append((m[L.SCRATCH + 2], m[L.NOW], m[L.HN]))
        if m[L.SCRATCH + 2] == 2:  # "b" schedules "d" then "e"
            core.at(m, x, m[L.NOW] + 5, L.PRIO_ARRIVAL, L.E_ROW, 4, 0)
            core.at(m, x, m[L.NOW] + 5, L.PRIO_COMPLETION, L.E_ROW, 5, 0)

    core.at(m, x, 20, L.PRIO_ARRIVAL, L.E_ROW, 3, 0)  # c
    core.at(m, x, 10, L.PRIO_ARRIVAL, L.E_ROW, 2, 0)  # b
    core.at(m, x, 10, L.PRIO_COMPLETION, L.E_ROW, 1, 0)  # a
    assert m[L.HN] == 3
    while m[L.HN]:
        pop()
    # a, b, e, d, c: (time, prio) first, then scheduling order
    assert ran == [(1, 10, 2), (2, 10, 1), (5, 15, 2), (4, 15, 1), (3, 20, 0)]


def test_preempted_app_job_resumes_and_its_old_completion_is_withdrawn():
    a, _m, _x, core, loop = _bare()
    m, x = a.m.tolist(), a.x.tolist()
    core.cpu_submit(m, x, 0, L.APP, 1000, L.K_NOOP, 0, 0, 0, -1)
    m[L.NOW] = 400
    core.cpu_submit(m, x, 0, L.SOFTIRQ, 300, L.K_NOOP, 0, 0, 0, -1)
    a.m[:], a.x[:] = m, x
    loop.run(a.m, a.x, 10_000, -1)
    trace = a.view("trace")[: a.m[L.NTRACE]].tolist()
    # 400 ns done, preempted for 300 ns, 600 ns left; the completion scheduled at 1000 never runs
    assert [(t, job) for t, _key, _kind, job, _pending in trace] == [
        (700, L.K_NOOP * 4 + L.SOFTIRQ), (1300, L.K_NOOP * 4 + L.APP)]
    assert a.view("cpu")[0, L.C_BUSY : L.C_BUSY + 3].tolist() == [0, 300, 1000]
    assert a.m[L.NOW] == 10_000 and a.m[L.EVENTS] == 2 and a.m[L.HN] == 0


def test_softirq_runs_count_stretches_of_irq_and_softirq_work():
    """A run starts when IRQ/SOFTIRQ work reaches a CPU with none queued, running or completing;
    what arrives meanwhile joins it; application work starts none (``C_RUNS``)."""
    a, _m, _x, core, loop = _bare()

    def submit_at(t_ns, cls, cost_ns):
        loop.run(a.m, a.x, t_ns, -1)  # everything due before t_ns has run
        m, x = a.m.tolist(), a.x.tolist()
        m[L.NOW] = t_ns
        core.cpu_submit(m, x, 0, cls, cost_ns, L.K_NOOP, 0, 0, 0, -1)
        a.m[:], a.x[:] = m, x

    submit_at(0, L.IRQ, 50)  # run 1: 0-50
    submit_at(20, L.SOFTIRQ, 100)  # joins run 1 (queued behind the running irq): 50-150
    submit_at(600, L.APP, 500)  # application work: no run
    submit_at(700, L.SOFTIRQ, 100)  # run 2, preempting the application: 700-800
    submit_at(750, L.SOFTIRQ, 100)  # joins run 2: 800-900
    submit_at(2000, L.SOFTIRQ, 100)  # run 3
    loop.run(a.m, a.x, 10_000, -1)
    cpu = a.view("cpu")[0]
    assert cpu[L.C_RUNS] == 3
    assert cpu[L.C_BUSY : L.C_BUSY + 3].tolist() == [50, 400, 500]


PACED = {"duration_s": 0.002, "warmup_s": 0.0,
         "guests": [{"name": "b", "workload": {"kind": "bulk", "window_pkts": 8, "pace_gbps": 1.0, "ack_every": 1}}]}


def test_a_paced_bulk_sender_has_one_pacing_event_per_send_time():
    """ACKs open the window between two paced sends; each finds the next send already scheduled
    and adds no second E_PUMP_AT for the same time (one that would find nothing to do)."""
    rows: list = []
    sim = Simulation(parse_scenario(PACED), None, 1, compiled=False, trace=rows.extend)
    sim.run()
    times = [int(r[0]) for r in rows if r[2] == L.E_PUMP_AT]
    assert len(times) > 50  # 12 µs apart (1500 B at 1 Gbit/s) for 2 ms
    assert len(set(times)) == len(times)
