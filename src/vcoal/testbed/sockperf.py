"""sockperf driver: pure ``build_*_argv()`` and ``parse()``; tested on captured real output.

Quirks of sockperf 3.7 (Debian bookworm) that shape this driver:

* The client sleeps ~2 s before its warm-up and discards the first 400 ms and last 50 ms of the
  run, so ``-t T`` yields ``T - 0.45`` s of valid samples and takes ``T + ~2.2`` s of wall time.
  Short per-window client runs are therefore useless; one client spans the whole trial and the
  per-window split is done afterwards from ``--full-log``.
* ``--full-rtt`` reports the full round trip (otherwise the "latency" is half of it).
* The full log (``--full-log FILE``) repeats the summary, then a CSV
  ``packet, txTime(sec), rxTime(sec), rtt(usec)`` of every valid sample, then a dashed line.
* Under-load mode (``ul``) measures only every ``--reply-every``-th message (default 100).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WARMUP_S = 0.4
COOLDOWN_S = 0.05
STARTUP_S = 2.0


@dataclass(frozen=True, slots=True)
class SockperfClient:
    """A sockperf client run: ping-pong (``pp``, closed loop) or under-load (``ul``, open loop).

    ``mps`` is the message rate for ``ul`` (messages/s); ``reply_every`` how many of them are
    answered and measured. ``full_log`` is a path (inside the namespace's view of the file system).
    """

    ip: str
    port: int
    duration_s: float
    mode: str = "pp"
    tcp: bool = False
    msg_bytes: int = 64
    mps: int | None = None
    reply_every: int | None = None
    full_log: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pp", "ul"):
            raise ValueError(f"sockperf mode {self.mode!r}: must be 'pp' or 'ul'")
        if self.duration_s <= WARMUP_S + COOLDOWN_S:
            raise ValueError(f"sockperf duration_s={self.duration_s}: must exceed {WARMUP_S + COOLDOWN_S} s")
        if not 14 <= self.msg_bytes <= 65_000:
            raise ValueError(f"sockperf msg_bytes={self.msg_bytes}: must be in [14, 65000]")


def build_server_argv(ip: str, port: int, tcp: bool = False) -> list[str]:
    """``sockperf server`` bound to one address and port."""
    argv = ["sockperf", "sr", "-i", ip, "-p", str(port)]
    if tcp:
        argv.append("--tcp")
    return argv


def build_argv(c: SockperfClient) -> list[str]:
    """Client argv; sockperf's ``-t`` takes whole seconds, so the duration is rounded up."""
    import math

    argv = ["sockperf", c.mode, "-i", c.ip, "-p", str(c.port), "-t", str(max(1, math.ceil(c.duration_s)))]
    argv += ["-m", str(c.msg_bytes), "--full-rtt"]
    if c.tcp:
        argv.append("--tcp")
    if c.mode == "ul" and c.mps is not None:
        argv += ["--mps", str(c.mps)]
    if c.reply_every is not None:
        argv += ["--reply-every", str(c.reply_every)]
    if c.full_log:
        argv += ["--full-log", c.full_log]
    return argv


@dataclass(frozen=True, slots=True)
class SockperfResult:
    """What one client run reported: round trips in µs over the valid duration."""

    valid_s: float
    sent: int
    received: int
    observations: int
    dropped: int
    avg_rtt_us: float
    percentiles_us: dict[str, float] = field(default_factory=dict)  # "p50", "p99", "p99_9", "min", "max"

    @property
    def transactions_per_s(self) -> float:
        return self.received / self.valid_s if self.valid_s else 0.0


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_VALID = re.compile(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)")
_AVG = re.compile(r"avg-rtt=([\d.]+)")
_OBS = re.compile(r"Total (\d+) observations")
_DROP = re.compile(r"# dropped messages = (\d+)")
_PCT = re.compile(r"---> percentile ([\d.]+) =\s*([\d.]+)")
_MINMAX = re.compile(r"---> <(MIN|MAX)> observation =\s*([\d.]+)")


def _pct_key(p: str) -> str:
    value = float(p)
    text = f"{value:g}".replace(".", "_")
    return f"p{text}"


def parse(text: str) -> SockperfResult:
    """Parse a client's stdout (summary printed once; the full-log copy is parsed the same way).

    Raises ValueError naming what is missing when the run produced no statistics.
    """
    text = _ANSI.sub("", text)
    valid = _VALID.search(text)
    if not valid:
        raise ValueError("sockperf output: no '[Valid Duration]' line (did the client reach the server?)")
    # The statistics block follows the first [Valid Duration]; stop at the dashed separator.
    block = text[valid.end() :].split("------------------------------", 1)[0]
    pcts: dict[str, float] = {}
    for p, v in _PCT.findall(block):
        pcts[_pct_key(p)] = float(v)
    for which, v in _MINMAX.findall(block):
        pcts[which.lower()] = float(v)
    avg, obs, drop = _AVG.search(block), _OBS.search(block), _DROP.search(block)
    return SockperfResult(
        valid_s=float(valid.group(1)),
        sent=int(valid.group(2)),
        received=int(valid.group(3)),
        observations=int(obs.group(1)) if obs else 0,
        dropped=int(drop.group(1)) if drop else 0,
        avg_rtt_us=float(avg.group(1)) if avg else float("nan"),
        percentiles_us=pcts,
    )


def parse_full_log(text: str) -> list[tuple[float, float]]:
    """Samples of a ``--full-log`` file as (tx time in s since the client's clock origin, rtt in µs)."""
    out: list[tuple[float, float]] = []
    started = False
    for line in text.splitlines():
        if not started:
            started = line.startswith("packet, txTime")
            continue
        parts = line.split(",")
        if len(parts) != 4:
            if out:
                break
            continue
        try:
            out.append((float(parts[1]), float(parts[3])))
        except ValueError:
            continue
    return out
