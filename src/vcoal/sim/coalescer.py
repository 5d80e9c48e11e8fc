"""One coalescing hop: a ring, the Coalescer that gates its interrupt, and NAPI polling.

The same class serves every layer. A producer pushes packets into the ring; the Coalescer decides
when the interrupt (physical IRQ, or a virtual interrupt / event-channel notification) fires
(absolute timer from the first packet, timer restarted by every packet, minimum interrupt gap,
frame cap, or immediately); the interrupt costs CPU on the consumer, then NAPI polls the ring
exhaustively in polls of at most ``napi_budget`` packets with the interrupt masked. When a poll
drains the ring, the kernel's deferral rule (``napi_defer_hard_irqs`` + ``gro_flush_timeout_ns``,
net/core/dev.c ``napi_complete_done``) decides between re-arming the interrupt and a timer re-poll.

Paravirtual rules fall out of the same mechanism: while the consumer has not re-armed (event
index not advanced, or the event channel's pending bit still set), further pushes notify nobody;
the hop counts them as ``suppressed``.

Which site's parameters apply: the *gate* site (the device raising the interrupt) provides
``{rx,tx}_usecs``, ``{rx,tx}_frames`` and ``timer``; the *napi* site (the consumer) provides
``napi_budget``, ``napi_defer_hard_irqs`` and ``gro_flush_timeout_ns``.
"""

from __future__ import annotations

from collections import deque

from vcoal.model.params import TimerMode
from vcoal.sim.cpu import IRQ, SOFTIRQ
from vcoal.sim.kernel import PRIO_TIMER, Kernel

ARMED, COALESCING, MASKED, DEFERRED = 0, 1, 2, 3


class DirCounters:
    """Monotonic counters of one site and direction."""

    __slots__ = ("bytes", "drops", "interrupts", "packets", "polls", "suppressed")

    def __init__(self) -> None:
        self.packets = self.bytes = self.interrupts = self.polls = self.drops = self.suppressed = 0


class SiteState:
    """A site's parameters in force and its counters (rx, tx, CPU time)."""

    __slots__ = ("cpu_ns", "name", "params", "rx", "tx")

    def __init__(self, name: str, params) -> None:
        self.name = name
        self.params = params
        self.rx = DirCounters()
        self.tx = DirCounters()
        self.cpu_ns = 0


class Hop:
    """A ring gated by a Coalescer and drained by NAPI on a consumer CPU."""

    __slots__ = (
        "_count", "_deadline", "_defer_left", "_last_fire", "_rx", "_token", "_work",
        "capacity", "consumer", "deliver", "direction", "drop", "gate", "gate_ctr", "irq_cost",
        "k", "napi", "napi_ctr", "pkt_cost", "poll_ns", "ring", "sender", "sender_cost_ns", "state",
    )  # fmt: skip

    def __init__(
        self,
        k: Kernel,
        *,
        direction: str,
        gate: SiteState,
        napi: SiteState,
        consumer,
        capacity: int,
        irq_cost,
        pkt_cost,
        poll_ns: int,
        deliver,
        drop,
        sender=None,
        sender_cost_ns: int = 0,
    ) -> None:
        self.k = k
        self.direction = direction
        self._rx = direction == "rx"
        self.gate = gate
        self.napi = napi
        self.gate_ctr = gate.rx if direction == "rx" else gate.tx
        self.napi_ctr = napi.rx if direction == "rx" else napi.tx
        self.consumer = consumer
        self.capacity = capacity
        self.irq_cost = irq_cost  # callable () -> ns
        self.pkt_cost = pkt_cost  # callable (pkt) -> ns
        self.poll_ns = poll_ns
        self.deliver = deliver
        self.drop = drop
        self.sender = sender  # CPU that pays for sending a notification (event channel), or None
        self.sender_cost_ns = sender_cost_ns
        self.ring: deque = deque()
        self.state = ARMED
        self._count = 0
        self._deadline = 0
        self._last_fire = -(1 << 62)
        self._token = 0
        self._work = 0
        self._defer_left = 0

    # --- producer side ---------------------------------------------------------------------

    def push(self, pkt) -> None:
        """A packet enters the ring (or is dropped when the ring is full)."""
        ctr = self.gate_ctr
        if len(self.ring) >= self.capacity:
            ctr.drops += 1
            self.drop(pkt)
            return
        self.ring.append(pkt)
        ctr.packets += 1
        ctr.bytes += pkt.size
        state = self.state
        if state == ARMED:
            self._arm_first()
        elif state == COALESCING:
            self._count += 1
            p = self.gate.params
            if p.timer is TimerMode.ITR:
                return
            frames = p.rx_frames if self._rx else p.tx_frames
            if 0 < frames <= self._count:
                self._fire()
            elif p.timer is TimerMode.PACKET:
                self._deadline = self.k.now + 1000 * (p.rx_usecs if self._rx else p.tx_usecs)
        else:
            ctr.suppressed += 1

    def _arm_first(self) -> None:
        p = self.gate.params
        now = self.k.now
        if self._rx:
            usecs, frames = p.rx_usecs, p.rx_frames
        else:
            usecs, frames = p.tx_usecs, p.tx_frames
        if p.timer is TimerMode.ITR:
            fire_at = self._last_fire + 1000 * usecs
            if fire_at <= now:
                self._fire()
                return
            self._count = 1  # counts from here if a policy switches the timer mode while waiting
            self._wait(fire_at)
            return
        if usecs == 0 and frames <= 1:
            self._fire()
            return
        if frames == 1:
            self._fire()
            return
        self._count = 1
        self.state = COALESCING
        if usecs == 0:
            return  # count only: fires on the frames-th packet
        self._deadline = now + 1000 * usecs
        self._wait(self._deadline)

    def _wait(self, t_ns: int) -> None:
        self.state = COALESCING
        self._token += 1
        self.k.at(t_ns, PRIO_TIMER, self._timer, self._token)

    def _timer(self, token: int) -> None:
        if token != self._token or self.state != COALESCING:
            return
        if self.gate.params.timer is TimerMode.PACKET and self.k.now < self._deadline:
            self.k.at(self._deadline, PRIO_TIMER, self._timer, token)
            return
        self._fire()

    def _fire(self) -> None:
        self._token += 1
        self.state = MASKED
        self._last_fire = self.k.now
        self.gate_ctr.interrupts += 1
        if self.sender is not None and self.sender_cost_ns:
            self.sender.submit(SOFTIRQ, self.sender_cost_ns, _noop, None, self.gate)
        self.consumer.submit(IRQ, self.irq_cost(), self._poll_start, None, self.napi)

    # --- consumer side (NAPI) ----------------------------------------------------------------

    def _poll_start(self, _arg=None) -> None:
        if self.poll_ns:
            self.consumer.submit(SOFTIRQ, self.poll_ns, self._poll_body, None, self.napi)
        else:
            self._poll_body()

    def _poll_body(self, _arg=None) -> None:
        self.napi_ctr.polls += 1
        self._work = 0
        self._next_pkt()

    def _next_pkt(self) -> None:
        if not self.ring:
            self._complete()
            return
        if self._work >= self.napi.params.napi_budget:
            self._poll_start()
            return
        pkt = self.ring.popleft()
        self.consumer.submit(SOFTIRQ, self.pkt_cost(pkt), self._done_pkt, pkt, self.napi)

    def _done_pkt(self, pkt) -> None:
        self._work += 1
        if self.napi_ctr is not self.gate_ctr:
            self.napi_ctr.packets += 1
            self.napi_ctr.bytes += pkt.size
        self.deliver(pkt)
        self._next_pkt()

    def _complete(self) -> None:
        p = self.napi.params
        if self._work > 0:
            self._defer_left = p.napi_defer_hard_irqs
        if self._defer_left > 0:
            self._defer_left -= 1
            if p.gro_flush_timeout_ns > 0:
                self.state = DEFERRED
                self.k.at(self.k.now + p.gro_flush_timeout_ns, PRIO_TIMER, self._poll_start, None)
                return
        self.state = ARMED

def _noop(_arg) -> None:
    return None
