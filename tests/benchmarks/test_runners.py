"""Peer runners give the same probabilities as ctedge's ONNX Runtime backend on tiny models.

Speed is never checked here; these check that each peer runs the same computation, so the
ratios in the report compare like with like.
"""

import importlib.util

import numpy as np
import pytest

from ctedge.backends import open_backend
from ctedge.benchmarks.config import BenchConfig
from ctedge.benchmarks.harness import run_bench

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_NNCF = importlib.util.find_spec("nncf") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _batch(n=3, size=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def _ort(model, x):
    with open_backend(model) as backend:
        return backend.infer(x)


@pytest.mark.openvino
@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra not installed")
def test_openvino_fp32_matches_onnxruntime(small_model):
    from ctedge.benchmarks.runners import OpenVinoRunner

    x = _batch()
    with OpenVinoRunner(small_model, "fp32") as runner:
        got = runner.infer(x)
        assert runner.description["openvino"]
    np.testing.assert_allclose(got, _ort(small_model, x), atol=1e-5)
    assert (got.argmax(1) == _ort(small_model, x).argmax(1)).all()


@pytest.mark.openvino
@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra not installed")
def test_openvino_int8_needs_calibration(small_model):
    from ctedge.benchmarks.runners import OpenVinoRunner
    from ctedge.errors import BackendUnavailable, ModelError

    with pytest.raises((ModelError, BackendUnavailable), match="calibration|nncf"):
        OpenVinoRunner(small_model, "int8", calibration=None)


@pytest.mark.slow  # nncf imports torch
@pytest.mark.openvino
@pytest.mark.skipif(not (HAS_OPENVINO and HAS_NNCF), reason="openvino extra not installed")
def test_openvino_int8_runs_after_nncf(small_model):
    from ctedge.benchmarks.runners import OpenVinoRunner

    calibration = _batch(8, seed=1)
    x = _batch()
    with OpenVinoRunner(small_model, "int8", calibration=calibration) as runner:
        got = runner.infer(x)
        assert runner.description["calibration_slices"] == 8
        quantized = runner.model
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-3)
    # the peers section reuses the accuracy section's NNCF model instead of quantising again
    with OpenVinoRunner(small_model, "int8", calibration=calibration,
                        quantized=quantized) as again:
        np.testing.assert_allclose(again.infer(x), got, atol=1e-6)
        assert again.description["calibration_slices"] == 8


def _tiny_torch_twin(model_path):
    """The tiny ONNX model's computation in torch, with its weights."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.from_numpy(weights["weight"].copy()))
            self.b = torch.nn.Parameter(torch.from_numpy(weights["bias"].copy()))

        def forward(self, x):
            pooled = x.float().mean(dim=(2, 3))
            return torch.softmax(pooled @ self.w.float() + self.b.float(), dim=1)

    return Twin


@pytest.mark.slow  # importing torch takes seconds
@pytest.mark.skipif(not HAS_TORCH, reason="train extra (torch) not installed")
def test_torch_runners_match_onnxruntime(small_model):
    from ctedge.benchmarks.runners import TorchRunner

    twin = _tiny_torch_twin(small_model)
    x = _batch()
    expected = _ort(small_model, x)
    with TorchRunner("torch-fp32", twin, real_weights=True) as runner:
        np.testing.assert_allclose(runner.infer(x), expected, atol=1e-5)
    with TorchRunner("torch-bf16-cl", twin, real_weights=True) as runner:
        got = runner.infer(x)
        assert runner.description["device"] in ("cpu", "cuda")
    np.testing.assert_allclose(got, expected, atol=5e-2)  # bf16: 8 mantissa bits


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason="train extra (torch) not installed")
def test_torch_peer_through_the_harness(small_model, tmp_path):
    config = BenchConfig.quick(models=(small_model,), sections=("peers",), out=tmp_path,
                               peers=("torch-fp32",), requested_peers=True)
    report = run_bench(config, torch_factory=_tiny_torch_twin(small_model))
    (row,) = report["sections"]["peers"]["rows"]
    assert row["status"] == "ok" and row["description"]["real_weights"] is False


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TORCH, reason="train extra (torch) not installed")
def test_cuda_graph_runner_matches(small_model):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from ctedge.benchmarks.runners import TorchRunner

    x = _batch()
    with TorchRunner("torch-cuda-fp16-graph", _tiny_torch_twin(small_model), True) as runner:
        first = runner.infer(x)
        again = runner.infer(x)  # replays the captured graph
    np.testing.assert_allclose(first, _ort(small_model, x), atol=1e-2)
    np.testing.assert_array_equal(first, again)
