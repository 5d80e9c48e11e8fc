"""Coalescing knobs of one interface: read, journal, write, read back, restore.

API (every function and class takes an optional network namespace name, ``netns=None`` meaning the
caller's own namespace; sockets are opened inside that namespace, sysfs is reached through
``ip netns exec``):

- ``KNOBS``: the knob names, as ``vcoal.model.CoalesceParams`` names them:
  ``napi_defer_hard_irqs``, ``gro_flush_timeout_ns`` (NAPI deferral: netdev ``napi-set`` on every
  NAPI of the interface, sysfs ``/sys/class/net/IF/{napi_defer_hard_irqs,gro_flush_timeout}`` when
  the kernel lacks napi-set or the interface has no NAPI listed, e.g. a veth with GRO off), and
  ``rx_usecs``, ``rx_frames``, ``tx_usecs``, ``tx_frames`` (ethtool netlink coalescing; only the
  fields the driver reports are supported).
- ``LinuxKnobs(netns=None, journal=None, dry_run=False)``:
  ``read(ifname) -> dict[knob, int]`` (supported knobs only), ``supported(ifname)``,
  ``set(ifname, {knob: value}) -> dict`` (journals originals of the knobs it changes first,
  writes only what differs, reads back and returns what the kernel applied; ``dry_run`` writes
  nothing), ``restore(ifname=None)`` (journaled originals back, entries dropped), ``forget(ifname)``
  (drop entries without restoring), ``read_many({ifname: knobs})`` (one NAPI dump for all),
  ``prepare({ifname: knobs})`` (journal many originals in one durable write before a batch of
  ``set`` calls), ``close()``; also a context manager that restores on exit.
- ``read_knobs(ifname, netns=None)`` / ``apply_knobs(ifname, values, netns=None, journal_path=None)``:
  one-shot helpers for the testbed.
- ``restore_journal(path) -> int``: restore every entry of a journal, each inside the namespace
  it was recorded in (``vcoal.linux.restore``); the journal is deleted only when nothing is left.

Queues: a name ``IF:qN`` (``queue_unit(ifname, n)``; ``split_unit`` parses it) stands for queue N of
interface IF wherever an interface name is accepted. Its NAPI knobs go to the NAPIs that netdev
``queue-get`` lists for rx and tx queue N only (never sysfs, which is per device); a queue that
lists no NAPI raises ``KnobUnsupported``, except on veth: it names no NAPI in queue-get (Linux 6.18)
but has one per rx queue (GRO on), ids ascending in queue order, so rx queue i takes the i-th. Ethtool coalescing is per
device, so a queue supports only the NAPI knobs. ``queue_stats(ifname)`` reads netdev
``qstats-get`` (KnobUnsupported when the driver has no per-queue statistics).

Errors: ``InterfaceGone`` (the device vanished), ``KnobUnsupported`` (driver/kernel cannot),
``PermissionError`` (no CAP_NET_ADMIN).
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from vcoal.linux.journal import Journal, JournalEntry, entry_key
from vcoal.linux.names import ETHTOOL_KNOBS, KNOBS, NAPI_KNOBS, check_ifname, queue_unit, split_unit
from vcoal.linux.netlink import EthtoolCoalesce, KnobUnsupported, NapiInfo, Netdev
from vcoal.linux.nsid import NetnsId, netns_id

log = logging.getLogger(__name__)

_SYSFS_NAME = {"napi_defer_hard_irqs": "napi_defer_hard_irqs", "gro_flush_timeout_ns": "gro_flush_timeout"}
_NAPI_FIELD = {"napi_defer_hard_irqs": "defer_hard_irqs", "gro_flush_timeout_ns": "gro_flush_timeout_ns"}
_GONE = (errno.ENODEV, errno.ENXIO, errno.ENOENT)

__all__ = [
    "ETHTOOL_KNOBS",
    "KNOBS",
    "NAPI_KNOBS",
    "InterfaceGone",
    "KnobUnsupported",
    "LinuxKnobs",
    "apply_knobs",
    "queue_unit",
    "read_knobs",
    "restore_journal",
    "split_unit",
]


class InterfaceGone(OSError):
    """The interface does not exist (any more)."""


class _Sysfs:
    """sysfs NAPI knobs of one namespace (direct in the own namespace, else via ip netns exec)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    def _path(self, ifname: str, knob: str) -> str:
        return f"/sys/class/net/{ifname}/{_SYSFS_NAME[knob]}"

    def read(self, ifname: str, knob: str) -> int:
        path = self._path(ifname, knob)
        if self.netns is None:
            try:
                return int(Path(path).read_text())
            except FileNotFoundError:
                raise InterfaceGone(errno.ENODEV, f"{ifname}: no such interface") from None
        out = subprocess.run(["ip", "netns", "exec", self.netns, "cat", path], capture_output=True, text=True)
        if out.returncode:
            raise self._error(ifname, path, out.stderr)
        return int(out.stdout)

    def write(self, ifname: str, knob: str, value: int) -> None:
        path = self._path(ifname, knob)
        if self.netns is None:
            try:
                Path(path).write_text(f"{int(value)}\n")
            except FileNotFoundError:
                raise InterfaceGone(errno.ENODEV, f"{ifname}: no such interface") from None
            return
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "tee", path],
            input=f"{int(value)}\n", capture_output=True, text=True,
        )
        if out.returncode:
            raise self._error(ifname, path, out.stderr)

    def _error(self, ifname: str, path: str, stderr: str) -> OSError:
        """Only a missing file or namespace means the interface is gone; any other failure must
        not be mistaken for it (restore would then drop the journal entry)."""
        text = stderr.strip()
        if "Permission denied" in text:
            return PermissionError(errno.EACCES, f"{path}: permission denied (needs CAP_NET_ADMIN)")
        if "No such file" in text or "Cannot open network namespace" in text:
            return InterfaceGone(errno.ENODEV, f"{ifname} in {self.netns}: {text}")
        return OSError(errno.EIO, f"{path} in {self.netns}: {text or 'failed'}")


class LinuxKnobs:
    """Journaled read/write of the coalescing knobs of interfaces in one network namespace."""

    def __init__(self, netns: str | None = None, journal: Journal | None = None, dry_run: bool = False) -> None:
        self.netns = netns
        self.journal = journal
        self.nsid = netns_id(netns) if journal is not None else NetnsId(netns, 0)  # as journaled
        self.dry_run = dry_run
        self._sysfs = _Sysfs(netns)
        self._ethtool: EthtoolCoalesce | None = None
        self._netdev: Netdev | None = None
        self._netdev_missing = False
        self._ipr = None
        self._supported: dict[str, frozenset[str]] = {}
        self._kinds: dict[int, str] = {}
        self._no_ethtool: set[str] = set()  # devices without ethtool coalescing (veth, bridge...)
        self.writes = 0

    # --- sockets --------------------------------------------------------------------------
    def _eth(self) -> EthtoolCoalesce:
        if self._ethtool is None:
            self._ethtool = EthtoolCoalesce(self.netns)
        return self._ethtool

    def _nd(self) -> Netdev | None:
        if self._netdev is None and not self._netdev_missing:
            try:
                self._netdev = Netdev(self.netns)
            except KnobUnsupported:
                log.info("netdev netlink family not available: NAPI knobs through sysfs")
                self._netdev_missing = True
        return self._netdev

    def ifindex(self, ifname: str) -> int:
        """Interface index (of a queue's interface); raises InterfaceGone."""
        check_ifname(ifname)
        ifname = split_unit(ifname)[0]
        if self.netns is None:
            try:
                return socket.if_nametoindex(ifname)
            except OSError:
                raise InterfaceGone(errno.ENODEV, f"{ifname}: no such interface") from None
        found = self._iproute().link_lookup(ifname=ifname)
        if not found:
            raise InterfaceGone(errno.ENODEV, f"{ifname} in {self.netns}: no such interface")
        return int(found[0])

    def _iproute(self):
        """The rtnetlink socket of this namespace, opened on first use."""
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        return self._ipr

    def napis(self, ifname: str) -> list[NapiInfo]:
        """The NAPI instances of an interface, or of a queue ``IF:qN`` (empty without netdev netlink;
        a queue without a NAPI of its own raises KnobUnsupported)."""
        nd = self._nd()
        queue = split_unit(ifname)[1]
        if nd is None:
            if queue is not None:
                raise KnobUnsupported(errno.EOPNOTSUPP, f"{ifname}: per-queue NAPI knobs need netdev netlink")
            return []
        ifindex = self.ifindex(ifname)
        napis = [n for n in nd.napi_get(ifindex) if n.ifindex]
        if queue is None:
            return napis
        ids = self._queue_napi_ids(nd, ifname, ifindex, queue)
        return [n for n in napis if n.id in ids]

    def _queue_napi_ids(self, nd: Netdev, unit: str, ifindex: int, queue: int, listed: list | None = None) -> set[int]:
        """The NAPI ids serving ``queue`` (``listed``: the interface's queue-get, if already read)."""
        listed = nd.queue_get(ifindex) if listed is None else listed
        queues = [q for q in listed if q.id == queue]
        if not queues:
            raise KnobUnsupported(errno.ENOENT, f"{unit}: the interface has no queue {queue}")
        ids = {q.napi_id for q in queues if q.napi_id}
        if not ids and not any(q.napi_id for q in listed) and self._kind(ifindex) == "veth":
            # veth names no NAPI in queue-get, but creates one per rx queue in queue order (ids
            # ascending), and rx queue i is served by the i-th (checked with threaded NAPI + XPS)
            napis = sorted(n.id for n in nd.napi_get(ifindex) if n.ifindex)
            if len(napis) == sum(q.type == "rx" for q in listed) and any(q.type == "rx" for q in queues):
                ids = {napis[queue]}
        if not ids:
            raise KnobUnsupported(
                errno.EOPNOTSUPP, f"{unit}: queue {queue} is served by no NAPI of its own (queue-get lists no napi-id)"
            )
        return ids

    def _kind(self, ifindex: int) -> str:
        """The link kind (``veth``...) of an interface, "" for devices without one; cached."""
        if ifindex not in self._kinds:
            kind = ""
            for link in self._iproute().get_links(ifindex):
                info = link.get_attr("IFLA_LINKINFO")
                kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
            self._kinds[ifindex] = str(kind)
        return self._kinds[ifindex]

    def queue_stats(self, ifname: str) -> dict[tuple[str, int], tuple[int, int]]:
        """Per-queue counters {("rx"|"tx", queue): (packets, bytes)} from netdev qstats-get."""
        nd = self._nd()
        if nd is None:
            raise KnobUnsupported(errno.EOPNOTSUPP, f"{ifname}: per-queue statistics need netdev netlink")
        return {(q.type, q.id): (q.packets or 0, q.bytes or 0) for q in nd.qstats_get(self.ifindex(ifname))}

    # --- reading --------------------------------------------------------------------------
    def _read_ethtool(self, ifname: str) -> dict[str, int]:
        if ifname in self._no_ethtool or split_unit(ifname)[1] is not None:
            return {}
        try:
            reply = self._eth().get(ifname)
        except KnobUnsupported:
            self._no_ethtool.add(ifname)
            return {}
        except OSError as exc:
            if exc.errno in _GONE:
                raise InterfaceGone(exc.errno, f"{ifname}: no such interface") from None
            raise
        return reply.params

    def _read_napi(self, ifname: str) -> tuple[dict[str, int], dict[str, dict[str, int]], str]:
        napis = self.napis(ifname)
        if napis or split_unit(ifname)[1] is not None:
            if not napis:
                raise KnobUnsupported(errno.EOPNOTSUPP, f"{ifname}: the queue's NAPI is not listed")
            per = {k: {str(n.id): int(getattr(n, _NAPI_FIELD[k]) or 0) for n in napis} for k in NAPI_KNOBS}
            return {k: next(iter(per[k].values())) for k in NAPI_KNOBS}, per, "netlink"
        return {k: self._sysfs.read(ifname, k) for k in NAPI_KNOBS}, {}, "sysfs"

    def read(self, ifname: str, knobs: tuple[str, ...] | None = None) -> dict[str, int]:
        """Current values of the supported knobs (all, or those among ``knobs``; NAPI: first NAPI's)."""
        check_ifname(ifname)
        out: dict[str, int] = {}
        if knobs is None or any(k in ETHTOOL_KNOBS for k in knobs) or ifname not in self._supported:
            eth = self._read_ethtool(ifname)
            self._supported[ifname] = frozenset(eth) | frozenset(NAPI_KNOBS)
            out.update(eth)
        if knobs is None or any(k in NAPI_KNOBS for k in knobs):
            napi, _, _ = self._read_napi(ifname)
            out.update(napi)
        else:
            self.ifindex(ifname)  # raises InterfaceGone
        return out if knobs is None else {k: v for k, v in out.items() if k in knobs}

    def supported(self, ifname: str) -> frozenset[str]:
        """The knobs this interface supports (NAPI knobs always; ethtool fields the driver reports)."""
        if ifname not in self._supported:
            self.read(ifname)
        return self._supported[ifname]

    def read_many(self, knobs: dict[str, tuple[str, ...]]) -> dict[str, dict[str, int]]:
        """``read`` for many interfaces ({ifname: knobs}), with one NAPI dump for all of them.

        Interfaces that vanished are left out of the result.
        """
        nd = self._nd() if any(k in NAPI_KNOBS for ks in knobs.values() for k in ks) else None
        by_index: dict[int, list[NapiInfo]] = {}
        if nd is not None:
            for n in nd.napi_get():
                by_index.setdefault(n.ifindex, []).append(n)
        out: dict[str, dict[str, int]] = {}
        queue_lists: dict[int, list] = {}  # one queue-get per interface, however many of its queues
        for ifname, wanted in knobs.items():
            try:
                values: dict[str, int] = {}
                if any(k in ETHTOOL_KNOBS for k in wanted):
                    values.update(self._read_ethtool(ifname))
                index = self.ifindex(ifname)
                napis = by_index.get(index, []) if nd is not None else []
                queue = split_unit(ifname)[1]
                if queue is not None:
                    ids = set()
                    if nd is not None:
                        if index not in queue_lists:
                            queue_lists[index] = nd.queue_get(index)
                        ids = self._queue_napi_ids(nd, ifname, index, queue, queue_lists[index])
                    napis = [n for n in napis if n.id in ids]
                    if not napis:
                        continue  # the queue (or its NAPI) is gone
                for k in wanted:
                    if k in NAPI_KNOBS:
                        values[k] = (
                            int(getattr(napis[0], _NAPI_FIELD[k]) or 0) if napis else self._sysfs.read(ifname, k)
                        )
            except (InterfaceGone, KnobUnsupported):
                continue
            out[ifname] = {k: v for k, v in values.items() if k in wanted}
        return out

    def prepare(self, plan: dict[str, tuple[str, ...]]) -> None:
        """Journal the originals of the knobs about to change on many interfaces in one durable write."""
        if self.journal is None or self.dry_run:
            return
        entries = []
        for ifname, knobs in plan.items():
            todo = [k for k in knobs if self._key(ifname, k) not in self.journal]
            if not todo:
                continue
            try:
                eth = self._read_ethtool(ifname) if any(k in ETHTOOL_KNOBS for k in todo) else {}
                napi, per_napi, backend = (
                    self._read_napi(ifname) if any(k in NAPI_KNOBS for k in todo) else ({}, {}, "none")
                )
            except (InterfaceGone, KnobUnsupported):
                continue  # set() reports it for this site; the loop goes on
            now = {**napi, **eth}
            entries += [self._entry(ifname, k, backend, now[k], per_napi) for k in todo if k in now]
        self.journal.record(entries)

    def _key(self, ifname: str, knob: str) -> str:
        return entry_key(self.nsid.name, ifname, knob, self.nsid.inode)

    def _entry(self, ifname: str, k: str, backend: str, original: int, per_napi: dict) -> JournalEntry:
        napi = k in NAPI_KNOBS
        return JournalEntry(self.nsid.name, ifname, k, backend if napi else "ethtool", original,
                            per_napi.get(k, {}) if napi else {}, self.nsid.inode)

    # --- writing --------------------------------------------------------------------------
    def set(self, ifname: str, values: dict[str, int]) -> dict[str, int]:
        """Journal originals, write the knobs that differ, read back; returns the values in force."""
        check_ifname(ifname)
        unknown = sorted(set(values) - set(KNOBS))
        if unknown:
            raise ValueError(f"knob {unknown[0]!r}: unknown; accepted: {', '.join(KNOBS)}")
        eth_now = self._read_ethtool(ifname) if any(k in ETHTOOL_KNOBS for k in values) else {}
        if any(k in NAPI_KNOBS for k in values):
            napi_now, per_napi, backend = self._read_napi(ifname)
        else:
            napi_now, per_napi, backend = {}, {}, "none"
        now = {**napi_now, **eth_now}
        for k in values:
            if k in ETHTOOL_KNOBS and k not in eth_now:
                raise KnobUnsupported(errno.EOPNOTSUPP, f"{ifname}: {k} not supported by the driver")
        napi_uniform = all(len(set(per_napi.get(k, {}).values())) <= 1 for k in NAPI_KNOBS)
        changes = {
            k: int(v) for k, v in values.items()
            if now[k] != int(v) or (k in NAPI_KNOBS and not napi_uniform)
        }
        if not changes:
            return {k: now[k] for k in values}
        if self.dry_run:
            log.info("dry run: would set %s %s", ifname, changes)
            return {**{k: now[k] for k in values}, **changes}
        if self.journal is not None:
            self.journal.record([self._entry(ifname, k, backend, now[k], per_napi) for k in changes])
        self._write(ifname, changes, backend, per_napi)
        after = self.read(ifname, tuple(values))
        return {k: after[k] for k in values}

    def _write(
        self, ifname: str, changes: dict[str, int], backend: str, per_napi: dict[str, dict[str, int]]
    ) -> None:
        eth = {k: v for k, v in changes.items() if k in ETHTOOL_KNOBS}
        napi = {k: v for k, v in changes.items() if k in NAPI_KNOBS}
        try:
            if eth:
                self._eth().set(ifname, eth)
                self.writes += 1
            if napi and backend == "netlink":
                nd = self._nd()
                assert nd is not None
                ids = sorted({int(i) for k in NAPI_KNOBS for i in per_napi.get(k, {})})
                for napi_id in ids:
                    nd.napi_set(
                        napi_id,
                        defer_hard_irqs=napi.get("napi_defer_hard_irqs"),
                        gro_flush_timeout_ns=napi.get("gro_flush_timeout_ns"),
                    )
                    self.writes += 1
            elif napi:
                for k, v in napi.items():
                    self._sysfs.write(ifname, k, v)
                    self.writes += 1
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise PermissionError(exc.errno, f"{ifname}: {exc.strerror or exc} (needs CAP_NET_ADMIN)") from None
            if exc.errno in _GONE:
                raise InterfaceGone(exc.errno, f"{ifname}: vanished while being set") from None
            raise

    # --- restoring ------------------------------------------------------------------------
    def restore(self, ifname: str | None = None) -> int:
        """Write back the journaled originals (of one interface, or all of this namespace)."""
        if self.journal is None:
            return 0
        entries = [
            e for e in self.journal.entries.values()
            if (e.netns_inode == self.nsid.inode if e.netns_inode else e.netns == self.netns)
            and (ifname is None or e.ifname == ifname)
        ]
        done = 0
        for e in entries:
            try:
                self._restore_entry(e)
                done += 1
            except InterfaceGone:
                log.info("restore %s %s: interface gone, nothing to restore", e.ifname, e.knob)
            except OSError as exc:
                log.error("restore %s %s=%s failed: %s", e.ifname, e.knob, e.original, exc)
                continue
            self.journal.forget([e.key])
        return done

    def _restore_entry(self, e: JournalEntry) -> None:
        if e.knob in ETHTOOL_KNOBS:
            self._write(e.ifname, {e.knob: e.original}, "ethtool", {})
        elif e.backend == "netlink":
            try:
                current = {str(n.id) for n in self.napis(e.ifname)}
            except KnobUnsupported:  # the queue lost its NAPI: the journaled one is gone with it
                current = set()
            for napi_id, value in e.per_napi.items():
                if napi_id in current:  # a recreated NAPI already took the (untouched) sysfs value
                    self._write(e.ifname, {e.knob: value}, "netlink", {e.knob: {napi_id: value}})
        else:
            self._sysfs.write(e.ifname, e.knob, e.original)
        log.info("restored %s %s=%s", e.ifname, e.knob, e.original)

    def forget(self, ifname: str, knobs: tuple[str, ...] | None = None) -> None:
        """Drop journal entries without restoring: every knob of a vanished interface, or only
        ``knobs`` (those an administrator changed; the others are still restored on exit)."""
        if knobs is None:
            self._no_ethtool.discard(ifname)
            self._supported.pop(ifname, None)
        if self.journal is not None:
            self.journal.forget([self._key(ifname, k) for k in (KNOBS if knobs is None else knobs)])

    def close(self) -> None:
        """Close the netlink sockets."""
        for s in (self._ethtool, self._netdev, self._ipr):
            if s is not None:
                s.close()
        self._ethtool = self._netdev = self._ipr = None

    def __enter__(self) -> LinuxKnobs:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.restore()
        finally:
            self.close()


def read_knobs(ifname: str, netns: str | None = None) -> dict[str, int]:
    """The current values of every supported knob of one interface."""
    with LinuxKnobs(netns) as k:
        return k.read(ifname)


def apply_knobs(
    ifname: str, values: dict[str, int], netns: str | None = None, journal_path: str | None = None
) -> dict[str, int]:
    """Set knobs (journaled when ``journal_path`` is given, so ``restore_journal`` undoes them)."""
    k = LinuxKnobs(netns, Journal(journal_path) if journal_path else None)
    try:
        return k.set(ifname, values)
    finally:
        k.close()


def restore_journal(path: str | Path | Journal) -> int:
    """Restore every knob recorded in a journal, each in its own namespace; returns how many
    (``vcoal.linux.restore.restore_all``: raises RestoreIncomplete when entries had to stay)."""
    from vcoal.linux.restore import restore_all

    return restore_all(path)
