"""Restore a journal: every entry inside the network namespace it was recorded in.

Entries are grouped by namespace identity (``vcoal.linux.nsid``): the caller's own namespace is
reached directly, a namespace bound under /run/netns by its name. Entries of a namespace that no
longer exists are dropped with a warning (its virtual interfaces went with it); entries that could
not be restored (a namespace that exists but cannot be reached from here, a failed write) stay in
the journal, which is then kept, and ``RestoreIncomplete`` says which and what to do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vcoal.linux.journal import Journal, JournalEntry
from vcoal.linux.knobs import LinuxKnobs
from vcoal.linux.nsid import Gone, NetnsId, Unreachable, locate

log = logging.getLogger(__name__)


class RestoreIncomplete(RuntimeError):
    """Some journal entries could not be restored; they are kept in the journal (one-line message)."""


def restore_all(journal: Journal | str | os.PathLike[str]) -> int:
    """Restore every entry of ``journal`` (a Journal, or a path: then locked here) and return how
    many knobs were restored; raises RestoreIncomplete, keeping the journal, when entries remain."""
    if not isinstance(journal, Journal):
        journal = Journal(Path(journal))
        journal.acquire()
    groups: dict[NetnsId, list[JournalEntry]] = {}
    for e in journal.entries.values():
        groups.setdefault(NetnsId(e.netns, e.netns_inode), []).append(e)
    done, unreachable = 0, []
    for nsid, entries in sorted(groups.items(), key=lambda g: (g[0].name or "", g[0].inode)):
        try:
            where = locate(nsid)
        except Gone as exc:
            log.warning("restore: %s: dropping %d entr(ies) (%s)", exc, len(entries),
                        ", ".join(sorted({e.ifname for e in entries})))
            journal.forget([e.key for e in entries])
            continue
        except Unreachable as exc:
            unreachable.append(f"{len(entries)} knob(s): {exc}")
            continue
        k = LinuxKnobs(where, journal)
        try:
            done += k.restore()
        finally:
            k.close()
    left = len(journal)
    if left:
        why = "; ".join(unreachable) or "writes failed (see the log)"
        raise RestoreIncomplete(
            f"journal {journal.path}: restored {done} knob(s), kept {left} that could not be restored: {why}"
        )
    return done
