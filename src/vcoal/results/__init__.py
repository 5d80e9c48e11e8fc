"""Result files and tables: one versioned JSON file per trial, Parquet summaries, DuckDB queries.

See ``vcoal.results.files`` for the file format and ``vcoal.results.store`` for the directory
layout. Reports read only what is stored here; nothing in this package runs a trial.
"""

from vcoal.results.files import (
    FORMAT_VERSION,
    ResultFormatError,
    TrialDocument,
    load_trial,
    make_document,
    parse_trial,
    summarize,
    upgrade,
    write_trial,
)
from vcoal.results.integrity import StoreCheck, check_store, sync_summary
from vcoal.results.provenance import git_facts, host_facts, now_iso, package_version
from vcoal.results.store import (
    SummaryWriter,
    compact,
    connect,
    done_keys,
    is_results_dir,
    iter_documents,
    query,
    read_sweep_meta,
    store_document,
)

__all__ = [
    "FORMAT_VERSION",
    "ResultFormatError",
    "StoreCheck",
    "SummaryWriter",
    "TrialDocument",
    "check_store",
    "compact",
    "connect",
    "done_keys",
    "git_facts",
    "host_facts",
    "is_results_dir",
    "iter_documents",
    "load_trial",
    "make_document",
    "now_iso",
    "package_version",
    "parse_trial",
    "query",
    "read_sweep_meta",
    "store_document",
    "summarize",
    "sync_summary",
    "upgrade",
    "write_trial",
]
