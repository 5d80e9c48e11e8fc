"""One versioned, self-describing JSON file per trial, with provenance.

Layout of format version 2 (``FORMAT_VERSION``)::

    {
      "format_version": 2,
      "kind": "vcoal.trial",
      "fields": [... the top-level keys below, in order ...],
      "run_key": "3f0c...",            # hash of the expanded trial spec + package version
      "status": "ok" | "failed",
      "trial": {"sweep", "label", "scenario", "policy", "policy_params", "seed", "duration_s", "axes"},
      "spec": {... the expanded scenario, canonical JSON ...},
      "spec_hash": "...",
      "provenance": {"package_version", "git_commit", "git_dirty", "host": {...}, "started_at",
                     "finished_at", "wall_s"},
      "summary": {"p99_us_max", "cpu_ns_per_packet", "irq_per_s", ...},   # flat numbers
      "result": {... TrialResult.to_dict() without windows and decisions ...} | null,
      "series": {"windows": [...], "decisions": [...]},
      "error": null | {"type", "message", "traceback"}
    }

Version 1 was the draft layout (``spec``, ``seed``, ``policy``, ``provenance`` and the whole
``result`` including windows at top level, no ``summary``); ``load_trial`` upgrades it. Files with
a newer version than this code knows are refused with a message saying which version to install.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcoal.model.result import TrialResult
from vcoal.results.outpath import refuse_non_regular

FORMAT_VERSION = 2
KIND = "vcoal.trial"
FIELDS = (
    "format_version",
    "kind",
    "fields",
    "run_key",
    "status",
    "trial",
    "spec",
    "spec_hash",
    "provenance",
    "summary",
    "result",
    "series",
    "error",
)


class ResultFormatError(ValueError):
    """A result file that cannot be read: corrupt, not a trial file, or from a newer vcoal."""


@dataclass(slots=True)
class TrialDocument:
    """A loaded trial file: the raw (upgraded) document and, when it succeeded, its TrialResult."""

    path: Path | None
    doc: dict[str, Any]

    @property
    def run_key(self) -> str:
        return self.doc["run_key"]

    @property
    def ok(self) -> bool:
        return self.doc["status"] == "ok"

    @property
    def trial(self) -> dict[str, Any]:
        return self.doc["trial"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.doc["summary"]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.doc["provenance"]

    @property
    def result(self) -> TrialResult | None:
        """The TrialResult with its windows and decisions, or None for a failed trial."""
        if self.doc.get("result") is None:
            return None
        series = self.doc.get("series") or {}
        data = {**self.doc["result"], "windows": series.get("windows", []), "decisions": series.get("decisions", [])}
        return TrialResult.from_dict(data)


def summarize(result: TrialResult) -> dict[str, Any]:
    """Flat summary metrics of one result (units in the names)."""
    p99s = [t.p99_us for t in result.tenants if not math.isnan(t.p99_us)]
    slo_tenants = [t for t in result.tenants if t.slo_met is not None]
    return {
        "tenants": len(result.tenants),
        "p99_us_max": max(p99s) if p99s else float("nan"),
        "p99_us_mean": sum(p99s) / len(p99s) if p99s else float("nan"),
        "slo_met": result.all_slos_met(),
        "slo_tenants": len(slo_tenants),
        "slo_tenants_met": sum(1 for t in slo_tenants if t.slo_met),
        "cpu_ns_per_packet": result.cpu_ns_per_packet(),
        "irq_per_s": result.irq_per_s(),
        "throughput_pps": sum(t.throughput_pps for t in result.tenants),
        "throughput_bps": sum(t.throughput_bps for t in result.tenants),
        "delivered": sum(t.delivered for t in result.tenants),
        "drops": sum(t.drops for t in result.tenants),
        "measured_s": result.measured_s,
        "windows": len(result.windows),
        "decisions": len(result.decisions),
    }


def make_document(
    *,
    run_key: str,
    trial: dict[str, Any],
    spec: dict[str, Any],
    spec_hash: str,
    provenance: dict[str, Any],
    result: TrialResult | dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a current-version trial document (``result`` for success, ``error`` for failure).

    ``result`` may be a TrialResult or its ``to_dict()`` form (what workers send back).
    """
    if (result is None) == (error is None):
        raise ValueError("make_document: give exactly one of result or error")
    body = series = None
    if result is not None:
        if isinstance(result, dict):
            body, result = dict(result), TrialResult.from_dict(result)
        else:
            body = result.to_dict()
        series = {"windows": body.pop("windows"), "decisions": body.pop("decisions")}
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "fields": list(FIELDS),
        "run_key": run_key,
        "status": "ok" if result is not None else "failed",
        "trial": trial,
        "spec": spec,
        "spec_hash": spec_hash,
        "provenance": provenance,
        "summary": summarize(result) if result is not None else {},
        "result": body,
        "series": series or {"windows": [], "decisions": []},
        "error": error,
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def dumps(doc: dict[str, Any]) -> str:
    """Serialise a document (NaN allowed, as Python's json writes it)."""
    return json.dumps(doc, default=_json_default, separators=(",", ":"))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename, so readers never see half a file.

    A symlink is followed (its target is replaced, the link stays); a target that exists and is not
    a regular file (a device node, a FIFO, ``/dev/stdout``) is refused with ``OutputPathError``.
    """
    path = refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_facts(data: bytes) -> dict[str, int]:
    """Size and CRC-32 of a trial file's bytes: recorded in its summary row, so a truncated or
    damaged file is found without parsing it (``vcoal.results.integrity``)."""
    return {"file_bytes": len(data), "file_crc32": zlib.crc32(data)}


def write_trial(path: Path, doc: dict[str, Any]) -> dict[str, int]:
    """Write one trial document atomically; returns its ``file_facts``."""
    text = dumps(doc)  # ASCII (json's default ensure_ascii): the bytes on disk are text.encode()
    write_atomic(path, text)
    return file_facts(text.encode())


def upgrade(doc: dict[str, Any], source: str = "result") -> dict[str, Any]:
    """Bring a document of any known version to ``FORMAT_VERSION``; refuse newer versions."""
    version = doc.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ResultFormatError(f"{source}: format_version {version!r}: expected an integer in [1, {FORMAT_VERSION}]")
    if version > FORMAT_VERSION:
        raise ResultFormatError(
            f"{source}: format_version {version} is newer than this vcoal reads (<= {FORMAT_VERSION}); "
            "upgrade vcoal to read it"
        )
    if version == 1:
        doc = _upgrade_1_to_2(doc)
    return doc


def _upgrade_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    """v1 (draft): flat seed/policy, the whole TrialResult under ``result``, no summary."""
    result = TrialResult.from_dict(old["result"]) if old.get("result") else None
    spec = old.get("spec", {})
    trial = {
        "sweep": old.get("sweep", ""),
        "label": old.get("label", spec.get("name", "")),
        "scenario": spec.get("name", ""),
        "policy": old.get("policy", result.policy if result else ""),
        "policy_params": old.get("policy_params", result.policy_params if result else {}),
        "seed": old.get("seed", result.seed if result else 0),
        "duration_s": result.duration_s if result else spec.get("duration_s"),
        "axes": {},
    }
    error = old.get("error")
    if result is None and error is None:
        error = {"type": "Unknown", "message": "v1 file without a result", "traceback": ""}
    if isinstance(error, str):
        error = {"type": "Error", "message": error, "traceback": ""}
    doc = make_document(
        run_key=old["run_key"],
        trial=trial,
        spec=spec,
        spec_hash=old.get("spec_hash", ""),
        provenance={**old.get("provenance", {}), "upgraded_from": 1},
        result=result,
        error=None if result is not None else error,
    )
    return doc


def decode_trial(data: bytes, source: str) -> dict[str, Any]:
    """Decode, check and upgrade the bytes of a trial file (ResultFormatError in one line)."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError:
        raise ResultFormatError(f"{source}: not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ResultFormatError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_trial(doc, source)


def load_trial(path: str | Path) -> TrialDocument:
    """Read, check and upgrade one trial file.

    Raises
    ------
    ResultFormatError
        One line naming the file and the problem (unreadable, not a trial, newer version).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultFormatError(f"{path}: cannot read: {exc.strerror}") from None
    return TrialDocument(path, decode_trial(data, str(path)))


def parse_trial(doc: Any, source: str = "result") -> dict[str, Any]:
    """Check and upgrade an already decoded document."""
    if not isinstance(doc, dict) or doc.get("kind", KIND) != KIND or "run_key" not in doc:
        raise ResultFormatError(f"{source}: not a vcoal trial result (kind {KIND!r} with a run_key)")
    return upgrade(doc, source)
