"""`build-engine --target cpu` picks ONNX Runtime or OpenVINO: recorded choice, the file that
serves, parity on the serving backend, and a folder that `ctedge classify` loads."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from ctedge.backends import open_backend
from ctedge.cli import main
from ctedge.errors import ModelError
from ctedge.export.build import EngineConfig
from ctedge.export.cpu_engine import BackendChoice

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="needs the openvino extra (pip install "
                                           "'ctedge[openvino]')")


def _cli(*args):
    return main(["build-engine", *map(str, args)])


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.openvino
@needs_openvino
def test_auto_records_a_measured_choice_and_classify_loads_it(conv_model, slice_folder, tmp_path,
                                                              capsys, ct_factory):
    out = tmp_path / "engine"
    assert _cli(conv_model, "--int8", "--target", "cpu", "--calib", slice_folder, "--out", out,
                "--cache-dir", tmp_path / "cache", "--parity-size", 8) == 0
    assert "cpu backend: onnxruntime" in capsys.readouterr().out
    manifest = _manifest(out)
    choice = manifest["backend_choice"]
    # Which one wins depends on the machine: only check that both were measured and recorded.
    assert choice["chosen_by"] == "measurement" and choice["backend"] == manifest["backend"]
    assert choice["onnxruntime_img_s"] > 0 and choice["openvino_img_s"] > 0
    assert choice["batch"] == 16 and choice["rounds"] >= 1
    assert manifest["parity"]["backend"] == manifest["backend"]  # gated on what serves
    files = {p.name for p in out.iterdir()}
    assert manifest["file"] in files
    assert ("conv.int8.cpu.onnx" in files) == (manifest["backend"] == "onnxruntime")
    runtime_key = manifest["backend"]  # "onnxruntime" or "openvino": the version it needs
    assert manifest["runtime"][runtime_key] and manifest["runtime"]["cpu"]["flags"]

    study = tmp_path / "study"
    from test_cli import chest_phantom

    ct_factory.make_series(study, [0.0, 2.0, 4.0], pixels=chest_phantom(256), size=256,
                           spacing=1.4)
    code = main(["classify", str(study), "--model", str(out), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["model"]["backend"] == manifest["backend"]
    assert result["study"]["slices_classified"] == 3


@pytest.mark.openvino
@needs_openvino
@pytest.mark.parametrize("precision, engine_file, side_files", [
    ("fp32", "conv.fp32.onnx", set()),  # the FP32 source, copied into the folder
    # no ORT-fused file; the FP32 model kept for the near-tie fallback
    ("int8", "conv.int8-qdq-cpu.onnx", {"conv.int8-qdq-tensorrt.onnx", "conv.fp32.onnx"}),
])
def test_forced_openvino_engine(conv_model, slice_folder, tmp_path, capsys, precision,
                                engine_file, side_files):
    from ctedge.backends.openvino import OpenVinoBackend

    out = tmp_path / precision
    calib = ["--calib", slice_folder, "--cache-dir", tmp_path / "cache", "--parity-size", 8] \
        if precision == "int8" else []
    assert _cli(conv_model, "--precision", precision, "--cpu-backend", "openvino", *calib,
                "--out", out) == 0
    assert "cpu backend: onnxruntime" not in capsys.readouterr().out  # forced: not measured
    manifest = _manifest(out)
    assert manifest["backend"] == "openvino" and manifest["target"] == "cpu"
    assert manifest["file"] == engine_file
    assert manifest["backend_choice"] == {"backend": "openvino", "chosen_by": "--cpu-backend"}
    assert manifest["runtime"]["openvino"] and "onnxruntime" not in manifest["runtime"]
    assert {p.name for p in out.iterdir()} == {"manifest.json", engine_file, *side_files}
    assert manifest["parity"]["backend"] == "openvino" and manifest["parity"]["passed"]
    x = np.random.default_rng(0).uniform(0, 1, size=(8, 3, 32, 32)).astype(np.float32)
    with open_backend(out) as engine, open_backend(conv_model) as ref:
        served = getattr(engine, "primary", engine)  # INT8: inside its near-tie fallback
        assert isinstance(served, OpenVinoBackend) and engine.info.precision == precision
        assert engine.name == "openvino" and hasattr(engine, "primary") == (precision == "int8")
        got, expected = engine.infer(x), ref.infer(x)
    if precision == "fp32":
        np.testing.assert_allclose(got, expected, atol=1e-5)
    else:
        assert np.abs(got - expected).max() < 0.1
    data = json.loads((out / "manifest.json").read_text())
    data["runtime"]["openvino"] = "2020.1.0"
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"OpenVINO 2020\.1\.0.*ctedge build-engine"):
        open_backend(out)


def test_forced_onnxruntime_is_not_measured(conv_model, tmp_path, capsys):
    out = tmp_path / "fp32"
    assert _cli(conv_model, "--precision", "fp32", "--target", "cpu", "--cpu-backend",
                "onnxruntime", "--out", out) == 0
    assert "cpu backend:" not in capsys.readouterr().out
    manifest = _manifest(out)
    assert manifest["backend"] == "onnxruntime" and manifest["parity"]["backend"] == "onnxruntime"
    assert manifest["backend_choice"] == {"backend": "onnxruntime", "chosen_by": "--cpu-backend"}


def test_without_openvino_auto_is_onnxruntime_and_forcing_it_fails_early(conv_model, tmp_path,
                                                                         capsys, monkeypatch):
    from ctedge.export import cpu_engine

    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails
    monkeypatch.setattr(cpu_engine, "openvino_installed", lambda: False)
    out = tmp_path / "auto"
    assert _cli(conv_model, "--precision", "fp32", "--target", "cpu", "--out", out) == 0
    assert _manifest(out)["backend_choice"] == {"backend": "onnxruntime",
                                                "chosen_by": "openvino not installed"}
    capsys.readouterr()
    forced = tmp_path / "forced"
    assert _cli(conv_model, "--precision", "fp32", "--cpu-backend", "openvino",
                "--out", forced) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'ctedge[openvino]'" in err[0]
    assert not forced.exists()


def test_cpu_backend_with_tensorrt_target_is_a_usage_error(conv_model, tmp_path, capsys):
    assert _cli(conv_model, "--precision", "fp16", "--target", "tensorrt", "--cpu-backend",
                "openvino", "--out", tmp_path / "e") == 2
    assert "--target cpu only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="target cpu only"):
        EngineConfig(model=conv_model, target="tensorrt", cpu_backend="onnxruntime")
    with pytest.raises(ValueError, match="cpu backend must be"):
        EngineConfig(model=conv_model, cpu_backend="tflite")


def test_backend_choice_record():
    choice = BackendChoice("openvino", "measurement", 36.2049, 62.0, 16, 5)
    assert choice.to_dict() == {"backend": "openvino", "chosen_by": "measurement",
                                "onnxruntime_img_s": 36.2, "openvino_img_s": 62.0,
                                "batch": 16, "rounds": 5}
    assert "onnxruntime 36.2 img/s, openvino 62.0 img/s" in choice.summary()
    assert BackendChoice("onnxruntime", "--cpu-backend").to_dict() == {
        "backend": "onnxruntime", "chosen_by": "--cpu-backend"}
    with pytest.raises(ValueError, match="onnxruntime or openvino"):
        BackendChoice("tensorrt", "measurement")


def test_openvino_that_cannot_load_the_model_falls_back_to_onnxruntime(conv_model, tmp_path,
                                                                       capsys, monkeypatch):
    from ctedge.backends import openvino
    from ctedge.export import cpu_engine

    def refuse(self, path, **options):
        raise ModelError(f"{path}: OpenVINO cannot read this model (unsupported op)")

    monkeypatch.setattr(cpu_engine, "openvino_installed", lambda: True)
    monkeypatch.setattr(openvino.OpenVinoBackend, "__init__", refuse)
    out = tmp_path / "fp32"
    assert _cli(conv_model, "--precision", "fp32", "--target", "cpu", "--out", out) == 0
    choice = _manifest(out)["backend_choice"]
    assert choice["backend"] == "onnxruntime" and _manifest(out)["backend"] == "onnxruntime"
    assert choice["chosen_by"].startswith("openvino failed:") and "unsupported op" in \
        choice["chosen_by"]
    assert "openvino failed" in capsys.readouterr().out
