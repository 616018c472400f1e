"""`classify --backend triton` against a real tritonserver on loopback: same results as local
ONNX Runtime, metadata checks, concurrent clients batched by the server, clean errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from triton_serving.triton_helpers import REFERENCE_MODEL, TINY_SIZE, tritonserver_missing

from ctedge.backends import open_backend
from ctedge.cli import main

pytestmark = pytest.mark.triton


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ctedge: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def classify_json(capsys, study, *args):
    code, out, err = run(capsys, "classify", study, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def assert_same_result(local, remote, tolerance=1e-5):
    assert remote["decision"]["label"] == local["decision"]["label"]
    assert remote["decision"]["reason"] == local["decision"]["reason"]
    diffs = []
    for a, b in zip(local["slices"], remote["slices"], strict=True):
        assert a["used"] == b["used"] and a["label"] == b["label"]
        if a["probabilities"] is not None:
            diffs += [abs(a["probabilities"][k] - b["probabilities"][k])
                      for k in a["probabilities"]]
    assert diffs and max(diffs) <= tolerance, max(diffs)
    return max(diffs)


def test_shared_study_matches_local_onnxruntime(capsys, shared_data, triton_server,
                                               tiny_served_model):
    """A real 148-slice COVID-19 study (COVID-CT-MD P001) over HTTP. The tiny model keeps this
    fast; the repo's ResNet-50 runs the same path in test_sample_study_over_grpc and on whole
    shared studies in benchmarks/triton.py."""
    study = shared_data / "covid-ct-md" / "COVID-19" / "P001"
    local = classify_json(capsys, study, "--model", tiny_served_model)
    remote = classify_json(capsys, study, "--model", tiny_served_model, "--backend", "triton",
                           "--url", triton_server.http_url, "--triton-model", "tiny")
    assert_same_result(local, remote)
    assert remote["model"]["backend"] == "triton" and remote["model"]["protocol"] == "http"
    assert remote["study"]["slices_classified"] == local["study"]["slices_classified"] > 50


def test_sample_study_over_grpc(capsys, triton_server):
    from conftest import SAMPLE_STUDY

    local = classify_json(capsys, SAMPLE_STUDY, "--model", REFERENCE_MODEL)
    remote = classify_json(capsys, SAMPLE_STUDY, "--model", REFERENCE_MODEL, "--backend",
                           "triton", "--url", triton_server.grpc_url, "--protocol", "grpc",
                           "--triton-model", "reference", "--batch-size", "5")
    assert_same_result(local, remote)
    assert remote["model"]["protocol"] == "grpc"


def test_class_mismatch_is_refused(capsys, tmp_path, triton_server):
    other = make_tiny_model(tmp_path / "other.onnx", classes=("normal", "covid19"),
                            size=TINY_SIZE)
    code, _, err = run(capsys, "classify", tmp_path, "--model", other, "--backend", "triton",
                       "--url", triton_server.http_url, "--triton-model", "tiny")
    one_line_error(code, err, "serves classes", "'tiny'", str(other))


def test_preprocessing_mismatch_is_refused(capsys, tmp_path, triton_server):
    other = make_tiny_model(tmp_path / "other.onnx", size=TINY_SIZE * 2)
    code, _, err = run(capsys, "classify", tmp_path, "--model", other, "--backend", "triton",
                       "--url", triton_server.grpc_url, "--protocol", "grpc",
                       "--triton-model", "tiny")
    one_line_error(code, err, "preprocessing", f"size {TINY_SIZE} vs {TINY_SIZE * 2}")


def test_unknown_model_name(capsys, tmp_path, tiny_served_model, triton_server):
    code, _, err = run(capsys, "classify", tmp_path, "--model", tiny_served_model, "--backend",
                       "triton", "--url", triton_server.http_url, "--triton-model", "nope")
    one_line_error(code, err, "'nope'", "--triton-model")


def test_unreachable_server(capsys, tmp_path, tiny_served_model):
    from ctedge.backends.triton import TritonBackend
    from ctedge.errors import BackendUnavailable
    from ctedge.triton.server import free_port

    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = run(capsys, "classify", tmp_path, "--model", tiny_served_model,
                         "--backend", "triton", "--url", url, "--out", tmp_path / "r.json")
    one_line_error(code, err, url, "(http)", "after 4 tries")
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(BackendUnavailable, match=r"\(grpc\).*after 3 tries"):
        TritonBackend(tiny_served_model, url, "grpc", retries=2, backoff_s=0.01)


def test_url_is_required(capsys, tmp_path, tiny_model):
    code, _, err = run(capsys, "classify", tmp_path, "--model", tiny_model, "--backend", "triton")
    assert code == 2 and "--url" in err


def test_concurrent_clients_are_batched(triton_server, tiny_served_model):
    """8 clients, each with its own connection, send 3 requests of 4 slices at the same time;
    each gets its own answers, and the server ran fewer, larger batches than requests."""
    import tritonclient.http as http

    clients, rounds, per_request = 8, 3, 4
    local = open_backend(tiny_served_model)
    rng = np.random.default_rng(7)
    inputs = rng.normal(0, 1, (clients, rounds, per_request, 3, TINY_SIZE, TINY_SIZE)).astype(
        np.float32)
    stats_client = http.InferenceServerClient(triton_server.http_url)
    before = stats_client.get_inference_statistics("tiny")["model_stats"][0]
    barrier = threading.Barrier(clients)
    results, errors = {}, []

    def client(i):
        try:
            with open_backend(tiny_served_model, "triton", url=triton_server.http_url,
                              model_name="tiny") as remote:
                for r in range(rounds):
                    barrier.wait(timeout=60)
                    results[i, r] = remote.infer(inputs[i, r])
        except Exception as exc:  # reported below with the client's number
            errors.append((i, exc))
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(clients):
        for r in range(rounds):
            np.testing.assert_allclose(results[i, r], local.infer(inputs[i, r]), atol=1e-6)
    after = stats_client.get_inference_statistics("tiny")["model_stats"][0]
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == clients * rounds * per_request  # inference_count counts slices
    batch_sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert executions < clients * rounds, (executions, batch_sizes)
    assert max(batch_sizes) > per_request, batch_sizes  # requests of several clients merged


def test_server_gone_mid_study(capsys, tmp_path, ct_factory, served_repository,
                               tiny_served_model, monkeypatch):
    """The server is killed after the study's first batch: exit 2, one line, no output."""
    reason = tritonserver_missing()
    if reason:
        pytest.skip(reason)
    from ctedge.backends.triton import TritonBackend
    from ctedge.triton.server import LocalTritonServer

    study = tmp_path / "study"
    ct_factory.make_series(study, [float(z) for z in range(0, 12, 2)], pixels=_chest(),
                           size=256, spacing=1.4)
    calls = []
    original = TritonBackend._infer

    with LocalTritonServer(served_repository) as server:
        def infer_then_kill(self, batch):
            out = original(self, batch)
            calls.append(len(batch))
            if len(calls) == 1:
                server.kill()
            return out

        monkeypatch.setattr(TritonBackend, "_infer", infer_then_kill)
        backends = str(server.log.parent / "backends")
        out_file = tmp_path / "result.json"
        code, _, err = run(capsys, "classify", study, "--model", tiny_served_model, "--backend",
                           "triton", "--url", server.grpc_url, "--protocol", "grpc",
                           "--triton-model", "tiny", "--batch-size", "2", "--out", out_file,
                           "--workers", "1")
    one_line_error(code, err, server.grpc_url, "inference on 2 slices failed after 4 tries")
    assert calls == [2] and not out_file.exists()
    stubs = [p for p in Path("/proc").glob("[0-9]*/cmdline")
             if backends.encode() in _read(p)]
    assert not stubs, "the killed server's Python-backend stubs are still running"


def _read(path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def _chest(size: int = 256) -> np.ndarray:
    """Stored values (intercept -1024) of an axial chest with two lungs (as in test_cli)."""
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), -1000.0)
    hu[((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1] = 40.0
    for cx in (0.33, 0.67):
        hu[((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.22) ** 2 < 1] = -850.0
    return (hu + 1024).astype(np.uint16)
