"""In-loop latency probe: a paced UDP ping-pong whose samples can be read while it runs.

sockperf 3.7 reports only at exit (and dies silently on SIGINT), so a policy could not see tenant
latency during a trial. The probe fills that gap: a second, low-rate flow (default 500 requests/s)
on the same path as the tenant (wire → guest and back), with one line per sample,
``<monotonic send time ns> <round trip ns>`` (``-1`` for a reply lost or later than 100 ms), written
to a file the trial reads after every window. Both ends use CLOCK_MONOTONIC, shared by all
namespaces, so samples align with the windows exactly.

It is Python: each round trip includes two interpreter wake-ups (~10–30 µs more than sockperf on
the test VM), so the probe's p99 is an upper-side estimate of the tenant's; deferral effects
(tens of µs to ms) are well resolved.

    python -m vcoal.testbed.probe server IP PORT
    python -m vcoal.testbed.probe client IP PORT RATE_PPS OUT_FILE
"""

from __future__ import annotations

import math
import socket
import struct
import sys
import time
from pathlib import Path

TIMEOUT_S = 0.1
_HDR = struct.Struct("!QQ")


def serve(ip: str, port: int) -> None:
    """Echo every datagram back to its sender, forever."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)


def client(ip: str, port: int, rate_pps: float, out_path: str) -> None:
    """Send paced requests, one outstanding; append one sample line per request to ``out_path``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    s.settimeout(TIMEOUT_S)
    gap_ns = round(1e9 / rate_pps)
    seq = 0
    with open(out_path, "a", buffering=1) as out:
        next_ns = time.monotonic_ns()
        while True:
            now = time.monotonic_ns()
            if now < next_ns:
                time.sleep((next_ns - now) / 1e9)
            seq += 1
            t0 = time.monotonic_ns()
            s.send(_HDR.pack(seq, t0))
            rtt = -1
            try:
                while True:
                    got, _ = _HDR.unpack(s.recv(64)[: _HDR.size])
                    if got == seq:
                        rtt = time.monotonic_ns() - t0
                        break
            except (TimeoutError, struct.error):
                pass
            out.write(f"{t0} {rtt}\n")
            next_ns = max(next_ns + gap_ns, time.monotonic_ns())


class ProbeReader:
    """Reads new complete sample lines of a probe's output file (pure apart from the file read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[tuple[int, int]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        return parse_lines(data[:end].decode())


def parse_lines(text: str) -> list[tuple[int, int]]:
    """``t_ns rtt_ns`` lines → samples (malformed lines skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            try:
                out.append((int(parts[0]), int(parts[1])))
            except ValueError:
                continue
    return out


def window_quantiles(samples: list[tuple[int, int]], lo_ns: int, hi_ns: int) -> tuple[int, float | None, float | None]:
    """(count, p50_us, p99_us) of samples sent in [lo_ns, hi_ns); a lost reply counts as 100 ms."""
    rtts = sorted(r if r >= 0 else round(TIMEOUT_S * 1e9) for t, r in samples if lo_ns <= t < hi_ns)
    if not rtts:
        return 0, None, None

    def q(p: float) -> float:
        return rtts[max(0, math.ceil(p * len(rtts)) - 1)] / 1e3

    return len(rtts), q(0.5), q(0.99)


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "server":
        serve(argv[1], int(argv[2]))
    elif len(argv) >= 5 and argv[0] == "client":
        client(argv[1], int(argv[2]), float(argv[3]), argv[4])
    else:
        sys.stderr.write(__doc__ or "")
        raise SystemExit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
