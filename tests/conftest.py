"""Shared fixtures, and the one place where tests that need root or a system tool are skipped.

``@pytest.mark.root("sockperf", ...)`` marks a test that needs root (network namespaces) and the
named tools; ``@pytest.mark.tools("chromium")`` one that needs only tools. Without them the test
is skipped with a reason naming what is missing and the Debian package that brings it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

#: tool -> (names to look for on PATH, Debian package)
TOOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "sockperf": (("sockperf",), "sockperf"),
    "iperf3": (("iperf3",), "iperf3"),
    "ethtool": (("ethtool",), "ethtool"),
    "ip": (("ip",), "iproute2"),
    "chromium": (("chromium", "chromium-browser", "google-chrome"), "chromium"),
}


def tool_path(tool: str) -> str | None:
    """Where ``tool`` is installed (PATH, or /usr/bin for root's restricted PATH), None when it is not."""
    names, _package = TOOLS[tool]
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if path:
            return path
    return None


def missing_reason(needs_root: bool, tools: tuple[str, ...]) -> str | None:
    """Why a test with these needs cannot run here, None when it can."""
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise pytest.UsageError(f"unknown tool(s) in a root/tools marker: {unknown}; known: {sorted(TOOLS)}")
    if needs_root and os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in tools if tool_path(t) is None]
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[t][1] for t in missing))
        return f"needs {', '.join(missing)} (apt-get install {packages})"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        needs_root = item.get_closest_marker("root") is not None
        tools = tuple(t for name in ("root", "tools") for m in item.iter_markers(name) for t in m.args)
        if not needs_root and not tools:
            continue
        reason = missing_reason(needs_root, tools)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def tracefs():
    """tracefs with the napi:napi_poll tracepoint (mounted if needed); skip naming why when absent."""
    from vcoal.linux import napitrace

    try:
        root = napitrace.ensure_tracefs()
    except napitrace.TraceUnavailable as exc:
        pytest.skip(f"needs tracefs with napi:napi_poll ({exc})")
    if not (root / "events" / napitrace.EVENT).is_dir():
        pytest.skip("needs the napi:napi_poll tracepoint (kernel built without it)")
    return root


@pytest.fixture
def tag():
    """A unique testbed topology tag; the topology is removed afterwards, even on failure, and no
    namespace of it may be left."""
    from vcoal.linux import netns, topology

    t = "t" + uuid.uuid4().hex[:8]
    try:
        yield t
    finally:
        topology.down(t)
        assert netns.list_namespaces(f"{netns.PREFIX}{t}-") == []
