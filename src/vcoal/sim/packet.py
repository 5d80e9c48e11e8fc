"""The packet record that travels through the simulated path."""

from __future__ import annotations

DATA, REQ, RESP, ACK = 0, 1, 2, 3


class Pkt:
    """One packet: owner tenant index, size, creation time, kind and a reference value.

    ``t0`` is when the packet entered the path (wire arrival for RX, the application's send for
    TX); ``ref`` carries the request's send time for responses and the acknowledged count for ACKs.
    """

    __slots__ = ("kind", "ref", "size", "t0", "tenant")

    def __init__(self, tenant: int, size: int, t0: int, kind: int = DATA, ref: int = 0) -> None:
        self.tenant = tenant
        self.size = size
        self.t0 = t0
        self.kind = kind
        self.ref = ref
