"""Class-activation maps: graph surgery, backends, FP16/INT8 engines keep them, parity."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest

from ctedge.artifact import read_info
from ctedge.backends import open_backend
from ctedge.cli import main
from ctedge.errors import ModelError
from ctedge.export.cam import CAM_OUTPUT, add_cam, add_cam_file, has_cam, strip_cam
from ctedge.export.parity import map_correlations

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _inputs(n=6, size=32, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def test_maps_average_to_the_logits_and_leave_probabilities_unchanged(conv_model, tmp_path):
    out = tmp_path / "cam.onnx"
    info = add_cam_file(conv_model, out)
    assert info.cam["output"] == CAM_OUTPUT and read_info(out).cam == info.cam
    x = _inputs()
    with open_backend(conv_model) as old, open_backend(out) as new:
        assert not old.has_maps and new.has_maps
        probs, maps = new.infer_maps(x)
        assert maps.shape == (6, 2, 32, 32) and maps.dtype == np.float32
        np.testing.assert_allclose(new.infer(x), old.infer(x), atol=1e-6)
        np.testing.assert_allclose(probs, old.infer(x), atol=1e-6)
        # CAM property of GAP -> Gemm: the mean of a class's map is the class logit.
        np.testing.assert_allclose(_softmax(maps.mean(axis=(2, 3))), probs, atol=1e-5)
        with pytest.raises(ModelError, match="no class-activation maps"):
            old.infer_maps(x)


def test_strip_restores_a_one_output_model(conv_model):
    model = onnx.load(str(conv_model))
    add_cam(model)
    assert has_cam(model)
    info = strip_cam(model)
    assert not has_cam(model) and info.cam == {}
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert not any(n.name.startswith("ctedge_cam/") for n in model.graph.node)
    onnx.checker.check_model(model)


def test_a_model_without_a_gap_head_is_refused(conv_model, tmp_path):
    model = onnx.load(str(conv_model))
    for node in model.graph.node:
        if node.op_type == "GlobalAveragePool":
            node.op_type = "GlobalMaxPool"
    with pytest.raises(ModelError, match="GlobalAveragePool"):
        add_cam(model)


def test_cli_adds_maps_to_an_existing_onnx(conv_model, tmp_path, capsys):
    out = tmp_path / "with-maps.onnx"
    assert main(["export", str(conv_model), "--out", str(out)]) == 0
    assert "class-activation maps" in capsys.readouterr().out
    assert read_info(out).cam
    assert main(["export", str(tmp_path / "missing.onnx"), "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(not HAS_OPENVINO, reason="needs the openvino extra")
def test_openvino_returns_the_same_maps(conv_model, tmp_path):
    out = tmp_path / "cam.onnx"
    add_cam_file(conv_model, out)
    x = _inputs()
    with open_backend(out) as ort, open_backend(out, "openvino") as ov:
        assert ov.has_maps
        np.testing.assert_allclose(ov.infer(x), ort.infer(x), atol=1e-5)
        _, ort_maps = ort.infer_maps(x)
        _, ov_maps = ov.infer_maps(x)
        np.testing.assert_allclose(ov_maps, ort_maps, atol=1e-4)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_engines_keep_maps_and_parity_reports_their_correlation(precision, conv_model,
                                                                slice_folder, tmp_path):
    model = tmp_path / "cam.onnx"
    add_cam_file(conv_model, model)
    out = tmp_path / f"engine-{precision}"
    args = ["build-engine", str(model), "--precision", precision, "--target", "cpu",
            "--out", str(out), "--cpu-backend", "onnxruntime"]
    if precision == "int8":
        args += ["--calib", str(slice_folder), "--cache-dir", str(tmp_path / "cache"),
                 "--parity-size", "8"]
    assert main(args) == 0
    parity = json.loads((out / "manifest.json").read_text())["parity"]
    assert parity["map_correlation"] > 0.9 and parity["map_correlation_min"] <= \
        parity["map_correlation"]
    x = _inputs()
    with open_backend(out) as engine, open_backend(model) as ref:
        assert engine.has_maps and engine.info.precision == precision
        probs, maps = engine.infer_maps(x)
        _, ref_maps = ref.infer_maps(x)
        assert maps.shape == ref_maps.shape
        assert np.mean(map_correlations(ref_maps, maps)) > 0.9
    if precision == "int8":  # the TensorRT Q/DQ form stays single-output (see build.py)
        trt_form = onnx.load(str(out / "cam.int8-qdq-tensorrt.onnx"))
        assert not has_cam(trt_form)


def test_map_correlation_is_one_for_equal_maps_and_low_for_unrelated():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 2, 4, 4))
    assert np.allclose(map_correlations(a, 2 * a + 1), 1.0)
    assert abs(np.mean(map_correlations(a, rng.standard_normal(a.shape)))) < 0.5
