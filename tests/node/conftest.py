"""Fixtures of the node tests: a node running in this process on a tiny model, loopback only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MISSING = [name for name in ("pynetdicom", "highdicom") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"node extra missing: {MISSING}")


@pytest.fixture
def node_factory(tmp_path, tiny_model):
    """`make(**config)` -> a started ctedge.node.server.Node (stopped after the test)."""
    if MISSING:
        pytest.skip(f"node extra missing: {MISSING}")
    from ctedge.node.config import NodeConfig
    from ctedge.node.server import Node
    from ctedge.pipeline import ClassifyConfig

    nodes = []

    def make(state_dir: Path | None = None, **changes):
        settings = {"port": 0, "allowed_aets": ("SCANNER",), "quiet_period_s": 0.4,
                    "classify": ClassifyConfig(model=tiny_model, workers=1), **changes}
        config = NodeConfig(state_dir=state_dir or tmp_path / "state", **settings)
        node = Node(config).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop(timeout_s=10)
