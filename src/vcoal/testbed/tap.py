"""In-loop latency of the sockperf tenants, measured on the wire without touching the tools.

sockperf 3.7 reports only at exit (and dies silently on SIGINT), so a policy could not see tenant
latency during a trial. The tap fills that gap: a packet socket on ``wire0`` (the external client's
NIC, in the wire namespace) sees every sockperf request leave and every reply come back. A classic
BPF filter passes only UDP packets whose sockperf sequence number is a multiple of ``every``
(default 16), so Python handles a few thousand packets/s at most; the kernel stamps each packet
(SO_TIMESTAMPNS, taken when wire0 transmits or receives it), so the round trip is exact whatever
the sniffer's own scheduling delay and covers all four NAPI hops, without the client's wake-up.

sockperf's UDP payload starts with ``seq`` (u64, big endian); requests leave wire0 towards the
server's port (PACKET_OUTGOING), replies come back from it. Output: one line per matched round
trip, ``<port> <request time, CLOCK_MONOTONIC ns> <rtt ns>``, read after every window by
``TapReader``.

    python -m vcoal.testbed.tap IFNAME EVERY OUT_FILE
"""

from __future__ import annotations

import ctypes
import math
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
_SEQ_LAST_BYTE = 14 + 20 + 8 + 7  # Ethernet + IPv4 (no options: the testbed sets none) + UDP + seq[7]


def bpf_program(every: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF: accept IPv4/UDP packets whose seq's low byte is a multiple of ``every`` (2^k)."""
    if every < 1 or every & (every - 1) or every > 256:
        raise ValueError(f"every={every}: must be a power of two in [1, 256]")
    return [
        (0x28, 0, 0, 12),  # ldh [12]          ethertype
        (0x15, 0, 6, 0x0800),  # jeq IPv4 else drop
        (0x30, 0, 0, 23),  # ldb [23]          IP protocol
        (0x15, 0, 4, 17),  # jeq UDP else drop
        (0x30, 0, 0, _SEQ_LAST_BYTE),  # ldb seq[7]
        (0x54, 0, 0, every - 1),  # and every-1
        (0x15, 0, 1, 0),  # jeq 0 -> accept else drop
        (0x06, 0, 0, 0xFFFF),  # ret accept
        (0x06, 0, 0, 0),  # ret drop
    ]


def parse_frame(frame: bytes) -> tuple[int, int, int] | None:
    """(src port, dst port, seq) of a sockperf UDP frame, None for anything else."""
    if len(frame) < 50 or frame[12:14] != b"\x08\x00" or frame[23] != 17 or frame[14] != 0x45:
        return None
    sport, dport = struct.unpack_from("!HH", frame, 34)
    (seq,) = struct.unpack_from("!Q", frame, 42)
    return sport, dport, seq


def _attach(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def run(ifname: str, every: int, out_path: str) -> None:
    """Capture forever; append one line per matched request/reply pair."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # no packets until bound
    _attach(s, bpf_program(every))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((ifname, ETH_P_ALL))
    real_to_mono = time.time_ns() - time.monotonic_ns()
    pending: dict[tuple[int, int], int] = {}
    with open(out_path, "a", buffering=1) as out:
        while True:
            frame, anc, _flags, addr = s.recvmsg(128, socket.CMSG_SPACE(16))
            ts = next((d for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
            parsed = parse_frame(frame)
            if parsed is None or ts is None:
                continue
            sec, nsec = struct.unpack("qq", ts[:16])
            t_ns = sec * 1_000_000_000 + nsec - real_to_mono
            sport, dport, seq = parsed
            if addr[2] == PACKET_OUTGOING:
                pending[(dport, seq)] = t_ns
                if len(pending) > 4096:
                    pending.clear()
            else:
                t_req = pending.pop((sport, seq), None)
                if t_req is not None:
                    out.write(f"{sport} {t_req} {t_ns - t_req}\n")


class TapReader:
    """Reads the complete new lines of a tap's output file (samples per port)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[tuple[int, int, int]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        return parse_lines(data[:end].decode())


def parse_lines(text: str) -> list[tuple[int, int, int]]:
    """``port t_ns rtt_ns`` lines → samples (malformed lines skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def window_quantiles(
    samples: list[tuple[int, int, int]], port: int, lo_ns: int, hi_ns: int
) -> tuple[int, float | None, float | None]:
    """(count, p50_us, p99_us) of one port's round trips whose request left in [lo_ns, hi_ns)."""
    rtts = sorted(r for p, t, r in samples if p == port and lo_ns <= t < hi_ns)
    if not rtts:
        return 0, None, None

    def q(x: float) -> float:
        return rtts[max(0, math.ceil(x * len(rtts)) - 1)] / 1e3

    return len(rtts), q(0.5), q(0.99)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__ or "")
        raise SystemExit(2)
    run(sys.argv[1], int(sys.argv[2]), sys.argv[3])
