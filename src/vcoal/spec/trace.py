"""Trace rows ``(timestamp_us, size_bytes, direction)``: one check for CSV files and inline rows.

A CSV trace is read with ``read_trace_csv`` (errors name the file and the line); inline
``trace_rows`` are checked by the scenario model with the same ``row_problem`` / ``rows_problem``,
so both accept exactly the same rows: finite time in [0, MAX_TIMESTAMP_US], size in
[1, 65535], direction ``rx`` or ``tx``, sorted by time.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from vcoal.model.tomlfile import read_text

MAX_DURATION_S = 3600
"""The longest scenario (``duration_s``); also bounds rate-step times and trace timestamps."""
MAX_TIMESTAMP_US = MAX_DURATION_S * 1_000_000
MAX_PACKET_BYTES = 65_535
DIRECTIONS = ("rx", "tx")
TRACE_MAX_BYTES = 64 * 2**20
"""Largest trace CSV read (64 MiB, about 3 million rows); larger files are refused."""
COLUMNS = "timestamp_us,size_bytes,direction"

Row = tuple[float, int, str]


def row_problem(ts: object, size: object, direction: object) -> str | None:
    """What is wrong with one row, or None."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return f"timestamp_us {ts!r}: expected a finite number in [0, {MAX_TIMESTAMP_US}]"
    if not 0 <= ts <= MAX_TIMESTAMP_US:
        return f"timestamp_us {ts!r} out of range [0, {MAX_TIMESTAMP_US}]"
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PACKET_BYTES:
        return f"size {size!r}: expected an integer in [1, {MAX_PACKET_BYTES}]"
    if direction not in DIRECTIONS:
        return f"direction {direction!r}: expected rx or tx"
    return None


def rows_problem(rows: Iterable[tuple]) -> tuple[int, str] | None:
    """The first bad row (0-based index) and what is wrong with it, or None; rows must be sorted."""
    prev = 0.0
    for i, row in enumerate(rows):
        if len(row) != 3:
            return i, f"expected 3 values {COLUMNS}, got {len(row)}"
        problem = row_problem(*row)
        if problem is None and row[0] < prev:
            problem = f"timestamp_us {row[0]!r} is before {prev!r} on the row above (rows must be sorted by time)"
        if problem is not None:
            return i, problem
        prev = row[0]
    return None


def read_trace_csv(path: str | Path, what: str) -> list[Row]:
    """Read a ``timestamp_us,size_bytes,direction`` CSV (header and ``#`` comments optional).

    Raises ValueError with one line naming ``what``, the file and the line on: a missing, non-regular
    or oversized (TRACE_MAX_BYTES) file, text that is not UTF-8, a bad or unsorted row, no rows.
    """
    path = Path(path)
    text = read_text(path, what, TRACE_MAX_BYTES)
    rows: list[Row] = []
    lines: list[int] = []
    for lineno, fields in enumerate(csv.reader(text.splitlines()), 1):
        if not fields or fields[0].lstrip().startswith("#") or (lineno == 1 and not _is_number(fields[0])):
            continue
        where = f"{what}: {path}:{lineno}"
        if len(fields) != 3:
            raise ValueError(f"{where}: expected 3 columns {COLUMNS}, got {len(fields)}")
        try:
            ts = float(fields[0])
        except ValueError:
            raise ValueError(f"{where}: timestamp_us {fields[0].strip()!r} is not a number") from None
        try:
            size = int(fields[1])
        except ValueError:
            raise ValueError(f"{where}: size {fields[1].strip()!r} is not an integer") from None
        rows.append((ts, size, fields[2].strip()))
        lines.append(lineno)
    bad = rows_problem(rows)
    if bad is not None:
        raise ValueError(f"{what}: {path}:{lines[bad[0]]}: {bad[1]}")
    if not rows:
        raise ValueError(f"{what}: {path}: no rows (expected {COLUMNS} lines)")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
