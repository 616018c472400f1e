"""Shared fixtures: the real data beside the checkout, and a tiny ctedge model made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctedge.artifact import PAPER_CLASSES, ModelInfo, write_info
from ctedge.preprocess import Preprocessing

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_STUDY = REPO / "samples" / "P001-every8th"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


def make_tiny_model(path: Path, classes=PAPER_CLASSES, size: int = 224, seed: int = 0,
                    info: ModelInfo | None = None) -> Path:
    """A few-KB ctedge model: global average pool -> linear -> softmax, random weights.

    It keeps the artifact contract (float32 (N, 3, size, size) in, probabilities out,
    ctedge metadata) so runtime plumbing can be tested without torch.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n = len(classes)
    weight = numpy_helper.from_array(rng.normal(0, 2, (3, n)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.normal(0, 0.5, (n,)).astype(np.float32), "bias")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    info = info or ModelInfo(classes=tuple(classes), negative_class=classes[0],
                             preprocessing=Preprocessing(size=size))
    write_info(model, info)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return make_tiny_model(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_model_factory():
    """`make_tiny_model(path, classes=..., size=..., seed=..., info=...)` for variants."""
    return make_tiny_model


@pytest.fixture
def ct_factory():
    """Builders of synthetic DICOM (tests/synthetic_dicom.py): make_ct, make_series,
    make_dose_report, make_enhanced_ct."""
    import synthetic_dicom

    return synthetic_dicom
