"""The event engine's compiled mode.

There is one engine source, ``vcoal.sim.engine``: numba-compatible Python over the arena's two
flat arrays, run compiled with numba (``engine="compiled"``, what ``auto`` picks for every run the
one-layer fast path does not take and that does not ask for an audit) or interpreted
(``engine="des"``, the reference: audits, traces, debugging, coverage). Both modes run the same
statements over the same arena and give identical results; ``tests/test_sim_engine.py`` holds
both to golden fingerprints recorded with the retired pure-Python engine and to each other on
random scenarios.

Only the event loop is compiled: the window and policy loop, the statistics and the summary
(``simulation.py``) are Python, fed from the arena at every window. Speed:
``benchmarks/sim_speed.py``; the README's speed section has the figures. The first call in a
process compiles (about 15 s, per changed source) or loads numba's cache.
"""

from __future__ import annotations


def supports(spec, policy, audit: bool = False) -> bool:
    """Whether the compiled mode runs this scenario: always (audits included), since it is the
    same source as the reference."""
    return True
