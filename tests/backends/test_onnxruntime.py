import numpy as np
import onnx
import pytest

from ctedge.backends import open_backend, resolve
from ctedge.errors import ModelError


def test_infer_returns_probabilities(tiny_model):
    with open_backend(tiny_model) as backend:
        assert backend.name == "onnxruntime"
        x = np.random.default_rng(0).normal(size=(5, 3, 224, 224)).astype(np.float32)
        p = backend.infer(x)
    assert p.shape == (5, 5) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_batches_larger_than_max_batch_are_chunked(tiny_model):
    with open_backend(tiny_model) as backend:
        x = np.random.default_rng(1).normal(size=(7, 3, 224, 224)).astype(np.float32)
        whole = backend.infer(x)
        backend.max_batch = 3
        np.testing.assert_allclose(backend.infer(x), whole, atol=1e-6)


def test_input_checks(tiny_model):
    with open_backend(tiny_model) as backend:
        with pytest.raises(TypeError, match="float32"):
            backend.infer(np.zeros((1, 3, 224, 224), dtype=np.float64))
        with pytest.raises(ValueError, match="expected shape"):
            backend.infer(np.zeros((1, 3, 64, 64), dtype=np.float32))
        assert backend.infer(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 5)


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="bad.onnx.*re-export"):
        open_backend(bad)


def test_model_without_metadata(tmp_path, tiny_model):
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="not a ctedge model"):
        open_backend(path)


def test_metadata_that_does_not_match_the_graph(tmp_path, tiny_model_factory):
    from ctedge.artifact import ModelInfo, write_info
    from ctedge.preprocess import Preprocessing

    path = tiny_model_factory(tmp_path / "m.onnx", size=224)
    model = onnx.load(str(path))
    write_info(model, ModelInfo(preprocessing=Preprocessing(size=256)))  # graph says 224
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="input is"):
        open_backend(path)
    wrong_classes = tiny_model_factory(tmp_path / "c.onnx", classes=("normal", "covid19"),
                                       info=ModelInfo())  # 2 outputs, metadata lists 5
    with pytest.raises(ModelError, match="output is"):
        open_backend(wrong_classes)


def test_resolve_and_backend_override(tmp_path, tiny_model):
    assert resolve(tiny_model)[1] == "onnxruntime"
    assert resolve(tmp_path / "x.engine")[1] == "tensorrt"
    with pytest.raises(ModelError, match="cannot run on tensorrt"):
        open_backend(tiny_model, backend="tensorrt")
    with pytest.raises(ModelError, match="no manifest.json"):
        open_backend(tmp_path)


def test_streams_split_a_batch_and_agree_with_one_session(tiny_model):
    import threading

    from ctedge.backends.onnxruntime import OnnxRuntimeBackend

    batch = np.random.default_rng(1).normal(size=(5, 3, 224, 224)).astype(np.float32)
    streams = OnnxRuntimeBackend(tiny_model, providers=["CPUExecutionProvider"])
    streams.sessions = streams.sessions + [streams.sessions[0]] * (3 - len(streams.sessions))
    single = OnnxRuntimeBackend(tiny_model, threads=1)
    assert len(single.sessions) == 1
    before = threading.active_count()
    np.testing.assert_allclose(streams.infer(batch), single.infer(batch), rtol=0, atol=1e-6)
    assert streams.infer(batch[:1]).shape == (1, 5)  # fewer images than streams
    assert threading.active_count() == before  # no thread outlives a call
