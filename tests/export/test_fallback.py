"""The near-tie FP32 fallback of CPU engines: built, kept, used, checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctedge.backends import open_backend
from ctedge.backends.fallback import FallbackBackend, near_ties
from ctedge.cli import main
from ctedge.errors import ModelError
from ctedge.export.slices import discover, load_inputs
from ctedge.preprocess import Preprocessing


def _build(model, calib, out, cache, *extra):
    return main(["build-engine", str(model), "--int8", "--target", "cpu", "--calib", str(calib),
                 "--out", str(out), "--cache-dir", str(cache), "--parity-size", "8",
                 "--cpu-backend", "onnxruntime", *map(str, extra)])


def test_near_ties_are_rows_with_a_small_top_two_gap():
    probs = np.array([[0.5, 0.5], [0.54, 0.46], [0.9, 0.1], [0.2, 0.35, 0.45]][:3])
    assert near_ties(probs, 0.1).tolist() == [True, True, False]
    assert near_ties(np.array([[0.2, 0.35, 0.45]]), 0.11).tolist() == [True]
    assert not near_ties(probs, 0.0).any()


def test_every_slice_under_the_margin_gets_the_fp32_answer(conv_model, slice_folder, tmp_path,
                                                           capsys):
    x = load_inputs(discover(slice_folder), Preprocessing(size=32))
    plain, everything = tmp_path / "plain", tmp_path / "all"
    assert _build(conv_model, slice_folder, plain, tmp_path / "c", "--fallback-margin", 0) == 0
    assert "fallback" not in capsys.readouterr().out
    assert json.loads((plain / "manifest.json").read_text())["fallback"] == {}
    assert not (plain / "conv.fp32.onnx").exists()
    # margin 1: every slice is a "near tie", so the engine answers exactly as FP32 does
    assert _build(conv_model, slice_folder, everything, tmp_path / "c",
                  "--fallback-margin", 1) == 0
    assert "fp32 fallback: 8 of 8 parity slices re-run" in capsys.readouterr().out
    manifest = json.loads((everything / "manifest.json").read_text())
    assert manifest["fallback"]["parity_rerun"] == 1.0
    assert manifest["parity"]["top1_agreement"] == 1.0
    with open_backend(conv_model) as ref, open_backend(plain) as int8, \
            open_backend(everything) as engine:
        assert isinstance(engine, FallbackBackend) and not isinstance(int8, FallbackBackend)
        reference, quantised, answered = ref.infer(x), int8.infer(x), engine.infer(x)
        assert engine.rerun == engine.slices == len(x)
        assert engine.description["fallback"] == {"precision": "fp32", "margin": 1.0}
    assert np.abs(quantised - reference).max() > 1e-4  # INT8 alone does move probabilities
    np.testing.assert_allclose(answered, reference, atol=1e-6)


def test_a_changed_fallback_file_is_refused(conv_model, slice_folder, tmp_path):
    out = tmp_path / "engine"
    assert _build(conv_model, slice_folder, out, tmp_path / "c", "--fallback-margin", 1) == 0
    kept = out / "conv.fp32.onnx"
    kept.write_bytes(kept.read_bytes() + b"\x00")
    with open_backend(out) as engine, pytest.raises(ModelError, match="changed after the build"):
        engine.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_classify_says_how_many_slices_were_re_run(conv_model, slice_folder, tmp_path, capsys,
                                                   ct_factory):
    from test_cli import chest_phantom

    out = tmp_path / "engine"
    assert _build(conv_model, slice_folder, out, tmp_path / "c", "--fallback-margin", 1) == 0
    study = tmp_path / "study"
    ct_factory.make_series(study, [0.0, 2.0, 4.0], pixels=chest_phantom(256), size=256,
                           spacing=1.4)
    capsys.readouterr()
    assert main(["classify", str(study), "--model", str(out), "--format", "json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["precision"] == "int8"
    assert model["fallback"] == {"precision": "fp32", "margin": 1.0, "slices_rerun": 3}
    assert main(["classify", str(study), "--model", str(out)]) == 0
    assert "int8 on onnxruntime, 3 near-tie slices re-run in fp32" in capsys.readouterr().out
