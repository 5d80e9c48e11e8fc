"""What counting the napi trace costs: ring-buffer pages parsed per second by the testbed's reader.

The pages are the captured ones of ``tests/golden/linux/napi_poll_raw_pages.json`` (real
``trace_pipe_raw`` pages of Linux 6.18: ``napi_poll`` and NET_RX ``softirq_entry`` records), repeated
to a batch as the reader drains it. The baseline, run in the same process, is the same walk
interpreted (``_walk.py_func``, the function before numba compiles it): the ratio is what compiling
buys. ``cpu_share_at_2500_pages_per_s`` puts the compiled cost at the rate the testbed's short mixed
trial fills pages on the 2-vCPU VM (~2,500 pages/s: 5,575 pages in one trial of 2 s of load; 117
records a page in pages captured there).

Ends with one JSON line of figures (units in the keys).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vcoal.linux import tracepages

CAPTURE = Path(__file__).resolve().parent.parent / "tests" / "golden" / "linux" / "napi_poll_raw_pages.json"
TESTBED_PAGES_PER_S = 2500


def _pages_per_s(buf: bytes, n_pages: int, page_bytes: int, layout, seconds: float) -> tuple[float, tracepages.TraceCounts]:
    counts = tracepages.TraceCounts()
    tracepages.parse_pages(buf, page_bytes, counts, 0, layout)  # compiled (or loaded) before timing
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or done == 0:
        counts = tracepages.TraceCounts()
        tracepages.parse_pages(buf, page_bytes, counts, 0, layout)
        done += n_pages
    return done / elapsed, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: .venv/bin/python benchmarks/trace_parse.py --pages 64 --seconds 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=64, help="pages in one batch (default 64: ~25 ms of the trial's trace)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    args = ap.parse_args(argv)
    if not 1 <= args.pages <= 65536 or not 0 < args.seconds <= 600:
        ap.error("--pages is 1..65536 and --seconds 0..600")
    capture = json.loads(CAPTURE.read_text())
    layout = tracepages.EventLayout.from_formats(capture["formats"]["napi_poll"], capture["formats"]["softirq_entry"])
    pages = [bytes.fromhex(page) for _, page in capture["pages"]]
    page_bytes = len(pages[0])
    buf = b"".join(pages[k % len(pages)] for k in range(args.pages))
    compiled, counts = _pages_per_s(buf, args.pages, page_bytes, layout, args.seconds)
    records = counts.polls + counts.net_rx_runs
    walk = tracepages._walk
    tracepages._walk = walk.py_func
    try:
        interpreted, again = _pages_per_s(buf, args.pages, page_bytes, layout, args.seconds)
    finally:
        tracepages._walk = walk
    assert (again.polls, again.net_rx_runs, again.attributed_runs) == (counts.polls, counts.net_rx_runs, counts.attributed_runs)
    figures = {
        "pages_per_batch": args.pages,
        "records_per_page": records / args.pages,
        "compiled_pages_per_s": compiled,
        "compiled_us_per_page": 1e6 / compiled,
        "compiled_ns_per_record": 1e9 * args.pages / compiled / records,
        "interpreted_pages_per_s": interpreted,
        "compiled_over_interpreted": compiled / interpreted,
        "cpu_share_at_2500_pages_per_s": TESTBED_PAGES_PER_S / compiled,
    }
    for key, value in figures.items():
        print(f"{key:32} {value:,.4g}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
