"""Small scenarios (TOML text) that the experiment and report tests run in a fraction of a second.

Each is two milliseconds per policy window and a request-response tenant with a p99 SLO, and
optionally an open-loop Poisson tenant with a rate step; the tests vary the names, the SLOs and
the step.
"""

from __future__ import annotations


def scenario(name: str, *guests: str, duration_s: float = 0.02, seed: int | None = None) -> str:
    """A scenario document with the given ``[[guests]]`` tables."""
    head = f'name = "{name}"\nduration_s = {duration_s}\nwarmup_s = 0.002\n'
    if seed is not None:
        head += f"seed = {seed}\n"
    return head + "[window]\nduration_us = 2000\n" + "".join(guests)


def rr(p99_us: float = 80.0) -> str:
    """Guest ``rr``: request-response, 2 outstanding, 50 µs think time, p99 SLO."""
    return (
        '[[guests]]\nname = "rr"\n'
        'workload = { kind = "request_response", outstanding = 2, think_us = 50.0 }\n'
        f"slo = {{ p99_us = {p99_us} }}\n"
    )


def poisson(name: str, step: tuple[float, float] | None = None, p99_us: float | None = None) -> str:
    """A Poisson guest at 20 kpps, stepping to ``step = (at_s, rate_pps)`` if given."""
    steps = f", steps = [[{step[0]}, {step[1]}]]" if step else ""
    slo = f"slo = {{ p99_us = {p99_us} }}\n" if p99_us is not None else ""
    return f'[[guests]]\nname = "{name}"\nworkload = {{ kind = "poisson", rate_pps = 20000{steps} }}\n' + slo
