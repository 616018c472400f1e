"""The cached optimised ONNX Runtime graph: saved once, reused, same outputs, never fatal."""

from __future__ import annotations

import numpy as np

from ctedge.backends import ort_cache
from ctedge.backends.onnxruntime import OnnxRuntimeBackend


def test_second_session_loads_the_saved_optimised_graph(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("CTEDGE_CACHE", str(tmp_path / "cache"))
    batch = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
    first = OnnxRuntimeBackend(tiny_model)
    assert first.optimized_from is None
    saved = list((tmp_path / "cache" / "ort").iterdir())
    assert [p.name.endswith(ort_cache.SUFFIX) for p in saved] == [True]  # no temp left over
    second = OnnxRuntimeBackend(tiny_model)
    assert second.optimized_from == str(saved[0])
    np.testing.assert_allclose(second.infer(batch), first.infer(batch), rtol=0, atol=1e-6)
    assert second.info == first.info


def test_a_damaged_cache_file_is_replaced(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("CTEDGE_CACHE", str(tmp_path / "cache"))
    OnnxRuntimeBackend(tiny_model)
    (saved,) = (tmp_path / "cache" / "ort").iterdir()
    saved.write_bytes(b"not onnx")
    backend = OnnxRuntimeBackend(tiny_model)
    assert backend.optimized_from is None
    assert OnnxRuntimeBackend(tiny_model).optimized_from == str(saved)  # rewritten


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch, tiny_model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CTEDGE_CACHE", str(blocker))
    backend = OnnxRuntimeBackend(tiny_model)
    assert backend.optimized_from is None and backend.info.classes


def test_the_key_changes_with_the_model_and_the_runtime():
    a = ort_cache.cache_key("0" * 64, "1.32.0")
    assert a != ort_cache.cache_key("1" * 64, "1.32.0")
    assert a != ort_cache.cache_key("0" * 64, "1.33.0")
