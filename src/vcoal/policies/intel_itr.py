"""``intel_itr``: Intel adaptive interrupt throttling, e1000e dynamic ITR or the ixgbe adaptive ITR.

Ports of ``e1000_update_itr``/``e1000_set_itr`` (drivers/net/ethernet/intel/e1000e/netdev.c,
InterruptThrottleRate 1 = dynamic, 3 = dynamic conservative) and of ``ixgbe_update_itr``/
``ixgbe_set_itr`` (ixgbe_main.c, the 2018 "Duyck" algorithm); algorithms.md section 2.

Both kernels update once per interrupt (at NAPI completion) from the packets and bytes handled
since the previous interrupt; vcoal sees one window at a time. Each window is therefore replayed as
``n`` per-interrupt updates, ``n`` = the site's interrupts in the window (the larger of its rx and
tx counts: e1000e and ixgbe clean both rings of a vector in one poll), at most 256:

* the first update uses the window's measured means per interrupt (packets and bytes of rx and tx,
  divided by ``n``, rounded to nearest);
* later updates use the means expected at the throttle interval just programmed: under a minimum
  gap g with Poisson arrivals at Lambda = lambda_rx + lambda_tx (the window's measured rates) an
  interrupt cycle lasts c(g) = g + exp(-Lambda g)/Lambda (derived); the measured cycle
  (interval / n) minus c(gap in force during the window) is kept as a constant extra (NAPI polling
  time, burstiness); an update at gap g then sees lambda_d * (c(g) + extra) packets of direction d
  with the window's mean packet size;
* the replay stops early at a fixed point.

This keeps the kernel's per-interrupt dynamics (e1000e's ramp of +1/4 of the target rate per
interrupt, ixgbe's +2 us steps and halvings) without pretending each window is one interrupt.

Output: ``timer=itr`` and ``rx_usecs = tx_usecs =`` the minimum interrupt gap in microseconds
(the ITR throttles the whole vector). e1000e writes ``10**9 // (itr * 256)`` in 256 ns units; the
gap is that register value times 0.256 us, rounded to the nearest microsecond (70000, 20000, 4000
irq/s -> 14, 50, 250 us). ixgbe's EITR value is whole microseconds (``itr >> 2``), used as is.
Frame counts are left alone (ignored in ``itr`` mode). The driver's initial setting (e1000e 20000
irq/s, ixgbe IXGBE_20K_ITR = 50 us) is applied on the first ``decide``.

ixgbe skips statistics older than 1-2 jiffies ("NAPI is dealing with it / traffic too slow") and
falls back to 10 us latency mode; here that happens when the mean gap between updates exceeds 1.5
jiffies at ``hz`` (default 1000).
"""

from __future__ import annotations

import dataclasses
import math

from vcoal.model.params import CoalesceParams, TimerMode
from vcoal.model.policy import Decision, DecisionRecord, PolicyContext
from vcoal.model.stats import SiteStats, WindowStats
from vcoal.model.units import NS_PER_S, Site
from vcoal.policies._common import apply_changes, can_set, check_choice, check_int, parse_layers, round_div
from vcoal.policies.base import PolicyBase

MAX_UPDATES_PER_WINDOW = 256

# e1000e latency classes (enum latency_range) and their interrupt rates
LOWEST, LOW, BULK = 0, 1, 2
CLASS_NAMES = ("lowest", "low", "bulk")
CLASS_IRQ_PER_S = (70_000, 20_000, 4_000)
E1000E_INITIAL_IRQ_PER_S = 20_000

# ixgbe constants (ixgbe.h)
ITR_MIN_INC_US = 2
ITR_MIN_US = 10
ITR_MAX_US = 126
ITR_LATENCY = 0x80
ITR_BULK = 0x00
IXGBE_20K_ITR = 200  # usecs << 2
_SLOW_LINKS_MBPS = (2_500, 1_000, 10)  # ixgbe's 2.5G/1G/10M branch


def e1000e_update_class(cls: int, packets: int, bytes_: int) -> int:
    """``e1000_update_itr``: next latency class from one interrupt's packets and bytes."""
    if packets == 0:
        return cls
    per_pkt = bytes_ // packets
    if cls == LOWEST:
        if per_pkt > 8000:
            return BULK
        if packets < 5 and bytes_ > 512:
            return LOW
    elif cls == LOW:
        if bytes_ > 10000:
            if per_pkt > 8000 or packets < 10 or per_pkt > 1200:
                return BULK
            if packets > 35:
                return LOWEST
        elif per_pkt > 2000:
            return BULK
        elif packets <= 2 and bytes_ < 512:
            return LOWEST
    elif cls == BULK:
        if bytes_ > 25000:
            if packets > 35:
                return LOW
        elif bytes_ < 6000:
            return LOW
    return cls


def e1000e_gap_us(irq_per_s: int) -> int:
    """Minimum gap of an e1000e ITR rate: the 256 ns register value, rounded to whole us."""
    reg = 10**9 // (irq_per_s * 256)
    return round_div(reg * 256, 1000)


class E1000eItr:
    """``e1000_set_itr`` state of one adapter: the rx/tx classes and the current rate."""

    def __init__(self, mode: int, link_mbps: int) -> None:
        self.mode, self.link_mbps = mode, link_mbps
        self.rx_cls = self.tx_cls = LOWEST  # zero-initialised adapter
        self.itr = E1000E_INITIAL_IRQ_PER_S

    def state(self) -> tuple:
        """Everything an update can change (for fixed-point detection)."""
        return (self.rx_cls, self.tx_cls, self.itr)

    def gap_us(self) -> int:
        """The programmed minimum interrupt gap in whole microseconds."""
        return e1000e_gap_us(self.itr)

    def update(self, rx_pk: int, rx_by: int, tx_pk: int, tx_by: int, gap_ns: float) -> None:
        """One interrupt's ``e1000_set_itr`` (``gap_ns`` unused: e1000e has no staleness rule)."""
        if self.link_mbps != 1000:
            new = 4000
        else:
            self.tx_cls = e1000e_update_class(self.tx_cls, tx_pk, tx_by)
            if self.mode == 3 and self.tx_cls == LOWEST:
                self.tx_cls = LOW
            self.rx_cls = e1000e_update_class(self.rx_cls, rx_pk, rx_by)
            if self.mode == 3 and self.rx_cls == LOWEST:
                self.rx_cls = LOW
            new = CLASS_IRQ_PER_S[max(self.rx_cls, self.tx_cls)]
        if new != self.itr:
            # bias towards bulk: raise the interrupt rate in steps, lower it at once
            self.itr = min(self.itr + (new >> 2), new) if new > self.itr else new

    def describe(self) -> str:
        """Human-readable state for decision records."""
        return f"rx {CLASS_NAMES[self.rx_cls]}, tx {CLASS_NAMES[self.tx_cls]}, {self.itr} irq/s"


def ixgbe_update_container(cur_itr: int, flag_prev: int, packets: int, bytes_: int, link_mbps: int) -> int:
    """``ixgbe_update_itr`` for one ring container; returns its new u8 ``itr`` (usecs | flag).

    ``cur_itr`` is the vector's programmed ``q_vector->itr`` (usecs << 2), ``flag_prev`` the
    container's previous value (only its latency bit matters).
    """
    if not packets:
        itr = min((cur_itr >> 2) + ITR_MIN_INC_US, ITR_MAX_US)
        return itr + (flag_prev & ITR_LATENCY)
    if packets < 4 and bytes_ < 9000:
        itr = ITR_LATENCY
    elif packets < 48:
        return min((cur_itr >> 2) + ITR_MIN_INC_US, ITR_MAX_US)
    elif packets < 96:
        return cur_itr >> 2
    elif packets < 256:
        return max(cur_itr >> 3, ITR_MIN_US)
    else:
        itr = ITR_BULK
    size = bytes_ // packets
    if size <= 60:
        w = 5120
    elif size <= 316:
        w = size * 40 + 2720
    elif size <= 1084:
        w = size * 15 + 11452
    elif size < 1968:
        w = size * 5 + 22420
    else:
        w = 32256
    if itr & ITR_LATENCY:
        w >>= 1
    if link_mbps in _SLOW_LINKS_MBPS:
        w = min(w, 8064)
        return itr + -(-w // (ITR_MIN_INC_US * 64)) * ITR_MIN_INC_US
    return itr + -(-w // (ITR_MIN_INC_US * 256)) * ITR_MIN_INC_US


class IxgbeItr:
    """``ixgbe_set_itr`` state of one vector: both containers' u8 values and the EITR."""

    def __init__(self, link_mbps: int, hz: int) -> None:
        self.link_mbps, self.jiffy_ns = link_mbps, NS_PER_S / hz
        self.rx = self.tx = ITR_MAX_US | ITR_LATENCY
        self.itr = IXGBE_20K_ITR

    def state(self) -> tuple:
        """Everything an update can change (for fixed-point detection)."""
        return (self.rx, self.tx, self.itr)

    def gap_us(self) -> int:
        """The programmed EITR interval in microseconds."""
        return self.itr >> 2

    def update(self, rx_pk: int, rx_by: int, tx_pk: int, tx_by: int, gap_ns: float) -> None:
        """One interrupt's ``ixgbe_set_itr``; ``gap_ns`` is the time since the previous update."""
        if gap_ns > 1.5 * self.jiffy_ns:  # stale statistics: default latency setting
            self.tx = self.rx = ITR_MIN_US | ITR_LATENCY
        else:
            self.tx = ixgbe_update_container(self.itr, self.tx, tx_pk, tx_by, self.link_mbps)
            self.rx = ixgbe_update_container(self.itr, self.rx, rx_pk, rx_by, self.link_mbps)
        # min over the raw values, latency bit included; then strip it and shift
        self.itr = (min(self.rx, self.tx) & ~ITR_LATENCY) << 2

    def describe(self) -> str:
        """Human-readable state for decision records."""

        def fmt(v: int) -> str:
            return f"{v & ~ITR_LATENCY} us {'latency' if v & ITR_LATENCY else 'bulk'}"

        return f"rx {fmt(self.rx)}, tx {fmt(self.tx)}, EITR {self.itr >> 2} us"


def itr_cycle_s(lam_pps: float, gap_s: float) -> float:
    """Mean interrupt cycle (s) under a minimum gap ``gap_s`` with Poisson arrivals at ``lam_pps``.

    The gap runs from the last interrupt; if no packet came within it, the next packet fires at
    once: cycle = gap + exp(-lam * gap) / lam (derived).
    """
    if lam_pps <= 0:
        return math.inf
    return gap_s + math.exp(-lam_pps * gap_s) / lam_pps


class IntelItr(PolicyBase):
    """Intel adaptive ITR per NIC vector: e1000e classes or the ixgbe packets-per-interrupt bands."""

    name = "intel_itr"
    description = "Intel adaptive ITR: e1000e lowest/low/bulk classes or ixgbe adaptive (min gap)"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``variant``: e1000e|ixgbe; ``itr_mode``: 1 (dynamic) or 3 (conservative, e1000e);
        ``link_mbps``: link speed (0 = the variant's native 1000 / 10000); ``hz``: kernel tick
        rate for ixgbe's staleness rule; ``layers``: comma-separated layers to control."""

        variant: str = "e1000e"
        itr_mode: int = 3
        link_mbps: int = 0
        hz: int = 1000
        layers: str = "nic"

        def __post_init__(self) -> None:
            check_choice("variant", self.variant, ("e1000e", "ixgbe"))
            if self.itr_mode not in (1, 3) or isinstance(self.itr_mode, bool):
                raise ValueError(f"itr_mode={self.itr_mode!r}: must be 1 (dynamic) or 3 (conservative)")
            check_int("link_mbps", self.link_mbps, 0, 800_000)
            check_int("hz", self.hz, 100, 1000)
            parse_layers("layers", self.layers)

    def reset(self, context: PolicyContext, rng) -> None:
        super().reset(context, rng)
        layers = set(parse_layers("layers", self.params.layers))
        p = self.params
        link = p.link_mbps or (1000 if p.variant == "e1000e" else 10_000)
        self._engines: dict[Site, E1000eItr | IxgbeItr] = {}
        self._current: dict[Site, CoalesceParams] = {}
        for site, info in context.sites.items():
            if site.layer in layers and (can_set(info, "rx_usecs") or can_set(info, "tx_usecs")):
                self._engines[site] = E1000eItr(p.itr_mode, link) if p.variant == "e1000e" else IxgbeItr(link, p.hz)
                self._current[site] = info.initial
        self._started = False
        self._notes: dict[Site, tuple[str, dict[str, float]]] = {}

    def _changes(self, site: Site) -> dict:
        gap = self._engines[site].gap_us()
        return {"rx_usecs": gap, "tx_usecs": gap, "timer": TimerMode.ITR}

    def _replay(self, site: Site, s: SiteStats) -> None:
        eng = self._engines[site]
        n = max(s.rx.interrupts, s.tx.interrupts)
        if n == 0:
            return
        before = eng.describe()
        rx_pk, rx_by = round_div(s.rx.packets, n), round_div(s.rx.bytes, n)
        tx_pk, tx_by = round_div(s.tx.packets, n), round_div(s.tx.bytes, n)
        cycle_ns = s.interval_ns / n
        eng.update(rx_pk, rx_by, tx_pk, tx_by, cycle_ns)
        updates = 1
        if s.interval_ns:
            secs = s.interval_ns / NS_PER_S
            lam_rx, lam_tx = s.rx.packets / secs, s.tx.packets / secs
            size_rx = s.rx.bytes / s.rx.packets if s.rx.packets else 0.0
            size_tx = s.tx.bytes / s.tx.packets if s.tx.packets else 0.0
            gap0_us = s.params.rx_usecs if s.params.timer is TimerMode.ITR else 0
            # time per cycle beyond the throttle's own (NAPI polling, burstiness), kept constant
            extra_s = max(0.0, cycle_ns / NS_PER_S - itr_cycle_s(lam_rx + lam_tx, gap0_us * 1e-6))
            for _ in range(min(n, MAX_UPDATES_PER_WINDOW) - 1):
                cycle = itr_cycle_s(lam_rx + lam_tx, eng.gap_us() * 1e-6) + extra_s
                k_rx, k_tx = lam_rx * cycle, lam_tx * cycle
                old = eng.state()
                eng.update(
                    round(k_rx), round(k_rx * size_rx), round(k_tx), round(k_tx * size_tx), cycle * NS_PER_S
                )
                updates += 1
                if eng.state() == old:
                    break
        inputs = {
            "interrupts": float(n),
            "rx_pkts_per_irq": s.rx.packets / n,
            "rx_bytes_per_irq": s.rx.bytes / n,
            "tx_pkts_per_irq": s.tx.packets / n,
            "tx_bytes_per_irq": s.tx.bytes / n,
            "updates_replayed": float(updates),
        }
        self._notes[site] = (f"{self.params.variant}: {before} -> {eng.describe()}", inputs)

    def observe(self, stats: WindowStats) -> None:
        """Replay the window's interrupts through each vector's ITR state."""
        super().observe(stats)
        for site in self._engines:
            s = stats.sites.get(site)
            if s is not None:
                self._replay(site, s)

    def decide(self) -> Decision | None:
        """The initial ITR once, then the new minimum gap of every vector that was updated."""
        if self.context is None or not self._engines:
            return None
        index = self.window.index if self.window is not None else 0
        notes = self._notes
        self._notes = {}
        initial = not self._started
        if initial:
            self._started = True
            notes = {site: (f"{self.params.variant}: initial {eng.describe()}", {}) for site, eng in self._engines.items()}
        if not notes:
            return None
        params, records = {}, []
        for site, (text, inputs) in notes.items():
            info = self.context.sites[site]
            new = apply_changes(self._current[site], info, self._changes(site))
            changed = new != self._current[site]
            if changed or initial:
                params[site] = new
            self._current[site] = new
            gap = self._engines[site].gap_us()
            predicted = {"gap_us": float(gap), "max_irq_per_s": 1e6 / max(gap, 1)}
            records.append(DecisionRecord(index, site, new, changed, "intel_itr " + text, inputs, predicted))
        return Decision(params, tuple(records))
