"""The triton backend's retry policy and URL checks, without a server."""

from __future__ import annotations

import pytest
from triton_serving.triton_helpers import needs_client

from ctedge.backends.triton import TritonBackend, TritonConfig
from ctedge.errors import BackendUnavailable

pytestmark = needs_client


def backend_with(retries=3, backoff_s=0.01):
    """A TritonBackend shell with only its config set: enough for `_call`."""
    backend = TritonBackend.__new__(TritonBackend)
    backend.config = TritonConfig("127.0.0.1:8000", retries=retries, backoff_s=backoff_s)
    return backend


def test_transient_failures_are_retried_with_backoff(monkeypatch):
    from tritonclient.utils import InferenceServerException

    sleeps = []
    monkeypatch.setattr("ctedge.backends.triton.time.sleep", sleeps.append)
    failures = [ConnectionRefusedError(111, "Connection refused"),
                InferenceServerException("busy", status="StatusCode.UNAVAILABLE")]

    def flaky():
        if failures:
            raise failures.pop(0)
        return "answer"

    assert backend_with(backoff_s=0.5)._call("inference", flaky) == "answer"
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_last_retry(monkeypatch):
    sleeps = []
    monkeypatch.setattr("ctedge.backends.triton.time.sleep", sleeps.append)

    def down():
        raise TimeoutError("timed out")

    with pytest.raises(BackendUnavailable, match=r"inference failed after 3 tries \(timed out\)"):
        backend_with(retries=2)._call("inference", down)
    assert len(sleeps) == 2


def test_server_errors_are_not_retried():
    from tritonclient.utils import InferenceServerException

    calls = []

    def refused():
        calls.append(1)
        raise InferenceServerException("unexpected shape", status="400")

    with pytest.raises(InferenceServerException):
        backend_with()._call("inference", refused)
    assert calls == [1]


@pytest.mark.parametrize("url", ["http://host:8000", "host", "host:0", "host:99999", ":8000"])
def test_bad_urls(url):
    with pytest.raises(ValueError, match="HOST:PORT"):
        TritonConfig(url)


def test_needs_a_url(tiny_model):
    with pytest.raises(BackendUnavailable, match="--url"):
        TritonBackend(tiny_model)
