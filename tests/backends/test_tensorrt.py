"""TensorRT: manifest validation on any machine; real engine builds where TensorRT exists.

Tests marked `tensorrt` skip without the `tensorrt` package; they are never mocked, so on a
machine with TensorRT and a GPU they build and run real engines.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from ctedge.engine_manifest import EngineManifest, check_tensorrt_runtime
from ctedge.errors import BackendUnavailable, ModelError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (pip install "
                               "'ctedge[tensorrt]' on a machine that reaches NVIDIA's index)")


def _manifest(**runtime) -> EngineManifest:
    built = {"tensorrt": "10.13.0", "gpu": "NVIDIA L4", "compute_capability": "8.9",
             "profile": {"min": 1, "opt": 32, "max": 64}}
    built.update(runtime)
    return EngineManifest(
        file="m.int8.plan", backend="tensorrt", target="tensorrt", precision="int8",
        engine_sha256="e" * 64, onnx_sha256="o" * 64, classes=("normal", "covid19"),
        negative_class="normal", preprocessing={"size": 224}, runtime=built)


def test_tensorrt_manifest_accepts_the_machine_it_was_built_on():
    check_tensorrt_runtime(_manifest(), "10.13.0", "NVIDIA L4", "8.9")


@pytest.mark.parametrize("here, message", [
    (("11.0.0", "NVIDIA L4", "8.9"), "built with TensorRT 10.13.0, this is TensorRT 11.0.0"),
    (("10.13.0", "NVIDIA H100 80GB HBM3", "9.0"), "compute capability 8.9 .* is 9.0"),
    (("10.13.0", "NVIDIA L40S", "8.9"), "built on NVIDIA L4, this GPU is NVIDIA L40S"),
])
def test_tensorrt_manifest_mismatch_says_rebuild(here, message):
    with pytest.raises(ModelError, match=message + ".*ctedge build-engine"):
        check_tensorrt_runtime(_manifest(), *here)


@pytest.mark.skipif(HAS_TRT, reason="checks the message on machines without TensorRT")
def test_building_without_tensorrt_names_the_extra(tmp_path):
    from ctedge.export.tensorrt_build import import_tensorrt

    with pytest.raises(BackendUnavailable, match=r"ctedge\[tensorrt\]"):
        import_tensorrt()


@pytest.mark.skipif(HAS_TRT, reason="checks the message on machines without TensorRT")
def test_cli_tensorrt_target_without_tensorrt_exits_2(tmp_path, tiny_model, capsys):
    from ctedge.cli import main

    out = tmp_path / "engine"
    assert main(["build-engine", str(tiny_model), "--precision", "fp16", "--target", "tensorrt",
                 "--out", str(out)]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_builds_runs_and_checks_its_manifest(tmp_path, precision):
    """A real engine from a small conv model, run through open_backend, compared with ORT."""
    from pathlib import Path

    from ctedge.backends import open_backend
    from ctedge.export.build import EngineConfig, build_engine

    spec = importlib.util.spec_from_file_location(
        "export_conftest", Path(__file__).resolve().parents[1] / "export" / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    model = helpers.make_conv_model(tmp_path / "conv.onnx")
    slices = helpers.make_slice_folder(tmp_path / "slices")
    out = tmp_path / "engine"
    build_engine(EngineConfig(model=model, precision=precision, target="tensorrt", out=out,
                              calib=slices, parity_size=8, batch=(1, 4, 8)), log=lambda *_: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "tensorrt" and manifest["runtime"]["profile"]["max"] == 8
    x = np.random.default_rng(0).standard_normal((11, 3, 32, 32), dtype=np.float32)
    with open_backend(out) as engine, open_backend(model) as ref:
        assert engine.max_batch == 8  # 11 slices run as 8 + 3
        got, want = engine.infer(x), ref.infer(x)
    assert got.shape == (11, 2)
    assert np.max(np.abs(got - want)) <= {"fp32": 1e-3, "fp16": 1e-2, "int8": 0.1}[precision]
    data = dict(manifest)
    data["runtime"] = {**manifest["runtime"], "tensorrt": "0.0.0"}
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="rebuild"):
        open_backend(out)
