"""The harness end to end on tiny models with --quick: schema, outputs, failing clearly."""

import json

import pytest

from ctedge.benchmarks import harness, schema
from ctedge.benchmarks.config import BenchConfig
from ctedge.benchmarks.harness import run_bench, write_outputs
from ctedge.errors import BackendUnavailable, CtedgeError


def test_throughput_and_ort_peer_follow_the_schema(quick_config):
    config = quick_config(sections=("throughput", "peers", "import_time"), peers=("ort-fp32",))
    report = run_bench(config)
    schema.validate(report)
    rows = report["sections"]["throughput"]["rows"]
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["timing"]["n"] >= 2 and r["peak_rss_bytes"] > 0 for r in rows)
    (peer,) = report["sections"]["peers"]["rows"]
    assert peer["status"] == "ok" and len(peer["engine_speedup"]["rounds"]) == 2
    imp = report["sections"]["import_time"]
    assert "torch" not in imp["heavy_modules_loaded"]
    assert report["machine"]["cpu"]["usable_cores"] >= 1
    assert "not a medical device" in report["disclaimer"]


def test_outputs_are_written_and_reload(quick_config, tmp_path):
    config = quick_config(sections=("throughput",))
    report = run_bench(config)
    written = write_outputs(report, tmp_path / "out", plots=False)
    names = sorted(p.name for p in written)
    assert names == ["bench.json", "report.md"]
    again = json.loads((tmp_path / "out" / "bench.json").read_text())
    schema.validate(again)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "not a medical device" in md and "## Model throughput" in md
    assert not list((tmp_path / "out").glob("*.part"))  # atomic: no leftovers


def test_missing_optional_peer_is_reported_not_fatal(quick_config, monkeypatch):
    real = harness.installed
    monkeypatch.setattr(harness, "installed", lambda m: m != "openvino" and real(m))
    config = quick_config(sections=("peers",), peers=("openvino-fp32", "ort-fp32"),
                          requested_peers=False)
    rows = {r["peer"]: r for r in run_bench(config)["sections"]["peers"]["rows"]}
    assert rows["openvino-fp32"]["status"] == "not installed (pip install 'ctedge[openvino]')"
    assert rows["ort-fp32"]["status"] == "ok"


def test_requested_missing_peer_fails_before_measuring(quick_config, monkeypatch):
    real = harness.installed
    monkeypatch.setattr(harness, "installed", lambda m: m != "torch" and real(m))
    config = quick_config(sections=("peers",), peers=("torch-fp32",), requested_peers=True)
    with pytest.raises(BackendUnavailable, match=r"torch-fp32.*pip install 'ctedge\[train\]'"):
        run_bench(config)


def test_torch_peer_refuses_a_model_that_is_not_resnet50(quick_config):
    if not harness.installed("torch"):
        pytest.skip("train extra (torch) not installed")
    config = quick_config(sections=("peers",), peers=("torch-fp32",), requested_peers=True)
    with pytest.raises(BackendUnavailable, match="not a ResNet-50"):
        run_bench(config)


def test_requested_tensorrt_backend_missing_fails_clearly(quick_config):
    if harness.installed("tensorrt"):
        pytest.skip("tensorrt is installed here; this checks the message when it is not")
    with pytest.raises(BackendUnavailable, match=r"tensorrt.*pip install 'ctedge\[tensorrt\]'"):
        run_bench(quick_config(sections=("throughput",), backends=("tensorrt",)))


def test_requested_installed_backend_runs(quick_config):
    report = run_bench(quick_config(sections=("throughput",), backends=("onnxruntime",)))
    assert {r["backend"] for r in report["sections"]["throughput"]["rows"]} == {"onnxruntime"}


def test_accuracy_needs_a_reference(quick_config, tmp_path, tiny_model_factory):
    from ctedge.artifact import ModelInfo
    from ctedge.preprocess import Preprocessing

    info = ModelInfo(classes=("non_covid", "covid19"), negative_class="non_covid",
                     preprocessing=Preprocessing(size=32), precision="fp16")
    fp16 = tiny_model_factory(tmp_path / "half.onnx", classes=info.classes, size=32, info=info)
    with pytest.raises(CtedgeError, match="FP32 .onnx reference"):
        run_bench(quick_config(sections=("accuracy",), models=(fp16,)))


def _image_folder(root, labels, n=4):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(
                root / label / f"{i}.png")
    return root


def _as_int8(path):
    """Re-stamp a tiny model as INT8 (a second precision stands in for an INT8 build)."""
    import onnx

    from ctedge.artifact import read_info, write_info

    model = onnx.load(str(path))
    write_info(model, read_info(path).with_(precision="int8"))
    onnx.save(model, str(path))
    return path


def test_accuracy_on_a_labelled_folder(quick_config, small_model, tmp_path, tiny_model_factory):
    data = _image_folder(tmp_path / "set", ("non_covid", "covid19"))
    other = _as_int8(tiny_model_factory(tmp_path / "other.onnx",
                                        classes=("non_covid", "covid19"), size=32, seed=1))
    config = quick_config(sections=("accuracy",), models=(small_model, other), data=data,
                          split="all", limit=0)
    section = run_bench(config)["sections"]["accuracy"]
    assert section["data"]["n"] == 8
    assert section["data"]["per_class"] == {"non_covid": 4, "covid19": 4}
    ref, cand = section["models"]
    assert ref["reference"] and ref["agreement"]["top1_agreement"] == 1.0
    assert ref["agreement"]["max_abs_dp"] == 0.0
    assert cand["parity"]["precision"] == "int8" and "passed" in cand["parity"]
    assert cand["agreement"]["max_abs_dp"] > 0  # different weights: must differ
    for key in ("sensitivity", "specificity", "ppv", "npv", "auc"):
        assert key in cand["metrics"]["abnormal"] and key in cand["deltas"]["abnormal"]


def test_labels_outside_the_model_classes_fail(quick_config, tmp_path):
    data = _image_folder(tmp_path / "set", ("tuberculosis",), n=1)
    config = quick_config(sections=("accuracy",), data=data, split="all")
    section = run_bench(config)["sections"]["accuracy"]
    assert "tuberculosis" in section["error"] and "not classes of the model" in section["error"]


def test_config_validation():
    with pytest.raises(ValueError, match="unknown section"):
        BenchConfig(sections=("speed",))
    with pytest.raises(ValueError, match="unknown peer"):
        BenchConfig(peers=("tensorflow",))
    with pytest.raises(ValueError, match="batch sizes"):
        BenchConfig(batch_sizes=(0,))
    quick = BenchConfig.quick()
    assert quick.profile == "quick" and quick.batch_sizes == (1, 2)
    json.dumps(quick.to_dict())  # JSON-ready


def _engine_folder(folder, model, precision="int8", backend="onnxruntime"):
    """An engine folder as `ctedge build-engine` lays it out: the file plus manifest.json."""
    import shutil

    folder.mkdir()
    shutil.copy(model, folder / "engine.onnx")
    (folder / "manifest.json").write_text(json.dumps(
        {"file": "engine.onnx", "backend": backend, "target": "cpu", "precision": precision}))
    return folder


def test_engine_choice_prefers_the_cpu_int8_engine(small_model, tmp_path):
    import shutil

    from ctedge.benchmarks.models import describe, engine_model, reference_model

    quantized = _as_int8(shutil.copy(small_model, tmp_path / "q.onnx"))
    folder = _engine_folder(tmp_path / "cpu-int8", quantized)
    models = [describe(small_model), describe(folder)]
    assert reference_model(models).path == small_model
    chosen = engine_model(models, None)
    assert chosen.path == folder and chosen.precision == "int8" and chosen.is_engine_folder
    assert engine_model(models, small_model).path == small_model  # --engine wins


def test_engine_folder_for_a_missing_backend_is_skipped(quick_config, small_model, tmp_path):
    folder = _engine_folder(tmp_path / "trt", small_model, "fp16", backend="tensorrt")
    (folder / "engine.onnx").rename(folder / "engine.plan")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "file": "engine.plan"}))
    if harness.installed("tensorrt"):
        pytest.skip("tensorrt is installed here")
    report = run_bench(quick_config(sections=("throughput",), models=(small_model, folder)))
    (skipped,) = report["models_skipped"]
    assert skipped["backend"] == "tensorrt" and "pip install 'ctedge[tensorrt]'" in \
        skipped["reason"]
    assert {r["backend"] for r in report["sections"]["throughput"]["rows"]} == {"onnxruntime"}
