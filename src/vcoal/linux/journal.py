"""A crash-safe journal of original knob values, written before the first change to any knob.

The file is JSON, replaced atomically (write a temporary file in the same directory, fsync it,
rename it over the journal, fsync the directory), so after a crash it holds either the old or the
new content, never a torn one. An entry is keyed by network namespace (its nsfs inode, and its
``ip netns`` name when one binds it), interface and knob; the first ``record`` of a key wins (later
calls never overwrite an original). ``vcoal.linux.restore`` restores from it; a journal left over
by a killed agent is restored at the next start.

One journal, one owner: before its first write a ``Journal`` takes an exclusive ``flock`` on
``PATH.lock`` (which holds the owner's PID) and keeps it until ``release`` or exit; a second owner
gets ``JournalBusy`` naming the first one's PID. The journal's directory is created mode 0700.
Entries are validated on load (interface and namespace names, known knobs, values in range): a
tampered file raises ``JournalError`` with one line and is never followed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcoal.linux.names import IFNAME_RULE, KNOBS, NETNS_RULE, valid_ifname, valid_netns_name
from vcoal.model.params import PARAM_RANGES

FORMAT_VERSION = 2  # 2: entries carry netns_inode; format 1 is still read (inode 0: unknown)
READABLE_VERSIONS = (1, 2)
BACKENDS = ("netlink", "sysfs", "ethtool", "none")
DIR_MODE = 0o700
LOCK_SUFFIX = ".lock"


class JournalError(ValueError):
    """A journal that cannot be read or was tampered with; the message is one line."""


class JournalBusy(OSError):
    """Another process owns the journal (holds its lock)."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The original value of one knob of one interface.

    ``per_napi`` holds original values per NAPI id when the knob was set per NAPI over netlink.
    """

    netns: str | None
    ifname: str
    knob: str
    backend: str
    original: int
    per_napi: dict[str, int] = field(default_factory=dict)
    netns_inode: int = 0  # 0: unknown (format 1): ``netns`` None then means the restorer's own

    @property
    def key(self) -> str:
        return entry_key(self.netns, self.ifname, self.knob, self.netns_inode)


def entry_key(netns: str | None, ifname: str, knob: str, netns_inode: int = 0) -> str:
    """The journal key of one knob (a namespace is keyed by its inode when known, else its name)."""
    return f"{netns_inode or netns or ''}|{ifname}|{knob}"


def validate_entry(raw: object, where: str) -> JournalEntry:
    """A JournalEntry from its JSON, or JournalError naming ``where`` (``FILE: entries.KEY``),
    the field and what is accepted."""
    fields = set(JournalEntry.__dataclass_fields__)
    if not isinstance(raw, dict) or not {"netns", "ifname", "knob", "backend", "original"} <= set(raw) <= fields:
        raise JournalError(f"{where}: not an entry (fields {', '.join(sorted(fields))})")
    bad = _entry_problem(raw)
    if bad:
        raise JournalError(f"{where}.{bad}; refusing a journal that was not written by vcoal")
    return JournalEntry(**raw)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _entry_problem(raw: dict) -> str:
    """The first problem of an entry as ``FIELD: VALUE: accepted``, or ""."""
    ns, knob = raw["netns"], raw["knob"]
    if ns is not None and not valid_netns_name(ns):
        return f"netns: {ns!r}: not a namespace name ({NETNS_RULE})"
    if not valid_ifname(raw["ifname"]):
        return f"ifname: {raw['ifname']!r}: not an interface name ({IFNAME_RULE})"
    if knob not in KNOBS:
        return f"knob: {knob!r}: accepted {', '.join(KNOBS)}"
    if raw["backend"] not in BACKENDS:
        return f"backend: {raw['backend']!r}: accepted {', '.join(BACKENDS)}"
    lo, hi = PARAM_RANGES[knob]
    napi = raw.get("per_napi", {})
    values = [raw["original"], *(napi.values() if isinstance(napi, dict) else [None])]
    if not all(_is_int(v) and lo <= v <= hi for v in values):
        return f"original/per_napi: {knob} values must be integers in [{lo}, {hi}] (got {values})"
    if not all(isinstance(k, str) and k.isdigit() for k in napi):
        return f"per_napi: NAPI ids must be decimal numbers (got {sorted(napi)})"
    inode = raw.get("netns_inode", 0)
    if not (_is_int(inode) and inode >= 0):
        return f"netns_inode: must be a non-negative integer (got {inode!r})"
    return ""


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (whatever the umask)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(p, DIR_MODE)


def atomic_write_json(path: Path, data: Any, fsync: bool = True) -> None:
    """Replace ``path`` with the JSON of ``data`` atomically (optionally durably)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class Journal:
    """Original knob values on disk. Not thread-safe; one process owns one journal file (a lock)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self.entries: dict[str, JournalEntry] = {}
        self.owner_pid: int | None = None
        self._lock_fd: int | None = None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(f"journal {self.path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("format_version") not in READABLE_VERSIONS:
            raise JournalError(
                f"journal {self.path}: unknown format (expected format_version {FORMAT_VERSION})"
            )
        entries = data.get("entries", {})
        if not isinstance(entries, dict):
            raise JournalError(f"journal {self.path}: entries: not a mapping")
        pid = data.get("pid")
        self.owner_pid = pid if _is_int(pid) and pid > 0 else None
        loaded = {}
        for key, raw in entries.items():
            entry = validate_entry(raw, f"journal {self.path}: entries.{key}")
            loaded[entry.key] = entry
        self.entries = loaded

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    @property
    def locked(self) -> bool:
        """True while this object holds the journal's lock."""
        return self._lock_fd is not None

    def acquire(self) -> None:
        """Take the journal's lock (creating its directory 0700) and re-read the journal under it.

        Raises ``JournalBusy`` naming the owner's PID when another process holds it, OSError when
        the directory or lock file cannot be created, JournalError for a bad journal.
        """
        if self._lock_fd is not None:
            return
        make_private_dir(self.path.parent)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalBusy(
                errno.EWOULDBLOCK,
                f"journal {self.path} is in use by agent pid {owner} (lock {self.lock_path}); "
                "stop it first, or give each agent its own journal_path",
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.entries, self.owner_pid = {}, None
            if self.path.exists():
                self._load()
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        """Give up the lock (the lock file stays: removing it would race with a new owner)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def record(self, entries: list[JournalEntry]) -> None:
        """Add originals that are not journaled yet and make them durable before returning."""
        new = [e for e in entries if e.key not in self.entries]
        if not new:
            return
        self.acquire()
        new = [e for e in entries if e.key not in self.entries]  # (re-read under the lock)
        for e in new:
            self.entries[e.key] = e
        self._save()

    def forget(self, keys: list[str]) -> None:
        """Drop entries (restored, or now owned by an administrator)."""
        if not any(key in self.entries for key in keys):
            return
        self.acquire()
        changed = False
        for key in keys:
            changed |= self.entries.pop(key, None) is not None
        if changed:
            self._save()

    def _save(self) -> None:
        if not self.entries:
            self.path.unlink(missing_ok=True)
            return
        data = {
            "format_version": FORMAT_VERSION,
            "pid": os.getpid(),
            "entries": {k: asdict(e) for k, e in sorted(self.entries.items())},
        }
        atomic_write_json(self.path, data)
