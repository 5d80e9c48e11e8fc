"""Integrity of a results directory: damaged trial files found, damaged summary parts rebuilt.

Trial files are the source of truth; the Parquet summary is derived from them. ``check_store``
(run by every sweep before it resumes, and by ``vcoal results`` and ``vcoal report``):

* reads the footer of every summary part; when one is damaged it is moved to
  ``summary/damaged/`` and the summary is rebuilt from the trial files;
* checks every trial file against the size and CRC-32 its summary row recorded (a file without a
  row, or with a row from before checksums, is parsed instead) and adds rows for readable files
  that have none (a driver killed between file and batch);
* returns what it found, so callers can say so: a damaged file in ``trials/`` is not counted as
  done and a resumed sweep runs that trial again (its new file replaces the damaged one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vcoal.results.files import ResultFormatError, decode_trial, file_facts
from vcoal.results.store import (
    FAILED_DIR,
    SCHEMAS,
    SUMMARY_DIR,
    TRIALS_DIR,
    SummaryWriter,
    done_keys,
    part_readable,
    recorded_files,
    summary_parts,
)

DAMAGED_DIR = "damaged"
"""Under ``summary/``: damaged Parquet parts, moved aside (never deleted) before a rebuild."""
MAX_LISTED = 10
"""How many damaged files ``StoreCheck.warnings`` names one by one."""


@dataclass(slots=True)
class StoreCheck:
    """What ``check_store`` found and did."""

    root: Path
    damaged_parts: list[str] = field(default_factory=list)
    rebuilt: bool = False
    damaged_files: dict[Path, str] = field(default_factory=dict)
    added: int = 0
    read_only: bool = False

    def damaged_keys(self) -> set[str]:
        """Run keys whose successful-result file is damaged (they count as not done)."""
        return {p.stem for p in self.damaged_files if p.parent.name == TRIALS_DIR}

    def warnings(self) -> list[str]:
        """One line per finding, for the terminal."""
        out = []
        if self.damaged_parts:
            what = "rebuilt from the trial files" if self.rebuilt else "left out (read-only directory)"
            out.append(f"{self.root}: {len(self.damaged_parts)} damaged summary part(s) "
                       f"({', '.join(self.damaged_parts[:3])}): {what}")
        for path, why in list(self.damaged_files.items())[:MAX_LISTED]:
            out.append(f"{path}: damaged ({why}); a rerun of the sweep runs this trial again")
        if len(self.damaged_files) > MAX_LISTED:
            out.append(f"{self.root}: ... and {len(self.damaged_files) - MAX_LISTED} more damaged trial files")
        return out


def _rebuild(root: Path, damaged: list[Path]) -> None:
    """Move damaged parts aside and drop the rest (derived data), so every row is re-added."""
    aside = Path(root) / SUMMARY_DIR / DAMAGED_DIR
    aside.mkdir(exist_ok=True)
    for part in damaged:
        os.replace(part, aside / part.name)
    for name in SCHEMAS:
        for part in summary_parts(root, name):
            part.unlink()


def check_store(root: str | Path, repair: bool = True) -> StoreCheck:
    """Check a results directory (see the module docstring); ``repair`` rebuilds and adds rows.

    A directory that cannot be written is checked without repair (``read_only`` set).
    """
    root = Path(root)
    check = StoreCheck(root)
    damaged = [p for name in SCHEMAS for p in summary_parts(root, name) if not part_readable(p)]
    check.damaged_parts = [p.name for p in damaged]
    if damaged and repair:
        try:
            _rebuild(root, damaged)
            check.rebuilt = True
        except OSError:
            check.read_only = True
    recorded = recorded_files(root)
    writer = SummaryWriter(root, batch_rows=10_000, batch_s=1e9)
    ok_keys = done_keys(root)
    for name, status in ((TRIALS_DIR, "ok"), (FAILED_DIR, "failed")):
        for path in sorted((root / name).glob("*.json")):
            if status == "failed" and path.stem in ok_keys:
                continue  # superseded by a success
            _check_file(path, status, recorded.get((path.stem, status)), check, writer)
    if repair and not check.read_only:
        try:
            writer.flush()
        except OSError:
            check.read_only = True
            check.added = 0
    return check


def _check_file(path: Path, status: str, recorded: set | None, check: StoreCheck, writer: SummaryWriter) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        check.damaged_files[path] = f"cannot read: {exc.strerror}"
        return
    facts = file_facts(data)
    if recorded and (facts["file_bytes"], facts["file_crc32"]) in recorded:
        return
    sizes = sorted(size for size, _ in recorded or () if size is not None)
    if sizes:
        why = (f"{len(data)} bytes, the summary recorded {sizes[-1]}" if len(data) not in sizes
               else "checksum differs from the one the summary recorded")
        check.damaged_files[path] = why
        return
    try:  # no row, or a row from before checksums: parse the file
        doc = decode_trial(data, str(path))
    except ResultFormatError as exc:
        check.damaged_files[path] = str(exc).removeprefix(f"{path}: ")
        return
    if doc["run_key"] != path.stem or doc["status"] != status:
        check.damaged_files[path] = f"holds run key {doc['run_key']} ({doc['status']}), not its name's"
        return
    if recorded is None:
        writer.add(doc, facts)
        check.added += 1


def sync_summary(root: str | Path) -> int:
    """Add summary rows for trial files that have none and rebuild a damaged summary; returns
    the number of rows added (``check_store`` says what else it found)."""
    return check_store(root).added
