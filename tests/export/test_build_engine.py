"""`ctedge build-engine` end to end on small models: engines, manifests, the gate, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctedge.backends import open_backend
from ctedge.cli import main
from ctedge.errors import ModelError
from ctedge.export.slices import discover, load_inputs
from ctedge.preprocess import Preprocessing


def _cli(*args):
    return main(["build-engine", *map(str, args)])


def test_int8_cpu_engine_loads_through_open_backend(conv_model, slice_folder, tmp_path, capsys):
    out = tmp_path / "engine"
    assert _cli(conv_model, "--int8", "--target", "cpu", "--calib", slice_folder, "--out", out,
                "--cache-dir", tmp_path / "cache", "--parity-size", 8,
                "--cpu-backend", "onnxruntime") == 0
    printed = capsys.readouterr().out
    assert "parity int8 vs fp32 on 8 slices: PASS" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "int8"
    assert manifest["backend_choice"] == {"backend": "onnxruntime", "chosen_by": "--cpu-backend"}
    assert manifest["parity"]["passed"] and manifest["parity"]["n"] == 8
    assert manifest["calibration"]["slices"] == 16  # 24 slices - 8 for parity
    assert manifest["runtime"]["onnxruntime"]
    assert {p.name for p in out.iterdir()} == {
        "manifest.json", "conv.int8.cpu.onnx", "conv.int8-qdq-cpu.onnx",
        "conv.int8-qdq-tensorrt.onnx", "conv.fp32.onnx"}  # the FP32 fallback, by default
    assert manifest["fallback"]["margin"] == 0.1 and manifest["fallback"]["file"] == "conv.fp32.onnx"
    assert not list(tmp_path.glob(".engine.*"))  # no staging folder left
    x = load_inputs(discover(slice_folder), Preprocessing(size=32))
    with open_backend(out) as engine, open_backend(conv_model) as ref:
        assert engine.info.precision == "int8"
        agree = (engine.infer(x).argmax(1) == ref.infer(x).argmax(1)).mean()
    assert agree >= 0.9


def test_fp16_cpu_engine_without_slices_uses_random_inputs(conv_model, tmp_path):
    out = tmp_path / "fp16"
    assert _cli(conv_model, "--precision", "fp16", "--target", "cpu", "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["inputs"] == "random" and manifest["precision"] == "fp16"
    with open_backend(out) as engine:
        assert engine.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 2)


def test_bad_calibration_fails_the_gate_and_leaves_nothing(conv_model_factory, slice_folder_factory,
                                                           tmp_path, capsys):
    model = conv_model_factory(tmp_path / "bright.onnx", brightness=True, stem=True)
    good = slice_folder_factory(tmp_path / "good")
    black = slice_folder_factory(tmp_path / "black", dark=True)
    out = tmp_path / "engine"
    code = _cli(model, "--int8", "--target", "cpu", "--calib", black, "--parity-set", good,
                "--out", out, "--cache-dir", tmp_path / "cache")
    captured = capsys.readouterr()
    assert code == 2
    assert "FAIL" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "below the gate" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".engine.*"))
    # The same model calibrated on ordinary slices passes.
    assert _cli(model, "--int8", "--target", "cpu", "--calib", good, "--out", out,
                "--cache-dir", tmp_path / "cache", "--parity-size", 8) == 0


@pytest.mark.parametrize("args, message", [
    (["--int8", "--target", "cpu"], "INT8 needs calibration slices"),
    (["--int8", "--target", "cpu", "--calib", "EMPTY"], "no slices found"),
    (["--precision", "fp16", "--int8"], "contradicts"),
    (["--target", "cpu"], "choose one of fp32, fp16, int8"),
    (["--precision", "fp16", "--batch", "4,2,8"], "min,opt,max"),
    (["--precision", "fp16", "--target", "tensorrt", "--fallback-margin", "0.1"],
     "cpu target only"),
])
def test_bad_inputs_exit_2_with_one_line(conv_model, tmp_path, capsys, args, message):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in args]
    out = tmp_path / "engine"
    assert _cli(conv_model, *args, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not out.exists()


def test_not_a_ctedge_model_exits_2(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    assert _cli(junk, "--precision", "fp16", "--target", "cpu", "--out", tmp_path / "e") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable ONNX model" in err[0]
    assert not (tmp_path / "e").exists()


def test_int8_model_is_not_a_valid_source(conv_model, slice_folder, tmp_path, capsys):
    out = tmp_path / "engine"
    assert _cli(conv_model, "--int8", "--target", "cpu", "--calib", slice_folder, "--out", out,
                "--cache-dir", tmp_path / "cache") == 0
    again = _cli(out / "conv.int8-qdq-cpu.onnx", "--int8", "--target", "cpu", "--calib",
                 slice_folder, "--out", tmp_path / "twice")
    assert again == 2 and "build engines from the FP32 ONNX" in capsys.readouterr().err


def test_cpu_engine_refuses_another_runtime_or_a_changed_file(conv_model, tmp_path):
    out = tmp_path / "fp32"
    assert _cli(conv_model, "--precision", "fp32", "--target", "cpu", "--out", out,
                "--cpu-backend", "onnxruntime") == 0
    manifest_path = out / "manifest.json"
    original = manifest_path.read_text()
    data = json.loads(original)
    data["runtime"]["onnxruntime"] = "0.0.1"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"ONNX Runtime 0\.0\.1.*ctedge build-engine"):
        open_backend(out)
    data = json.loads(original)
    data["runtime"]["cpu"]["flags"] = [*data["runtime"]["cpu"]["flags"], "amx_int8", "sve"]
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="lacks; rebuild it here"):
        open_backend(out / "conv.fp32.cpu.onnx")  # the file inside the folder too
    manifest_path.write_text(original)
    engine = out / "conv.fp32.cpu.onnx"
    engine.write_bytes(engine.read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="does not match its manifest"):
        open_backend(out)


@pytest.mark.slow
def test_resnet50_int8_and_fp16_cpu_engines_on_ucsd(tmp_path, shared_data):
    """Real ResNet-50 (random weights: agreement numbers mean little) on UCSD val/test."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs the train extra (torch)")
    from ctedge.export.onnx_export import export_onnx, model_info_for
    from ctedge.train.manifest import write_manifest
    from ctedge.train.ucsd import ucsd_manifest

    model = tmp_path / "r50.onnx"
    export_onnx(None, model, model_info_for(None, ("non_covid", "covid19")))
    write_manifest(tmp_path / "ucsd.csv", ucsd_manifest(shared_data))
    common = ["--calib", tmp_path / "ucsd.csv", "--data-root", shared_data, "--target", "cpu",
              "--calib-size", 24, "--parity-size", 24, "--cache-dir", tmp_path / "cache"]
    assert _cli(model, "--int8", *common, "--out", tmp_path / "int8") == 0
    assert _cli(model, "--precision", "fp16", *common, "--out", tmp_path / "fp16") == 0
    for name in ("int8", "fp16"):
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["parity"]["passed"] and manifest["parity"]["labelled"] == 24
        with open_backend(tmp_path / name) as engine:
            assert engine.infer(np.zeros((2, 3, 224, 224), np.float32)).shape == (2, 2)
