"""Where trials run: the standard-library process pool (default) or a Dask cluster.

Both are handed to the runner as a ``concurrent.futures.Executor``: the pool directly, Dask via
``Client.get_executor()``. A handle adds what the runner needs around it: how many trials to keep
in flight, how to stop abruptly on Ctrl-C, whether a broken pool can be replaced.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
from typing import Any

from vcoal.experiments.worker import init_pool_worker

DEFAULT_TASKS_PER_CHILD = 64


class ExecutorHandle:
    """An executor plus lifecycle: ``close()`` for a normal end, ``abort()`` for Ctrl-C."""

    name = "executor"
    restartable = False

    def __init__(self, executor: cf.Executor, workers: int) -> None:
        self.executor = executor
        self.workers = workers

    def abort(self) -> None:
        """Stop at once: cancel queued trials, end running ones."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Normal shutdown after all futures completed."""
        self.executor.shutdown(wait=True)

    def restart(self) -> ExecutorHandle:
        raise RuntimeError(f"{self.name}: cannot be restarted")

    def __enter__(self) -> ExecutorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PoolHandle(ExecutorHandle):
    """``ProcessPoolExecutor`` with forkserver and ``max_tasks_per_child`` (leaks are recycled)."""

    name = "process pool"
    restartable = True

    def __init__(self, workers: int | None = None, cache_dir: str | None = None,
                 max_tasks_per_child: int = DEFAULT_TASKS_PER_CHILD) -> None:
        workers = workers or os.cpu_count() or 1
        if not 1 <= workers <= 1024:
            raise ValueError(f"workers: {workers} out of range [1, 1024]")
        self._args = (workers, cache_dir, max_tasks_per_child)
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        executor = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=init_pool_worker,
            initargs=(cache_dir, os.getpid()),  # workers exit when this process does
            max_tasks_per_child=max_tasks_per_child,
        )
        super().__init__(executor, workers)

    def worker_pids(self) -> list[int]:
        """PIDs of the pool's live worker processes (for tests and diagnostics)."""
        procs = getattr(self.executor, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.pid is not None]

    def abort(self) -> None:
        procs = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # the pool's own children, started by this handle
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)

    def close(self) -> None:
        with contextlib.suppress(cf.process.BrokenProcessPool):
            self.executor.shutdown(wait=True)

    def restart(self) -> PoolHandle:
        self.abort()
        return PoolHandle(*self._args)


class DaskHandle(ExecutorHandle):
    """Dask distributed through ``Client.get_executor()``; an own ``LocalCluster`` when asked."""

    name = "dask"

    def __init__(self, address: str | None = None, local_workers: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("dask: not installed; pip install 'vcoal[cluster]'") from None
        self._cluster: Any = None
        if address is None:
            n = local_workers or os.cpu_count() or 1
            if not 1 <= n <= 1024:
                raise ValueError(f"dask-local: {n} out of range [1, 1024]")
            self._cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.name = f"dask local ({n} workers)"
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout="15s")
            except OSError as exc:
                raise ValueError(f"dask: cannot reach scheduler {address!r}: {exc}") from None
            self.name = f"dask {address}"
        workers = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()) or 1
        super().__init__(self.client.get_executor(pure=False), workers)

    def abort(self) -> None:
        self.executor.shutdown(wait=False)
        self._close_client()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self._close_client()

    def _close_client(self) -> None:
        import logging

        # closing makes workers log cancelled tasks and closed heartbeat streams; none is an error
        # of the sweep, which reports its own outcome
        log = logging.getLogger("distributed")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
        finally:
            log.setLevel(level)


def open_executor(
    workers: int | None = None,
    dask_address: str | None = None,
    dask_local: int | None = None,
    cache_dir: str | None = None,
) -> ExecutorHandle:
    """The executor a sweep asked for: Dask when an address or a local size is given, else the pool."""
    if dask_address and dask_local:
        raise ValueError("give either --dask ADDRESS or --dask-local N, not both")
    if dask_address or dask_local:
        return DaskHandle(dask_address, dask_local)
    return PoolHandle(workers, cache_dir)
