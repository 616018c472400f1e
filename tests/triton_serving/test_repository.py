"""`ctedge export-triton`: the repository layout and a config.pbtxt that Triton's ModelConfig
protobuf accepts, carrying the artifact's names, shapes, dtypes and ctedge metadata."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_model
from triton_serving.triton_helpers import needs_client

from ctedge.artifact import ModelInfo, file_sha256
from ctedge.cli import main

pytestmark = needs_client


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def read_config(path):
    from ctedge.triton.repository import parse_config

    return parse_config(path.read_text(), str(path))


def test_onnx_repository(capsys, tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    model = make_tiny_model(tmp_path / "m.onnx", classes=("normal", "covid19", "cap"), size=96)
    code, out, err = run(capsys, "export-triton", model, "--out", tmp_path / "repo",
                         "--max-batch", "48", "--queue-delay-us", "500", "--instances", "2")
    assert code == 0, err
    folder = tmp_path / "repo" / "ctedge"
    assert sorted(p.name for p in folder.rglob("*")) == ["1", "config.pbtxt", "model.onnx"]
    assert file_sha256(folder / "1" / "model.onnx") == file_sha256(model)
    cfg = read_config(folder / "config.pbtxt")
    assert cfg.name == "ctedge" and cfg.platform == "onnxruntime_onnx" and not cfg.backend
    assert cfg.max_batch_size == 48
    (inp,), (outp,) = cfg.input, cfg.output
    assert (inp.name, list(inp.dims), inp.data_type) == ("input", [3, 96, 96], mc.TYPE_FP32)
    assert (outp.name, list(outp.dims), outp.data_type) == ("probabilities", [3], mc.TYPE_FP32)
    sizes = list(cfg.dynamic_batching.preferred_batch_size)
    assert sizes == sorted(sizes) and sizes[-1] == 48 and all(s <= 48 for s in sizes)
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    (group,) = cfg.instance_group
    assert group.count == 2 and group.kind == mc.ModelInstanceGroup.KIND_GPU
    info = ModelInfo.from_json(cfg.parameters["ctedge"].string_value)
    assert info.classes == ("normal", "covid19", "cap") and info.preprocessing.size == 96
    assert "wrote" in out


def test_python_backend_repository(capsys, tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    model = make_tiny_model(tmp_path / "m.onnx")
    code, _, err = run(capsys, "export-triton", model, "--out", tmp_path / "repo", "--name",
                       "lungs", "--python-backend")
    assert code == 0, err
    folder = tmp_path / "repo" / "lungs"
    assert (folder / "1" / "model.py").read_text().startswith('"""Triton Python-backend')
    assert file_sha256(folder / "1" / "ctedge.onnx") == file_sha256(model)
    cfg = read_config(folder / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == 64
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert cfg.parameters["ctedge_model_file"].string_value == "ctedge.onnx"


def fake_tensorrt_engine(folder, tiny_model, profile_max=32):
    """An engine folder as build-engine writes it for TensorRT (the plan bytes are opaque)."""
    from ctedge.engine_manifest import EngineManifest, write_manifest

    folder.mkdir()
    plan = folder / "m.fp16.plan"
    plan.write_bytes(b"not a real engine: export only copies it")
    write_manifest(folder, EngineManifest(
        file=plan.name, backend="tensorrt", target="tensorrt", precision="fp16",
        engine_sha256=file_sha256(plan), onnx_sha256=file_sha256(tiny_model),
        classes=("normal", "covid19"), negative_class="normal",
        preprocessing={"size": 128}, runtime={"profile": {"min": 1, "opt": 16,
                                                          "max": profile_max}}))
    return folder


def test_tensorrt_engine_repository(capsys, tmp_path, tiny_model):
    engine = fake_tensorrt_engine(tmp_path / "engine", tiny_model)
    code, _, err = run(capsys, "export-triton", engine, "--out", tmp_path / "repo",
                       "--max-batch", "32")
    assert code == 0, err
    folder = tmp_path / "repo" / "ctedge"
    assert (folder / "1" / "model.plan").read_bytes() == (engine / "m.fp16.plan").read_bytes()
    cfg = read_config(folder / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and list(cfg.input[0].dims) == [3, 128, 128]
    assert list(cfg.output[0].dims) == [2]
    assert json.loads(cfg.parameters["ctedge"].string_value)["precision"] == "fp16"


def test_batch_beyond_engine_profile_is_refused(capsys, tmp_path, tiny_model):
    engine = fake_tensorrt_engine(tmp_path / "engine", tiny_model, profile_max=16)
    code, _, err = run(capsys, "export-triton", engine, "--out", tmp_path / "repo")
    assert code == 2 and "--max-batch 16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "repo" / "ctedge").exists()


def test_existing_model_folder_is_left_alone(capsys, tmp_path, tiny_model):
    folder = tmp_path / "repo" / "ctedge"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "export-triton", tiny_model, "--out", tmp_path / "repo")
    assert code == 2 and "already exists" in err
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["ctedge"]
    assert (folder / "keep.txt").read_text() == "mine"


def test_not_a_ctedge_model(capsys, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    code, _, err = run(capsys, "export-triton", bad, "--out", tmp_path / "repo")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "repo" / "ctedge").exists()


def test_bad_names_are_refused(capsys, tmp_path, tiny_model):
    code, _, err = run(capsys, "export-triton", tiny_model, "--out", tmp_path / "r",
                       "--name", "../x")
    assert code == 2 and "name" in err


def test_invalid_config_text_is_an_error():
    from ctedge.triton.repository import RepositoryError, parse_config

    with pytest.raises(RepositoryError, match="not a valid Triton ModelConfig"):
        parse_config('name: "x"\nmax_batch_size: "many"\n')
    with pytest.raises(RepositoryError, match="not a valid Triton ModelConfig"):
        parse_config('name: "x"\nunknown_field: 3\n')


def test_cpu_engine_folder_needs_python_backend(capsys, tmp_path):
    """A build-engine CPU folder goes whole into the Python-backend model (its manifest keeps
    the engine's runtime checks); Triton's own ORT backend would not read that manifest."""
    import onnxruntime as ort

    from ctedge.engine_manifest import EngineManifest, cpu_runtime, write_manifest

    engine = tmp_path / "engine"
    engine.mkdir()
    onnx_file = make_tiny_model(engine / "m.int8-qdq-cpu.onnx", size=32)
    write_manifest(engine, EngineManifest(
        file=onnx_file.name, backend="onnxruntime", target="cpu", precision="int8",
        engine_sha256=file_sha256(onnx_file), onnx_sha256=file_sha256(onnx_file),
        classes=("normal", "covid19", "viral_pneumonia", "bacterial_pneumonia", "tuberculosis"),
        negative_class="normal", preprocessing={"size": 32},
        runtime=cpu_runtime(ort.__version__)))
    code, _, err = run(capsys, "export-triton", engine, "--out", tmp_path / "repo")
    assert code == 2 and "--python-backend" in err
    code, _, err = run(capsys, "export-triton", engine, "--out", tmp_path / "repo",
                       "--python-backend")
    assert code == 0, err
    version = tmp_path / "repo" / "ctedge" / "1"
    assert sorted(p.name for p in (version / "ctedge-engine").iterdir()) == [
        "m.int8-qdq-cpu.onnx", "manifest.json"]
    cfg = read_config(version.parent / "config.pbtxt")
    assert cfg.parameters["ctedge_model_file"].string_value == "ctedge-engine"
    assert list(cfg.input[0].dims) == [3, 32, 32]
