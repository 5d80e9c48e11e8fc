"""Kernel: events run in (time, prio, scheduling order); ``pending`` counts what is scheduled."""

from vcoal.sim.kernel import PRIO_ARRIVAL, PRIO_COMPLETION, Kernel


def test_order_and_pending():
    k = Kernel()
    ran: list[tuple[str, int, int]] = []

    def ev(name):
        ran.append((name, k.now, k.pending))
        if name == "b":
            k.at(k.now + 5, PRIO_ARRIVAL, ev, "d")
            k.at(k.now + 5, PRIO_COMPLETION, ev, "e")

    k.at(20, PRIO_ARRIVAL, ev, "c")
    k.at(10, PRIO_ARRIVAL, ev, "b")
    k.at(10, PRIO_COMPLETION, ev, "a")
    assert k.pending == 3
    k.run(12)
    assert k.pending == 3 and k.now == 12 and k.events == 2
    k.run(100)
    assert ran == [("a", 10, 2), ("b", 10, 1), ("e", 15, 2), ("d", 15, 1), ("c", 20, 0)]
    assert k.pending == 0 and k.events == 5
