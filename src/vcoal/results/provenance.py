"""Provenance of a trial: package version, git commit of the source tree, host facts."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import vcoal

_SRC_DIR = Path(vcoal.__file__).resolve().parent


def package_version() -> str:
    """The installed vcoal version (``0.0.0+source`` when running from an uninstalled tree)."""
    return vcoal.__version__


@functools.cache
def git_facts() -> dict[str, Any]:
    """Commit and dirty flag of the tree vcoal is imported from; nulls outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_SRC_DIR, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=_SRC_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(status.strip())}


@functools.cache
def host_facts() -> dict[str, Any]:
    """Facts about the machine a trial ran on (cached per process)."""
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        facts["numba"] = metadata.version("numba")
    except metadata.PackageNotFoundError:  # pragma: no cover
        facts["numba"] = None
    return facts


def now_iso() -> str:
    """UTC time stamp, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
