"""The per-operation CPU cost table: the one definition of its default values.

Defaults from shared/reference/simulation.md A.1 (µs per event or packet; ``byte_copy_ns`` in ns per
byte). The scenario spec (``[cost]``), the ``qos`` controller's prior and the agent's ``cost_file``
all start from ``DEFAULT_COSTS``; nothing else spells these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_COSTS: Mapping[str, float] = MappingProxyType({
    "irq_us": 1.0,  # physical interrupt, direct cost
    "virq_us": 1.0,  # event-channel upcall / virtual irq in the guest
    "evtchn_send_us": 0.5,  # notify_remote_via_irq on the sender
    "poll_us": 0.3,  # one NAPI poll invocation
    "nic_pkt_us": 1.0,  # NIC driver rx/tx per packet in dom0
    "bridge_pkt_us": 1.0,  # bridge forwarding per packet
    "netback_pkt_us": 1.0,  # netback grant-copy op per packet
    "byte_copy_ns": 0.15,  # per byte copied by netback
    "frontend_pkt_us": 0.5,  # netfront / virtio-net per packet
    "stack_pkt_us": 1.0,  # guest TCP/IP stack per packet
    "tx_clean_us": 0.1,  # NIC TX completion cleaned per packet
    "ctx_switch_us": 1.5,  # waking the application thread
})  # fmt: skip

MAX_COST_US = 1000  # the largest per-event / per-packet cost (µs) a table may hold
MAX_BYTE_COST_NS = 100  # the largest per-byte cost (ns)


def max_cost(key: str) -> int:
    """Upper bound of one cost table entry."""
    return MAX_BYTE_COST_NS if key.endswith("_ns") else MAX_COST_US


def cost_table(overrides: Mapping[str, object] | None = None, origin: str = "cost") -> dict[str, float]:
    """The defaults with ``overrides`` applied; unknown names and values outside [0, MAX_COST] are
    refused with a ValueError naming the entry (bounds: ``max_cost``)."""
    out = dict(DEFAULT_COSTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_COSTS:
            raise ValueError(f"{origin}.{key}: unknown cost; known: {', '.join(DEFAULT_COSTS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{origin}.{key}: must be a number (got {value!r})")
        if not 0 <= value <= max_cost(key):
            raise ValueError(f"{origin}.{key}={value}: out of range [0, {max_cost(key):g}]")
        out[key] = float(value)
    return out
