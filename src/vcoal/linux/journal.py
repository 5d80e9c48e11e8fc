"""A crash-safe journal of original knob values, written before the first change to any knob.

The file is JSON, replaced atomically (write a temporary file in the same directory, fsync it,
rename it over the journal, fsync the directory), so after a crash it holds either the old or the
new content, never a torn one. An entry is keyed by network namespace, interface and knob; the first
``record`` of a key wins (later calls never overwrite an original). ``vcoal.linux.knobs`` restores
from it; a journal left over by a killed agent is restored at the next start.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


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

    @property
    def key(self) -> str:
        return entry_key(self.netns, self.ifname, self.knob)


def entry_key(netns: str | None, ifname: str, knob: str) -> str:
    """The journal key of one knob."""
    return f"{netns or ''}|{ifname}|{knob}"


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
    """Original knob values on disk. Not thread-safe; one agent owns one journal file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[str, JournalEntry] = {}
        self.owner_pid: int | None = None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"journal {self.path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"journal {self.path}: unknown format (expected format_version {FORMAT_VERSION})")
        self.owner_pid = data.get("pid")
        for raw in data.get("entries", {}).values():
            entry = JournalEntry(**raw)
            self.entries[entry.key] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def record(self, entries: list[JournalEntry]) -> None:
        """Add originals that are not journaled yet and make them durable before returning."""
        new = [e for e in entries if e.key not in self.entries]
        if not new:
            return
        for e in new:
            self.entries[e.key] = e
        self._save()

    def forget(self, keys: list[str]) -> None:
        """Drop entries (restored, or now owned by an administrator)."""
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
