"""Shared fixtures."""

from __future__ import annotations

import uuid

import pytest


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
