"""The agent daemon: wires the Linux parts into ``run_loop`` and adds the safety net.

Order at start: check privilege (CAP_NET_ADMIN, unless dry run) -> lock the journal (one agent
per journal; an unusable ``journal_path`` stops here, before anything is applied) -> restore a
journal left over by a killed agent -> discover interfaces -> serve metrics -> loop. SIGTERM and
SIGINT set the stop event; on any exit (signal, error) every knob the agent changed is restored
from the journal. ``vcoal agent status`` reads the status file written here about once a second
(``describe_state`` tells a running agent from a stopped or killed one).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from vcoal.agent.config import AgentConfig
from vcoal.agent.linux_io import KnobApplier, LinuxSource
from vcoal.agent.loop import LoopResult, MonotonicClock, WindowReport, freeze_setup_objects, run_loop
from vcoal.agent.metrics import AgentMetrics
from vcoal.linux.hostinfo import driver_of, has_cap_net_admin, host_info
from vcoal.linux.journal import Journal, JournalBusy, JournalError, atomic_write_json
from vcoal.linux.knobs import LinuxKnobs
from vcoal.linux.procs import alive
from vcoal.linux.restore import RestoreIncomplete, restore_all
from vcoal.policies import make_policy

log = logging.getLogger(__name__)


class AgentError(RuntimeError):
    """The agent cannot run; the message says why and what to do."""


def open_journal(journal_path: str | Path) -> Journal:
    """The journal at ``journal_path``, locked for this process; AgentError (one line) when it is
    owned by another agent, tampered with, or cannot be created."""
    try:
        journal = Journal(journal_path)
        journal.acquire()
    except (JournalBusy, JournalError) as exc:
        raise AgentError(str(exc)) from None
    except OSError as exc:
        raise AgentError(
            f"journal_path {journal_path}: cannot create the journal's directory or lock file "
            f"({exc.strerror or exc}); choose a writable journal_path"
        ) from None
    return journal


def restore_leftovers(journal_path: str | Path, journal: Journal | None = None) -> int:
    """Restore a journal left by an agent that did not exit cleanly; returns knobs restored.

    Locks the journal first (unless ``journal``, already locked, is given): a journal whose agent
    is still running is refused. Entries that cannot be restored stay, and AgentError says why.
    """
    path = Path(journal_path)
    if journal is None:
        if not path.exists():
            return 0
        journal = open_journal(path)
    if not len(journal):
        return 0
    try:
        n = restore_all(journal)
    except RestoreIncomplete as exc:
        raise AgentError(str(exc)) from None
    log.warning("restored %d knob(s) from leftover journal %s", n, path)
    return n


def describe_state(status: dict) -> str:
    """"running", "stopped" (knobs restored at exit) or "not running" (the agent died without
    restoring: its knobs may still be set) for the contents of a status file."""
    if not status.get("running"):
        return "stopped"
    pid = status.get("pid")
    return "running" if isinstance(pid, int) and alive(pid) and _is_agent(pid) else "not running"


def _is_agent(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"agent" in cmd and b"vcoal" in cmd


class Agent:
    """One agent run (``run()`` blocks until stopped)."""

    def __init__(
        self,
        config: AgentConfig,
        dry_run: bool = False,
        on_window: Callable[[WindowReport], None] | None = None,
        config_path: str = "",
    ) -> None:
        self.config = config
        self.dry_run = dry_run
        self.user_on_window = on_window
        self.config_path = config_path
        self.stop = threading.Event()
        self.metrics = AgentMetrics()
        self.last_records: deque = deque(maxlen=20)
        self.result = LoopResult()
        self._status_every = max(1, round(1000 / config.window_ms))
        self._cpu_s = time.process_time()
        self._windows = 0
        self._overruns = 0
        self.started = time.time()
        self.knobs: LinuxKnobs | None = None
        self.journal: Journal | None = None
        self.restored = 0
        self.applier: KnobApplier | None = None

    def _signal(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop.set()

    def run(self) -> LoopResult:
        """Run until SIGTERM/SIGINT or ``stop``; always restores the knobs it changed."""
        cfg = self.config
        if not self.dry_run and not has_cap_net_admin():
            raise AgentError(
                "changing coalescing knobs needs CAP_NET_ADMIN: run as root, grant the capability "
                "(systemd AmbientCapabilities=CAP_NET_ADMIN), or use --dry-run"
            )
        host = host_info()
        log.info("vcoal agent: kernel %s, %d CPUs, policy %s, window %.1f ms%s",
                 host.kernel, host.cpus, cfg.policy.name, cfg.window_ms, " (dry run)" if self.dry_run else "")
        journal = None
        if self.dry_run:
            if Path(cfg.journal_path).exists():
                log.warning("leftover journal %s not restored in dry run (run `vcoal agent restore`)", cfg.journal_path)
        else:
            journal = self.journal = open_journal(cfg.journal_path)
            try:
                self.metrics.restores.inc(restore_leftovers(cfg.journal_path, journal))
            except AgentError:
                journal.release()
                raise
        self.knobs = LinuxKnobs(None, journal, dry_run=self.dry_run)
        self.applier = KnobApplier(cfg, self.knobs, dry_run=self.dry_run)
        source = LinuxSource(cfg, self.applier)
        policy = make_policy(cfg.policy.name, cfg.policy.params)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._signal)
            signal.signal(signal.SIGINT, self._signal)
        try:
            if cfg.metrics.enabled:
                self._serve_metrics()
            freeze_setup_objects()
            self.result = run_loop(
                MonotonicClock(), source, policy, self.applier, self.stop, cfg.window_ns,
                rng=random.Random(cfg.policy.seed), on_window=self._on_window,
            )
        finally:
            self._shutdown()
            source.close()
        return self.result

    def _serve_metrics(self) -> None:
        address, port = self.config.metrics.address, self.config.metrics.port
        try:
            port = self.metrics.serve(address, port)
        except OSError as exc:
            raise AgentError(
                f"metrics endpoint {address}:{port}: {exc.strerror or exc}; "
                "change [metrics] port or set enabled = false"
            ) from None
        if not _is_loopback(address):
            log.warning("metrics on %s are reachable from other hosts, without authentication "
                        "([metrics] address; 127.0.0.1 keeps them local)", address)
        log.info("metrics on http://%s:%d/metrics", address, port)

    def _shutdown(self) -> None:
        restored = 0
        if self.knobs is not None:
            if not self.dry_run:
                try:
                    restored = self.knobs.restore()
                except Exception:  # keep going: the journal stays for `vcoal agent restore`
                    log.exception("restore failed; run `vcoal agent restore`")
            self.knobs.close()
        if self.journal is not None:
            self.journal.release()
        self.metrics.restores.inc(restored)
        self.restored = restored
        log.info("stopped after %d windows (%d overruns); restored %d knob(s)",
                 self._windows, self._overruns, restored)
        self._write_status(running=False)

    def _on_window(self, report: WindowReport) -> None:
        assert self.applier is not None
        if not report.initial:
            self._windows += 1
            self._overruns += report.overruns
            self.metrics.update(report, len(self.applier.managed))
        if self.applier.backoffs:
            self.metrics.backoffs.inc(self.applier.backoffs)
            self.applier.backoffs = 0
        applied = {a.site: a for a in report.applied}
        for rec in report.records:
            self.last_records.append({**rec.to_dict(), "applied": _applied_text(applied.get(rec.site))})
            if rec.changed:
                log.info("window %d %s: %s%s (%s)", rec.window, rec.site, "would set " if self.dry_run else "",
                         _params_text(rec.params.to_dict()), rec.reason)
        if report.overruns:
            log.warning("window %d: %d window(s) overrun", report.stats.index, report.overruns)
        if self.user_on_window is not None:
            self.user_on_window(report)
        if not report.initial and self._windows % self._status_every == 0:
            cpu = time.process_time()
            self.metrics.loop_seconds.set((cpu - self._cpu_s) / self._status_every)
            self._cpu_s = cpu
            self._write_status(running=True)

    def _write_status(self, running: bool) -> None:
        """The status file; once stopped it lists no knobs in force (they were restored)."""
        interfaces = {}
        if self.applier is not None and running:
            now = time.monotonic()
            for name, m in sorted(self.applier.managed.items()):
                interfaces[name] = {
                    "site": str(m.site),
                    "driver": driver_of(name),
                    "knobs": {k: m.knob_values.get(k) for k in m.controlled},
                    "backed_off_s": max(0.0, round(m.backoff_until - now, 1)),
                    "note": m.last_reason,
                }
        status = {
            "pid": os.getpid(),
            "running": running,
            "dry_run": self.dry_run,
            "config": self.config_path,
            "policy": self.config.policy.name,
            "costs": self.config.cost_source,
            "host_profile": self.config.host_profile,
            "started_unix_s": self.started,
            "updated_unix_s": time.time(),
            "windows": self._windows,
            "restored": self.restored,
            "journal_entries": len(self.journal) if self.journal is not None else 0,
            "overruns": self._overruns,
            "interfaces": interfaces,
            "last_decisions": list(self.last_records),
        }
        try:
            atomic_write_json(Path(self.config.status_path), status, fsync=False)
        except OSError as exc:
            log.debug("status file %s: %s", self.config.status_path, exc)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _params_text(p: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items() if k not in ("timer", "napi_budget"))


def _applied_text(a: object) -> str:
    if a is None:
        return ""
    skipped = getattr(a, "skipped", "")
    changed = getattr(a, "changed", ())
    return skipped or (f"set {', '.join(changed)}" if changed else "unchanged")
