"""What runs on a worker (pool process or Dask worker): one trial in, plain data out.

``execute_trial`` never raises for a failing trial: the error becomes data and the sweep goes on.
It sets ``NUMBA_CACHE_DIR`` before the simulator is imported so compiled kernels are cached
across worker processes and across sweeps.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcoal.results.provenance import host_facts, now_iso, package_version

TrialFn = Callable[..., Any]
"""``fn(spec, policy, seed=..., duration_s=None) -> TrialResult``, like ``vcoal.sim.run_scenario``."""


def default_numba_cache_dir() -> str:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vcoal/numba`` (``~/.cache/vcoal/numba``)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "vcoal" / "numba")


def numba_cache_target(cache_dir: str | None = None) -> str:
    """The cache a worker uses: ``$NUMBA_CACHE_DIR`` if set, else ``cache_dir``, else the default."""
    return os.environ.get("NUMBA_CACHE_DIR") or cache_dir or default_numba_cache_dir()


def ensure_numba_cache(cache_dir: str | None) -> None:
    """Point numba's cache at ``cache_dir`` (created) unless the environment already chose one."""
    target = numba_cache_target(cache_dir)
    try:
        Path(target).mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if os.environ.get("NUMBA_CACHE_DIR") != target:
        os.environ["NUMBA_CACHE_DIR"] = target
        numba_config = sys.modules.get("numba.core.config")
        if numba_config is not None:  # numba imported before us: make it re-read the variable
            numba_config.reload_config()


ENGINE_DIR = Path(os.path.abspath(__file__)).parent.parent / "sim" / "engine"
"""The simulator engine's sources (``vcoal.sim.engine``), as numba names them in its cache."""


def engine_cache_cold(cache_dir: str | None = None) -> bool:
    """True when the numba cache (``numba_cache_target(cache_dir)``) holds no compiled simulator engine
    of this installation yet, so the first simulation compiles it. Looks for numba's index of the
    event loop (``loop.run``) in the subdirectory numba derives from the engine's directory (a stale
    index, after the sources changed, counts as warm). The subdirectory is named as numba's
    ``_CacheLocator.get_suitable_cache_subpath`` names it (a test holds the two equal), so that a
    sweep's driver need not import numba (0.8 s) to ask."""
    target = Path(numba_cache_target(cache_dir))
    sub = f"{ENGINE_DIR.name}_{hashlib.sha1(str(ENGINE_DIR).encode()).hexdigest()}"
    return not any((target / sub).glob("loop.run-*.nbi"))


def cold_engine_note(cache_dir: str | None = None, who: str = "on this machine") -> str | None:
    """One line saying that the first simulation (``who`` runs it) compiles the engine, when the cache
    (``numba_cache_target(cache_dir)``) holds no compiled engine yet; None otherwise."""
    if not engine_cache_cold(cache_dir):
        return None
    return (f"numba cache {numba_cache_target(cache_dir)} holds no compiled simulator engine yet: the first "
            f"simulation {who} compiles it (about a minute; cached for later runs)")


DRIVER_POLL_S = 1.0
"""Where ``pidfd_open`` is unavailable: how often a worker checks that its driver still runs."""


def exit_with(driver_pid: int) -> None:
    """End this process as soon as ``driver_pid`` ends, even when it is killed with SIGKILL.

    Pool workers are children of the forkserver, and each holds the pipe end whose closing tells
    the forkserver that its clients are gone; so when the driver is killed the forkserver waits
    for the workers and the workers wait on their task queue, for good (with the resource
    tracker). A daemon thread waits on a pidfd of the driver (Linux >= 5.3; elsewhere it polls)
    and exits the worker; the forkserver and the resource tracker then see their pipes close.
    """
    import select
    import threading

    try:
        pidfd = os.pidfd_open(driver_pid)
    except ProcessLookupError:  # already gone
        os._exit(1)
    except (AttributeError, OSError):
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable when the process has exited
        else:
            while _alive(driver_pid):
                time.sleep(DRIVER_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="vcoal-driver-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def init_pool_worker(cache_dir: str | None, driver_pid: int | None = None) -> None:
    """Process-pool initializer: exit with the driver, Ctrl-C is the driver's business, numba's cache."""
    if driver_pid is not None:
        exit_with(driver_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ensure_numba_cache(cache_dir)


def run_simulation(spec: Any, policy: Any, seed: int | None = None, duration_s: float | None = None) -> Any:
    """The default trial function: the simulator's ``run_scenario``."""
    from vcoal.sim import run_scenario

    return run_scenario(spec, policy, seed=seed, duration_s=duration_s)


def error_record(exc: BaseException) -> dict[str, str]:
    """A failed trial's ``error``: exception type, first line of its message, traceback."""
    return {
        "type": type(exc).__name__,
        "message": str(exc).splitlines()[0] if str(exc) else "",
        "traceback": "".join(traceback.format_exception(exc, limit=20)),
    }


def execute_trial(payload: dict[str, Any], trial_fn: TrialFn | None = None, cache_dir: str | None = None) -> dict:
    """Run one trial described by ``TrialSpec.payload()``.

    Returns
    -------
    dict
        ``run_key``, ``status`` (``ok`` / ``failed``), ``result`` (``TrialResult.to_dict()`` or
        None), ``error`` (``type``, ``message``, ``traceback`` or None), ``host``, ``pid``,
        ``package_version``, ``started_at``, ``finished_at``, ``wall_s``.
    """
    ensure_numba_cache(cache_dir)
    started_at, t0 = now_iso(), time.perf_counter()
    result = error = None
    try:
        from vcoal.policies import make_policy
        from vcoal.spec import parse_scenario

        spec = parse_scenario(payload["scenario"], f"trial {payload['run_key']}")
        policy = make_policy(payload["policy"], payload["policy_params"])
        res = (trial_fn or run_simulation)(spec, policy, seed=payload["seed"], duration_s=None)
        result = res.to_dict()
    except Exception as exc:
        error = error_record(exc)
    return {
        "run_key": payload["run_key"],
        "status": "ok" if error is None else "failed",
        "result": result,
        "error": error,
        "host": host_facts(),
        "pid": os.getpid(),
        "package_version": package_version(),
        "started_at": started_at,
        "finished_at": now_iso(),
        "wall_s": time.perf_counter() - t0,
    }
