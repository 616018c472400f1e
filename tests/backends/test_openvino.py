"""OpenVINO backend: same answers as ONNX Runtime, the same contract, registry dispatch, and a
clear error when the extra is missing."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from ctedge.artifact import ModelInfo, file_sha256, read_info, write_info
from ctedge.backends import BACKENDS, open_backend, resolve
from ctedge.backends.onnxruntime import OnnxRuntimeBackend
from ctedge.backends.openvino import OpenVinoBackend
from ctedge.engine_manifest import EngineManifest, cpu_facts, openvino_runtime, write_manifest
from ctedge.errors import BackendUnavailable, ModelError
from ctedge.preprocess import Preprocessing

pytestmark = pytest.mark.openvino
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="needs the openvino extra (pip install "
                                           "'ctedge[openvino]')")
EXPORT_CONFTEST = Path(__file__).resolve().parents[1] / "export" / "conftest.py"


def _make_conv_model(path: Path) -> Path:
    """The export tests' small conv model (tests/export/conftest.py), size 32, 2 classes."""
    spec = importlib.util.spec_from_file_location("_export_conftest", EXPORT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_conv_model(path)


def _inputs(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def _assert_same_as_onnxruntime(path: Path, x: np.ndarray) -> None:
    with OnnxRuntimeBackend(path) as ref, OpenVinoBackend(path) as ov:
        expected, got = ref.infer(x), ov.infer(x)
        assert ov.name == "openvino" and ov.info == ref.info
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()


@needs_openvino
@pytest.mark.parametrize("n", [1, 2, 7])  # 7: uneven parts across the infer requests
def test_matches_onnxruntime_on_the_tiny_model(tmp_path, tiny_model_factory, n):
    path = tiny_model_factory(tmp_path / "tiny.onnx")
    _assert_same_as_onnxruntime(path, _inputs(n, 224))


@needs_openvino
def test_matches_onnxruntime_on_a_conv_model(tmp_path):
    path = _make_conv_model(tmp_path / "conv.onnx")
    _assert_same_as_onnxruntime(path, _inputs(16, 32, seed=1))


@needs_openvino
def test_contract_checks_and_description(tiny_model):
    with OpenVinoBackend(tiny_model, threads=1, hint="LATENCY") as backend:
        with pytest.raises(TypeError, match="float32"):
            backend.infer(np.zeros((1, 3, 224, 224), np.float64))
        with pytest.raises(ValueError, match="expected shape"):
            backend.infer(np.zeros((1, 3, 64, 64), np.float32))
        assert backend.infer(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 5)
        description = backend.description
    assert description["backend"] == "openvino" and description["device"] == "CPU"
    assert description["openvino"] and description["inference_precision"] == "f32"
    assert description["performance_hint"] == "LATENCY" and description["threads"] == 1
    with pytest.raises(ValueError, match="hint must be"):
        OpenVinoBackend(tiny_model, hint="FAST")


@needs_openvino
def test_bad_model_files(tmp_path, tiny_model, tiny_model_factory):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="bad.onnx.*re-export"):
        OpenVinoBackend(bad)
    with pytest.raises(ModelError, match="not found"):
        OpenVinoBackend(tmp_path / "missing.onnx")
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="not a ctedge model"):
        OpenVinoBackend(tmp_path / "plain.onnx")


@needs_openvino
def test_signature_that_does_not_match_the_metadata(tmp_path, tiny_model_factory):
    path = tiny_model_factory(tmp_path / "m.onnx", size=224)
    model = onnx.load(str(path))
    write_info(model, ModelInfo(preprocessing=Preprocessing(size=256)))  # graph says 224
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="input is f32"):
        OpenVinoBackend(path)
    wrong_classes = tiny_model_factory(tmp_path / "c.onnx", classes=("normal", "covid19"),
                                       info=ModelInfo())  # 2 outputs, metadata lists 5
    with pytest.raises(ModelError, match="output is f32.*5 classes"):
        OpenVinoBackend(wrong_classes)


def test_missing_openvino_names_the_extra(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails
    with pytest.raises(BackendUnavailable, match=r"pip install 'ctedge\[openvino\]'"):
        OpenVinoBackend(tiny_model)
    with pytest.raises(BackendUnavailable, match="openvino"):
        open_backend(tiny_model, backend="openvino")


def test_classify_accepts_every_backend():
    from ctedge.commands.classify import BACKENDS as CLASSIFY_BACKENDS

    assert "openvino" in BACKENDS and CLASSIFY_BACKENDS == BACKENDS


# --- registry: plain .onnx and engine folders ------------------------------------------------


def _engine_folder(folder: Path, source: Path, backend: str = "openvino",
                   runtime: dict | None = None) -> Path:
    """A hand-made engine folder around `source` (what build-engine writes, minus parity)."""
    import openvino

    folder.mkdir()
    engine = folder / source.name
    shutil.copyfile(source, engine)
    info = read_info(engine)
    write_manifest(folder, EngineManifest(
        file=engine.name, backend=backend, target="cpu", precision=info.precision,
        engine_sha256=file_sha256(engine), onnx_sha256=file_sha256(source),
        classes=info.classes, negative_class=info.negative_class,
        preprocessing=info.preprocessing.to_dict(),
        runtime=runtime or openvino_runtime(openvino.__version__)))
    return folder


@needs_openvino
def test_plain_onnx_runs_on_openvino_only_when_asked(tiny_model):
    assert resolve(tiny_model)[1] == "onnxruntime"
    with open_backend(tiny_model) as auto:
        assert isinstance(auto, OnnxRuntimeBackend)
    with open_backend(tiny_model, backend="openvino") as explicit:
        assert isinstance(explicit, OpenVinoBackend)
        assert explicit.infer(_inputs(2, 224)).shape == (2, 5)


@needs_openvino
def test_engine_folder_with_openvino_manifest_runs_on_openvino(tmp_path, tiny_model):
    folder = _engine_folder(tmp_path / "engine", tiny_model)
    assert resolve(folder) == (folder / "tiny.onnx", "openvino")
    assert resolve(folder / "tiny.onnx") == (folder / "tiny.onnx", "openvino")
    for model in (folder, folder / "tiny.onnx"):
        with open_backend(model) as backend:
            assert isinstance(backend, OpenVinoBackend)
    with pytest.raises(ModelError, match="cannot run on onnxruntime"):
        open_backend(folder, backend="onnxruntime")


@needs_openvino
def test_onnxruntime_engine_folder_does_not_run_on_openvino(tmp_path, tiny_model):
    import onnxruntime

    folder = _engine_folder(tmp_path / "engine", tiny_model, backend="onnxruntime",
                            runtime={"onnxruntime": onnxruntime.__version__, "cpu": cpu_facts()})
    with pytest.raises(ModelError, match="onnxruntime model, it cannot run on openvino"):
        open_backend(folder, backend="openvino")
    with open_backend(folder) as backend:
        assert isinstance(backend, OnnxRuntimeBackend)


@needs_openvino
def test_openvino_engine_refuses_another_version_cpu_or_file(tmp_path, tiny_model):
    folder = _engine_folder(tmp_path / "engine", tiny_model)
    manifest = folder / "manifest.json"
    original = manifest.read_text()
    data = json.loads(original)
    data["runtime"]["openvino"] = "2020.1.0"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"OpenVINO 2020\.1\.0.*ctedge build-engine"):
        open_backend(folder)
    data = json.loads(original)
    data["runtime"]["cpu"]["flags"] = [*data["runtime"]["cpu"]["flags"], "amx_int8", "sve"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="lacks; rebuild it here"):
        open_backend(folder / "tiny.onnx")
    manifest.write_text(original)
    engine = folder / "tiny.onnx"
    engine.write_bytes(engine.read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="does not match its manifest"):
        open_backend(folder)


def test_unknown_backend_in_a_manifest(tmp_path, tiny_model):
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"file": "m.tflite", "backend": "tflite"}))
    with pytest.raises(ModelError, match="unknown backend 'tflite'.*ctedge build-engine"):
        open_backend(folder)


@needs_openvino
def test_compiled_model_is_cached_and_gives_the_same_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("CTEDGE_CACHE", str(tmp_path / "cache"))
    path = _make_conv_model(tmp_path / "conv.onnx")
    x = _inputs(3, 32)
    with OpenVinoBackend(path) as first:
        expected = first.infer(x)
    with OpenVinoBackend(path) as second:
        got = second.infer(x)
    blobs = list((tmp_path / "cache" / "openvino").glob("*.blob"))
    assert blobs, "OpenVINO wrote no compiled model into $CTEDGE_CACHE/openvino"
    np.testing.assert_array_equal(got, expected)


@needs_openvino
def test_an_unwritable_compiled_cache_is_skipped(tmp_path, monkeypatch, tiny_model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CTEDGE_CACHE", str(blocker))
    with OpenVinoBackend(tiny_model) as backend:
        assert backend.infer(_inputs(1, 224)).shape == (1, len(backend.info.classes))
