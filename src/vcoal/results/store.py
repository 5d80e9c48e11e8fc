"""A results directory: trial files, Parquet summary parts written in batches, DuckDB views.

Layout of ``RESULTS_DIR``::

    trials/<run_key>.json    one file per finished trial (status ok)       -- the source of truth
    failed/<run_key>.json    the latest failure of a trial that has not succeeded (yet)
    summary/trials-*.parquet one row per trial file: summary metrics + provenance
    summary/tenants-*.parquet one row per trial and tenant
    sweep.json               the expanded sweep that wrote the directory (informative)

Only the sweep driver writes (one writer; DuckDB file locks are avoided by reading Parquet).
Parquet parts are immutable and written to a temporary name then renamed; ``sync_summary``
(``vcoal.results.integrity``) adds rows for trial files that a killed driver wrote but never
summarised, checks every trial file against the size and CRC-32 its row recorded and rebuilds a
damaged summary from the trial files; ``compact`` merges the parts. The ``trials`` view keeps
the latest row per run key, so duplicates left by an interrupted compaction are harmless.

DuckDB reads the parts through pyarrow datasets (explicit file lists: a results path with glob
characters such as ``res[1]`` is a path, not a pattern); ``query`` then disables DuckDB's access
to files and extensions and locks its configuration, so user SQL only reads the views.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from vcoal.results.files import TrialDocument, load_trial, write_trial

TRIALS_DIR = "trials"
FAILED_DIR = "failed"
SUMMARY_DIR = "summary"

TRIAL_SCHEMA = pa.schema(
    [
        ("run_key", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("sweep", pa.string()),
        ("label", pa.string()),
        ("scenario", pa.string()),
        ("policy", pa.string()),
        ("policy_params", pa.string()),
        ("seed", pa.int64()),
        ("axes", pa.string()),
        ("spec_hash", pa.string()),
        ("duration_s", pa.float64()),
        ("measured_s", pa.float64()),
        ("tenants", pa.int64()),
        ("p99_us_max", pa.float64()),
        ("p99_us_mean", pa.float64()),
        ("slo_met", pa.bool_()),
        ("slo_tenants", pa.int64()),
        ("slo_tenants_met", pa.int64()),
        ("cpu_ns_per_packet", pa.float64()),
        ("irq_per_s", pa.float64()),
        ("throughput_pps", pa.float64()),
        ("throughput_bps", pa.float64()),
        ("delivered", pa.int64()),
        ("drops", pa.int64()),
        ("windows", pa.int64()),
        ("decisions", pa.int64()),
        ("wall_s", pa.float64()),
        ("host", pa.string()),
        ("package_version", pa.string()),
        ("git_commit", pa.string()),
        ("finished_at", pa.string()),
        ("file_bytes", pa.int64()),
        ("file_crc32", pa.int64()),
    ]
)

TENANT_SCHEMA = pa.schema(
    [
        ("run_key", pa.string()),
        ("finished_at", pa.string()),
        ("scenario", pa.string()),
        ("policy", pa.string()),
        ("seed", pa.int64()),
        ("tenant", pa.string()),
        ("kind", pa.string()),
        ("p50_us", pa.float64()),
        ("p99_us", pa.float64()),
        ("mean_us", pa.float64()),
        ("slo_p99_us", pa.float64()),
        ("slo_met", pa.bool_()),
        ("throughput_pps", pa.float64()),
        ("throughput_bps", pa.float64()),
        ("delivered", pa.int64()),
        ("drops", pa.int64()),
    ]
)


def trial_path(root: Path, run_key: str) -> Path:
    """Where the successful result of a run key lives."""
    return Path(root) / TRIALS_DIR / f"{run_key}.json"


def failed_path(root: Path, run_key: str) -> Path:
    """Where the latest failure of a run key lives."""
    return Path(root) / FAILED_DIR / f"{run_key}.json"


def done_keys(root: Path) -> set[str]:
    """Run keys that have a successful result file (skipped when a sweep resumes)."""
    d = Path(root) / TRIALS_DIR
    return {p.stem for p in d.glob("*.json")} if d.is_dir() else set()


def store_document(root: Path, doc: dict[str, Any]) -> tuple[Path, dict[str, int]]:
    """Write a trial document where it belongs; a success removes an older failure record.

    Returns the path and the file's ``file_facts`` (size, CRC-32) for its summary row.
    """
    key = doc["run_key"]
    if doc["status"] == "ok":
        path = trial_path(root, key)
        facts = write_trial(path, doc)
        failed_path(root, key).unlink(missing_ok=True)
    else:
        path = failed_path(root, key)
        facts = write_trial(path, doc)
    return path, facts


def document_paths(root: Path, include_failed: bool = True) -> list[Path]:
    """Trial files of a results directory: successes, then failures not superseded, by run key."""
    dirs = [TRIALS_DIR, FAILED_DIR] if include_failed else [TRIALS_DIR]
    ok = done_keys(root)
    return [
        path
        for name in dirs
        for path in sorted((Path(root) / name).glob("*.json"))
        if not (name == FAILED_DIR and path.stem in ok)
    ]


def iter_documents(root: Path, include_failed: bool = True) -> Iterator[TrialDocument]:
    """Every trial document (see ``document_paths``); an unreadable file raises ResultFormatError."""
    for path in document_paths(root, include_failed):
        yield load_trial(path)


# --- summary rows -------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def trial_row(doc: dict[str, Any], facts: dict[str, int] | None = None) -> dict[str, Any]:
    """The summary-table row of one trial document; ``facts`` are its file's size and CRC-32."""
    t, s, p = doc["trial"], doc.get("summary") or {}, doc.get("provenance") or {}
    err = doc.get("error") or {}
    return {
        "run_key": doc["run_key"],
        "status": doc["status"],
        "error": f"{err.get('type', 'Error')}: {err.get('message', '')}" if err else None,
        "sweep": t.get("sweep"),
        "label": t.get("label"),
        "scenario": t.get("scenario"),
        "policy": t.get("policy"),
        "policy_params": json.dumps(t.get("policy_params") or {}, sort_keys=True),
        "seed": t.get("seed"),
        "axes": json.dumps(t.get("axes") or {}, sort_keys=True),
        "spec_hash": doc.get("spec_hash"),
        "duration_s": _num(t.get("duration_s")),
        "measured_s": _num(s.get("measured_s")),
        "tenants": s.get("tenants"),
        "p99_us_max": _num(s.get("p99_us_max")),
        "p99_us_mean": _num(s.get("p99_us_mean")),
        "slo_met": s.get("slo_met"),
        "slo_tenants": s.get("slo_tenants"),
        "slo_tenants_met": s.get("slo_tenants_met"),
        "cpu_ns_per_packet": _num(s.get("cpu_ns_per_packet")),
        "irq_per_s": _num(s.get("irq_per_s")),
        "throughput_pps": _num(s.get("throughput_pps")),
        "throughput_bps": _num(s.get("throughput_bps")),
        "delivered": s.get("delivered"),
        "drops": s.get("drops"),
        "windows": s.get("windows"),
        "decisions": s.get("decisions"),
        "wall_s": _num(p.get("wall_s")),
        "host": (p.get("host") or {}).get("hostname"),
        "package_version": p.get("package_version"),
        "git_commit": p.get("git_commit"),
        "finished_at": p.get("finished_at"),
        "file_bytes": (facts or {}).get("file_bytes"),
        "file_crc32": (facts or {}).get("file_crc32"),
    }


def tenant_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per tenant of a successful trial document (none for failures)."""
    res = doc.get("result")
    if not res:
        return []
    t, p = doc["trial"], doc.get("provenance") or {}
    rows = []
    for ten in res["tenants"]:
        lat = (ten.get("rtt_us") or ten.get("latency_us")) or {}
        rows.append(
            {
                "run_key": doc["run_key"],
                "finished_at": p.get("finished_at"),
                "scenario": t.get("scenario"),
                "policy": t.get("policy"),
                "seed": t.get("seed"),
                "tenant": ten["name"],
                "kind": ten.get("kind"),
                "p50_us": _num(lat.get("p50")),
                "p99_us": _num(lat.get("p99")),
                "mean_us": _num(lat.get("mean")),
                "slo_p99_us": _num(ten.get("slo_p99_us")),
                "slo_met": ten.get("slo_met"),
                "throughput_pps": _num(ten.get("throughput_pps")),
                "throughput_bps": _num(ten.get("throughput_bps")),
                "delivered": ten.get("delivered"),
                "drops": ten.get("drops"),
            }
        )
    return rows


def _write_part(root: Path, table_name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> Path | None:
    if not rows:
        return None
    d = Path(root) / SUMMARY_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{table_name}-{time.time_ns():020d}-{os.getpid()}.parquet"
    tmp = d / f".{path.name}.tmp"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    os.replace(tmp, path)
    return path


class SummaryWriter:
    """Buffers summary rows on the driver and appends Parquet parts every N rows or T seconds."""

    def __init__(self, root: Path, batch_rows: int = 64, batch_s: float = 5.0) -> None:
        self.root = Path(root)
        self.batch_rows = batch_rows
        self.batch_s = batch_s
        self._trials: list[dict[str, Any]] = []
        self._tenants: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self.parts_written = 0

    def add(self, doc: dict[str, Any], facts: dict[str, int] | None = None) -> None:
        """Queue the rows of one stored document (``facts``: its file's size and CRC-32); flush
        when the batch is full or old."""
        self._trials.append(trial_row(doc, facts))
        self._tenants.extend(tenant_rows(doc))
        if len(self._trials) >= self.batch_rows or time.monotonic() - self._last_flush >= self.batch_s:
            self.flush()

    def flush(self) -> None:
        """Write queued rows (tenants first: a trial row never exists without its tenants)."""
        if not self._trials:
            return
        _write_part(self.root, "tenants", self._tenants, TENANT_SCHEMA)
        _write_part(self.root, "trials", self._trials, TRIAL_SCHEMA)
        self.parts_written += 1
        self._trials, self._tenants = [], []
        self._last_flush = time.monotonic()


# --- DuckDB -------------------------------------------------------------------------------------


SCHEMAS = {"trials": TRIAL_SCHEMA, "tenants": TENANT_SCHEMA}


def summary_parts(root: Path, name: str) -> list[Path]:
    """The Parquet parts of table ``name`` (``trials`` or ``tenants``), oldest first."""
    summary = Path(root) / SUMMARY_DIR
    return sorted(summary.glob(f"{name}-*.parquet")) if summary.is_dir() else []


def part_readable(path: Path) -> bool:
    """True when a Parquet part's footer and schema can be read (not truncated, not garbage)."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the readable Parquet parts of ``root``.

    Views: ``trials`` (latest row per run key), ``tenants`` (their tenants), ``trials_all`` and
    ``tenants_all`` (every row ever written, including superseded failures). Parts are passed as
    an explicit file list (no glob), columns missing from older parts read as NULL, and a part
    that cannot be read is left out (``vcoal.results.integrity.check_store`` rebuilds it).
    """
    con = duckdb.connect(":memory:")
    for name, schema in SCHEMAS.items():
        parts = [str(p) for p in summary_parts(root, name) if part_readable(p)]
        con.register(f"_{name}_parts", pads.dataset(parts, schema=schema, format="parquet"))
        con.execute(f"CREATE VIEW {name}_all AS SELECT * FROM _{name}_parts")
    con.execute(
        "CREATE VIEW trials AS SELECT * FROM trials_all "
        "QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY finished_at DESC, status = 'ok' DESC) = 1"
    )
    con.execute(
        "CREATE VIEW tenants AS SELECT n.* FROM (SELECT * FROM tenants_all QUALIFY row_number() "
        "OVER (PARTITION BY run_key, finished_at, tenant) = 1) n "
        "JOIN trials t ON n.run_key = t.run_key AND n.finished_at = t.finished_at"
    )
    return con


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No more file, network or extension access and no configuration change on ``con``: what it
    runs can read only the tables and views already defined (``COPY ... TO``, ``ATTACH``,
    ``read_text``, ``INSTALL`` are refused)."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def query(root: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL read-only against the views of ``root``; returns column names and rows.

    Raises
    ------
    ValueError
        The SQL holds no statement.
    duckdb.Error
        DuckDB refused or failed the query (including any attempt to reach files).
    """
    con = connect(root)
    try:
        lock_down(con)
        cur = con.execute(sql)
        if cur is None:  # only whitespace or comments
            raise ValueError("SQL: no statement; give a query such as 'SELECT * FROM trials'")
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def recorded_files(root: Path) -> dict[tuple[str, str], set[tuple[int | None, int | None]]]:
    """(run_key, status) -> the (file_bytes, file_crc32) pairs its summary rows recorded
    ((None, None) for rows written before files were checksummed)."""
    con = connect(root)
    try:
        rows = con.execute("SELECT DISTINCT run_key, status, file_bytes, file_crc32 FROM trials_all").fetchall()
    finally:
        con.close()
    out: dict[tuple[str, str], set[tuple[int | None, int | None]]] = {}
    for key, status, size, crc in rows:
        out.setdefault((key, status), set()).add((size, crc))
    return out


def compact(root: Path) -> None:
    """Merge the Parquet parts of each table into one file (latest row per run key)."""
    summary = Path(root) / SUMMARY_DIR
    for name in ("trials", "tenants"):
        parts = [p for p in summary_parts(root, name) if part_readable(p)]  # damaged ones: check_store
        if len(parts) <= 1:
            continue
        con = connect(root)
        try:
            out = summary / f"{name}-{time.time_ns():020d}-{os.getpid()}.parquet"
            tmp = summary / f".{out.name}.tmp"
            rel = name if name == "tenants" else "trials"
            table = con.sql(f"SELECT * FROM {rel}").to_arrow_table()
        finally:
            con.close()
        schema = TENANT_SCHEMA if name == "tenants" else TRIAL_SCHEMA
        pq.write_table(table.cast(schema), tmp)
        os.replace(tmp, out)
        for part in parts:
            part.unlink(missing_ok=True)


def read_sweep_meta(root: Path) -> dict[str, Any]:
    """The ``sweep.json`` the driver wrote, or an empty dict."""
    path = Path(root) / "sweep.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: not UTF-8, not JSON
        return {}


def is_results_dir(root: Path) -> bool:
    """True when ``root`` looks like a vcoal results directory."""
    root = Path(root)
    return any((root / d).is_dir() for d in (TRIALS_DIR, FAILED_DIR, SUMMARY_DIR))


def documents(paths: Iterable[Path]) -> list[TrialDocument]:
    """Load several trial files."""
    return [load_trial(p) for p in paths]
