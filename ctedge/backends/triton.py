"""Triton Inference Server backend: slices are decoded and preprocessed here, inferred there.

The local model (`--model`) says what the client expects: classes, preprocessing and input
size. Before any slice is sent, the server's model config (written by `ctedge export-triton`,
its `ctedge` parameter holding the same metadata as the ONNX) must match it; a mismatch is a
ModelError that says what differs. Calls time out after `timeout_s`, transient failures
(connection refused or reset, UNAVAILABLE, 502/503/504, timeouts) are retried with
exponential backoff, and a server that stays away is BackendUnavailable: one line, exit 2.
Batches of up to the server's max_batch_size go out as one request each; the server's
dynamic batcher merges requests of many clients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, ModelError
from .base import Backend

PROTOCOLS = ("http", "grpc")
TRANSIENT_STATUS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "502", "503",
                    "504")


@dataclass(frozen=True)
class TritonConfig:
    """Where the server is and how patiently to talk to it.

    url: HOST:PORT (no scheme). timeout_s: per call, seconds. retries: extra tries after a
    transient failure, waiting backoff_s, 2 x backoff_s, ... in between.
    """

    url: str
    protocol: str = "http"
    model_name: str = "ctedge"
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5

    def __post_init__(self):
        url = self.url.strip()
        for scheme in ("http://", "https://", "grpc://"):
            if url.startswith(scheme):
                raise ValueError(f"url must be HOST:PORT without a scheme, got {self.url!r}")
        host, _, port = url.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"url must be HOST:PORT, got {self.url!r}")
        object.__setattr__(self, "url", url)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.model_name:
            raise ValueError("model_name must not be empty")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 0 <= self.retries <= 20:
            raise ValueError(f"retries must be 0..20, got {self.retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")


class TritonBackend(Backend):
    name = "triton"

    def __init__(self, path: str | Path, url: str | None = None, protocol: str = "http",
                 model_name: str = "ctedge", timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5, **_ignored):
        from ..triton.repository import load_artifact

        if not url:
            raise BackendUnavailable("the triton backend needs the server's address: "
                                     "--url HOST:PORT")
        self.config = TritonConfig(url, protocol, model_name, timeout_s, retries, backoff_s)
        self.path = Path(path)
        expected = load_artifact(self.path).info  # what this client was built for
        self._module = _client_module(protocol)
        self._client = self._open_client()
        served, config = self._served_model()
        _check_match(expected, served, config, self._where, self.path)
        self.info = expected.with_(precision=served.precision)
        self._served_sha = served.graph_sha256
        self._input, self._output = config.input[0].name, config.output[0].name
        self.max_batch = int(config.max_batch_size) or None

    @property
    def _where(self) -> str:
        c = self.config
        return f"Triton model {c.model_name!r} at {c.url} ({c.protocol})"

    def _open_client(self):
        c = self.config
        try:
            if c.protocol == "http":
                return self._module.InferenceServerClient(
                    c.url, connection_timeout=c.timeout_s, network_timeout=c.timeout_s)
            return self._module.InferenceServerClient(c.url)
        except Exception as exc:  # bad host names fail here in the http client
            raise BackendUnavailable(f"cannot reach the Triton server at {c.url}: "
                                     f"{_reason(exc)}; check --url") from exc

    def _timeout(self) -> dict:
        return {"client_timeout": self.config.timeout_s} if self.config.protocol == "grpc" else {}

    def _call(self, what: str, fn):
        """fn() with retries and backoff on transient failures."""
        c = self.config
        for attempt in range(c.retries + 1):
            try:
                return fn()
            except Exception as exc:
                if not _transient(exc):
                    raise
                if attempt == c.retries:
                    raise BackendUnavailable(
                        f"Triton server at {c.url} ({c.protocol}): {what} failed after "
                        f"{attempt + 1} tries ({_reason(exc)}); check that it is running and "
                        "--url/--protocol point at it") from exc
                time.sleep(c.backoff_s * 2 ** attempt)

    def _served_model(self):
        from google.protobuf import json_format

        from ..triton.repository import _model_config_pb2, served_info

        c, timeout = self.config, self._timeout()
        try:
            ready = self._call("the readiness check", lambda: self._client.is_model_ready(
                c.model_name, **timeout))
            if not ready:
                raise ModelError(f"{self._where}: not ready on the server; load it there (or "
                                 "pass --triton-model with the name of the ctedge model served)")
            raw = self._call("reading the model config", lambda: self._client.get_model_config(
                c.model_name, **({"as_json": True, **timeout} if c.protocol == "grpc" else {})))
        except self._errors() as exc:
            raise ModelError(f"{self._where}: {_reason(exc)}; check --triton-model") from exc
        raw = raw.get("config", raw) if c.protocol == "grpc" else raw
        config = json_format.ParseDict(raw, _model_config_pb2().ModelConfig(),
                                       ignore_unknown_fields=True)
        return served_info(config, self._where), config

    def _errors(self):
        from tritonclient.utils import InferenceServerException

        return InferenceServerException

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        module, c = self._module, self.config
        tensor = module.InferInput(self._input, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        outputs = [module.InferRequestedOutput(self._output)]
        try:
            result = self._call(f"inference on {len(batch)} slices", lambda: self._client.infer(
                c.model_name, [tensor], outputs=outputs, **self._timeout()))
        except self._errors() as exc:
            raise ModelError(f"{self._where}: inference failed ({_reason(exc)})") from exc
        probs = result.as_numpy(self._output)
        if probs is None:
            raise ModelError(f"{self._where}: the answer has no {self._output!r} output")
        return probs

    @property
    def description(self) -> dict:
        c = self.config
        return {**super().description, "url": c.url, "protocol": c.protocol,
                "triton_model": c.model_name, "served_graph_sha256": self._served_sha}

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a connection to a dead server must not mask results
                pass


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise BackendUnavailable("the triton backend needs tritonclient: "
                                 "pip install 'ctedge[triton]'") from exc
    return module


def _check_match(expected, served, config, where: str, model: Path) -> None:
    """ModelError naming what differs between the client's model and the served one."""
    fix = (f"serve {model} (`ctedge export-triton {model}`) or pass --model with the model "
           "the server serves")
    if served.classes != expected.classes or served.negative_class != expected.negative_class:
        raise ModelError(f"{where} serves classes {list(served.classes)}, but {model} expects "
                         f"{list(expected.classes)}; {fix}")
    if served.preprocessing != expected.preprocessing:
        theirs, ours = served.preprocessing.to_dict(), expected.preprocessing.to_dict()
        diff = ", ".join(f"{k} {theirs.get(k)} vs {ours.get(k)}" for k in sorted(ours)
                         if theirs.get(k) != ours.get(k))
        raise ModelError(f"{where} expects other preprocessing than {model} ({diff}); {fix}")
    dims = [list(map(int, t.dims)) for t in config.input]
    if len(config.input) != 1 or dims[0] != list(expected.input_shape):
        raise ModelError(f"{where} takes inputs {dims}, but {model} needs "
                         f"[{', '.join(map(str, expected.input_shape))}]; {fix}")
    outs = [list(map(int, t.dims)) for t in config.output]
    if len(config.output) != 1 or outs[0] != [len(expected.classes)]:
        raise ModelError(f"{where} returns {outs}, expected [{len(expected.classes)}]; {fix}")
    if config.max_batch_size < 1:
        raise ModelError(f"{where} has max_batch_size {config.max_batch_size}; export it with "
                         "`ctedge export-triton` (batching needs max_batch_size >= 1)")


def _transient(exc: BaseException) -> bool:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        return any(s in status for s in TRANSIENT_STATUS) or "onnect" in str(exc.message())
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def _reason(exc: BaseException) -> str:
    text = (exc.message() if hasattr(exc, "message") and callable(exc.message)
            else str(exc)) or type(exc).__name__
    first = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return first[:200]
