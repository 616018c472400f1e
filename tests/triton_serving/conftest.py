"""Fixtures for the Triton tests: exported repositories and a real tritonserver on loopback.

The server is the `tritonserver` binary bundled in the nvidia-pytriton wheel, unpacked into
`.triton/` by .ci/run (or $CTEDGE_TRITON_HOME); tests that need it skip with the reason when it
is absent. It serves models through the Python backend (the wheel has no ONNX Runtime backend).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from triton_serving.triton_helpers import REFERENCE_MODEL, TINY_SIZE, tritonserver_missing


@pytest.fixture(scope="session")
def served_repository(tmp_path_factory) -> Path:
    """A repository with `tiny` (a 64 px tiny model) and `reference` (the repo's model), both
    on the Python backend; `tiny` waits up to 200 ms to fill batches so concurrent clients'
    requests are visibly merged."""
    from conftest import make_tiny_model

    from ctedge.triton.repository import RepositoryConfig, export_repository

    root = tmp_path_factory.mktemp("triton")
    tiny = make_tiny_model(root / "tiny.onnx", size=TINY_SIZE)
    repo = root / "repo"
    export_repository(tiny, repo, RepositoryConfig(name="tiny", python_backend=True,
                                                   max_batch=32, queue_delay_us=200_000))
    export_repository(REFERENCE_MODEL, repo, RepositoryConfig(name="reference",
                                                              python_backend=True, max_batch=32))
    return repo


@pytest.fixture(scope="session")
def tiny_served_model(served_repository) -> Path:
    return served_repository.parent / "tiny.onnx"


@pytest.fixture(scope="session")
def triton_server(served_repository):
    """One tritonserver for the session, stopped by its own PID at the end."""
    reason = tritonserver_missing()
    if reason:
        pytest.skip(reason)
    from ctedge.triton.server import LocalTritonServer

    with LocalTritonServer(served_repository) as server:
        yield server
