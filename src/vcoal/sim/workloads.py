"""Tenant workloads: request-response, bulk stream, open loop (Poisson, on/off, steps), trace.

Each runtime generates packets into the Path and receives them back: ``on_rx`` when a packet
reaches the guest's application (after the frontend), ``on_wire`` when a guest packet leaves on
the wire, ``on_drop`` when one is lost. Latency is recorded at delivery for packets delivered
after the warm-up: one way (RX: NIC arrival -> application; TX: send -> wire) and, for
request-response, the client's round trip.
"""

from __future__ import annotations

from vcoal.model.histogram import LatencyHistogram
from vcoal.sim.cpu import APP
from vcoal.sim.kernel import PRIO_ARRIVAL, PRIO_CONTROL
from vcoal.sim.packet import ACK, DATA, REQ, RESP, Pkt
from vcoal.sim.rng import ExpDraws, stream


class TenantRt:
    """Common state: histograms, counters, the CPUs and the path."""

    def __init__(self, sim, index: int, guest, seed: int) -> None:
        self.sim = sim
        self.path = sim.path
        self.k = sim.k
        self.i = index
        self.guest = guest
        self.w = guest.workload
        self.name = guest.name
        vcpus = self.path.guest_vcpus[index]
        self.app_cpu = vcpus[-1]
        self.hist = LatencyHistogram()
        self.rtt = LatencyHistogram()
        self.win = LatencyHistogram()
        self.sent = self.delivered = self.dropped = 0
        self.m_delivered = self.m_bytes = self.m_dropped = self.m_sent = 0
        self.w_packets = self.w_bytes = 0
        self.draws = ExpDraws(stream(seed, f"workload/{guest.name}"))
        self.app_ns = round(self.w.app_us * 1000)
        self.measuring = False

    # bookkeeping --------------------------------------------------------------------------------
    def _new(self, size: int, kind: int = DATA, ref: int = 0) -> Pkt:
        """Create a packet of this tenant now (every packet is counted as sent)."""
        self.sent += 1
        if self.measuring:
            self.m_sent += 1
        pkt = Pkt(self.i, size, self.k.now, kind, ref)
        if self.sim.live is not None:
            self.sim.live.add(pkt)
        return pkt

    def _finish(self, pkt) -> None:
        """A packet reached its end (delivered); audited for loss and duplication."""
        self.delivered += 1
        if self.sim.live is not None:
            self.sim.live.remove(pkt)  # KeyError = delivered twice
        if self.sim.deliveries is not None:
            self.sim.deliveries.append((self.i, pkt.t0, self.k.now))

    def _delivered(self, pkt, latency_ns: int, payload: bool = True, record: bool = True) -> None:
        self._finish(pkt)
        if self.measuring:
            if record:
                self.hist.add(latency_ns)
            if payload:
                self.m_delivered += 1
                self.m_bytes += pkt.size
        if payload:
            self.w_packets += 1
            self.w_bytes += pkt.size
        if record:
            self.win.add(latency_ns)

    def on_drop(self, pkt) -> None:
        self.dropped += 1
        if self.measuring:
            self.m_dropped += 1
        if self.sim.live is not None:
            self.sim.live.remove(pkt)

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_rx(self, pkt) -> None:
        self._delivered(pkt, self.k.now - pkt.t0)

    def on_wire(self, pkt) -> None:
        self._delivered(pkt, self.k.now - pkt.t0)

    def send_from_app(self, size: int, kind: int = DATA, ref: int = 0, extra_ns: int = 0) -> None:
        """Application work (``extra_ns``) plus the send path cost, then the packet enters netfront."""
        self.app_cpu.submit(APP, extra_ns + self.path.send_cost_ns, self._sent_by_app, (size, kind, ref))

    def _sent_by_app(self, arg) -> None:
        self.path.app_send(self._new(*arg))


class OpenLoop(TenantRt):
    """Poisson arrivals at ``rate_pps`` (optionally on/off bursts and rate steps), RX or TX."""

    def start(self) -> None:
        self.token = 0
        self.rate = self.w.rate_pps
        self.on = True
        for at_s, rate in self.w.steps:
            self.k.at(int(at_s * 1e9), PRIO_CONTROL, self._set_rate, rate)
        if self.w.on_us > 0:
            self._toggle(True)
        else:
            self._schedule_next()

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self._schedule_next()

    def _toggle(self, on: bool) -> None:
        self.on = on
        mean_us = self.w.on_us if on else self.w.off_us
        self.k.at(self.k.now + max(1, int(mean_us * 1000 * self.draws() + 0.5)), PRIO_CONTROL, self._toggle, not on)
        self._schedule_next()

    def _schedule_next(self) -> None:
        self.token += 1
        if not self.on or self.rate <= 0 or self.k.now >= self.sim.end_ns:
            return
        gap = int(1e9 / self.rate * self.draws() + 0.5)
        self.k.at(self.k.now + gap, PRIO_ARRIVAL, self._arrival, self.token)

    def _arrival(self, token: int) -> None:
        if token != self.token:
            return
        self._emit()
        self._schedule_next()

    def _emit(self) -> None:
        if self.w.direction == "rx":
            self.path.wire_rx(self._new(self.w.packet_bytes))
        else:
            self.send_from_app(self.w.packet_bytes, extra_ns=self.app_ns)

    def on_rx(self, pkt) -> None:
        self._delivered(pkt, self.k.now - pkt.t0)
        if self.app_ns and not self.path.one_layer:
            self.app_cpu.submit(APP, self.app_ns, _noop, None)


class Trace(OpenLoop):
    """Replays ``(timestamp_us, size, direction)`` rows; timestamps are arrival/send times."""

    def start(self) -> None:
        self.rows = self.w.trace_rows
        self.pos = 0
        self._next_row()

    def _next_row(self) -> None:
        if self.pos >= len(self.rows):
            return
        ts_us = self.rows[self.pos][0]
        t = round(ts_us * 1000)
        if t >= self.sim.end_ns:
            return
        self.k.at(max(t, self.k.now), PRIO_ARRIVAL, self._row, None)

    def _row(self, _arg) -> None:
        _, size, direction = self.rows[self.pos]
        self.pos += 1
        if direction == "rx":
            self.path.wire_rx(self._new(size))
        else:
            self.send_from_app(size, extra_ns=self.app_ns)
        self._next_row()


class RequestResponse(TenantRt):
    """Closed loop: a client on the wire keeps ``outstanding`` requests in flight."""

    def start(self) -> None:
        for j in range(self.w.outstanding):
            self.k.at(self.k.now + 1000 * self.i + j, PRIO_ARRIVAL, self._request, None)

    def _request(self, _arg=None) -> None:
        if self.k.now >= self.sim.end_ns:
            return
        self.path.wire_send(self._new(self.w.request_bytes, REQ, self.k.now))

    def on_rx(self, pkt) -> None:
        self._delivered(pkt, self.k.now - pkt.t0, payload=False)
        self.send_from_app(self.w.response_bytes, RESP, pkt.ref, self.app_ns + self.path.ctx_switch_ns)

    def on_wire(self, pkt) -> None:
        rtt_ns = self.k.now - pkt.ref
        self._delivered(pkt, self.k.now - pkt.t0, record=False)
        if self.measuring:
            self.rtt.add(rtt_ns)
        self.sim.win_rtt[self.i].add(rtt_ns)
        self._next_after_think()

    def _next_after_think(self) -> None:
        think_ns = int(self.w.think_us * 1000 * self.draws() + 0.5) if self.w.think_us > 0 else 0
        self.k.at(self.k.now + think_ns, PRIO_ARRIVAL, self._request, None)

    def on_drop(self, pkt) -> None:
        super().on_drop(pkt)
        self.k.at(self.k.now + int(self.w.rto_us * 1000), PRIO_ARRIVAL, self._request, None)


class Bulk(TenantRt):
    """A window-limited stream (``window_pkts`` in flight) with ACKs in the reverse direction."""

    def start(self) -> None:
        self.acked_pending = 0
        self.credit = self.w.window_pkts
        self.gap_ns = round(self.w.packet_bytes * 8 / self.w.pace_gbps) if self.w.pace_gbps > 0 else 0
        self.next_ns = 0
        self._pump()

    def _pump(self, _arg=None) -> None:
        now = self.k.now
        while self.credit > 0 and now < self.sim.end_ns:
            if self.next_ns > now:
                self.k.at(self.next_ns, PRIO_ARRIVAL, self._pump_at, self.next_ns)
                return
            self.credit -= 1
            self.next_ns = now + self.gap_ns
            if self.w.direction == "rx":
                self.path.wire_send(self._new(self.w.packet_bytes))
            else:
                self.send_from_app(self.w.packet_bytes, extra_ns=self.app_ns)

    def _pump_at(self, t_ns: int) -> None:
        if t_ns == self.next_ns:
            self._pump()

    def _open(self, n: int) -> None:
        self.credit += n
        self._pump()

    def _receive(self, pkt) -> int:
        """An ACK back at the sender opens the window (-1); data at the receiver is delivered and
        counted: the number of packets to acknowledge now, or 0."""
        if pkt.kind == ACK:
            self._finish(pkt)
            self._open(pkt.ref)
            return -1
        self._delivered(pkt, self.k.now - pkt.t0)
        self.acked_pending += 1
        if self.acked_pending < self.w.ack_every:
            return 0
        n, self.acked_pending = self.acked_pending, 0
        return n

    def on_rx(self, pkt) -> None:  # data of an RX stream; ACKs of a TX stream
        n = self._receive(pkt)
        if n > 0:
            self.send_from_app(self.w.ack_bytes, ACK, n, self.app_ns)
        elif n == 0 and self.app_ns:
            self.app_cpu.submit(APP, self.app_ns, _noop, None)

    def on_wire(self, pkt) -> None:  # data of a TX stream; ACKs of an RX stream
        n = self._receive(pkt)
        if n > 0:
            self.path.wire_send(self._new(self.w.ack_bytes, ACK, n))

    def on_drop(self, pkt) -> None:
        super().on_drop(pkt)
        n = pkt.ref if pkt.kind == ACK else 1
        self.k.at(self.k.now + int(self.w.rto_us * 1000), PRIO_CONTROL, self._open, n)


KINDS = {"poisson": OpenLoop, "trace": Trace, "request_response": RequestResponse, "bulk": Bulk}


def _noop(_arg) -> None:
    return None
