import pytest

from ctedge.artifact import ModelInfo, read_info
from ctedge.decision import DecisionThresholds
from ctedge.errors import ModelError
from ctedge.preprocess import Preprocessing


def test_info_round_trips_through_onnx_metadata(tmp_path, tiny_model_factory):
    info = ModelInfo(classes=("non_covid", "covid19"), negative_class="non_covid",
                     preprocessing=Preprocessing(size=64, window_level=-550),
                     thresholds=DecisionThresholds(probability=0.7, min_slices=2),
                     training={"data": "synthetic"})
    path = tiny_model_factory(tmp_path / "m.onnx", classes=info.classes, size=64, info=info)
    read = read_info(path)
    assert read.classes == info.classes and read.preprocessing == info.preprocessing
    assert read.thresholds == info.thresholds and read.training == {"data": "synthetic"}
    assert len(read.graph_sha256) == 64


def test_graph_hash_changes_with_weights(tmp_path, tiny_model_factory):
    a = read_info(tiny_model_factory(tmp_path / "a.onnx", seed=0)).graph_sha256
    b = read_info(tiny_model_factory(tmp_path / "b.onnx", seed=1)).graph_sha256
    assert a != b


def test_invalid_info_is_refused():
    with pytest.raises(ValueError, match="negative class"):
        ModelInfo(classes=("a", "b"), negative_class="normal")
    with pytest.raises(ModelError, match="not a ctedge model"):
        ModelInfo.from_metadata_map({}, "x.onnx")
    with pytest.raises(ModelError, match="metadata is invalid"):
        ModelInfo.from_metadata_map({"ctedge": '{"schema": 1}'}, "x.onnx")


def test_corrupt_file_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="bad.onnx"):
        read_info(bad)
