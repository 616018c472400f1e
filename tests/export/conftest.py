"""Fixtures for the export tests: a small conv model with real per-channel Conv weights,
and folders of synthetic PNG slices made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctedge.artifact import ModelInfo, write_info
from ctedge.preprocess import Preprocessing

CLASSES = ("normal", "covid19")
SIZE = 32


def make_conv_model(path: Path, classes=CLASSES, size: int = SIZE, seed: int = 0,
                    brightness: bool = False, stem: bool = False) -> Path:
    """Conv-ReLU-Conv + residual Add - ReLU - GAP - Gemm - Softmax with ctedge metadata:
    small, but with everything the quantiser treats specially (per-channel Conv weights,
    bias, a residual Add, a Gemm, the FP32 softmax).

    brightness=False: random weights. brightness=True: a classifier whose answer is
    "mean brightness above mid-grey" (conv1 ~ a box filter), so its predictions vary over
    ordinary slices and an INT8 model calibrated on black images visibly breaks it.
    stem=True: an identity 1x1 Conv first, so that conv1 is quantised (the quantiser keeps a
    model's first convolution in float, see ctedge.export.quantize.float_nodes).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n = len(classes)

    def init(name, shape, scale):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [init("w1", (8, 3, 3, 3), 0.4), init("b1", (8,), 0.1),
             init("w2", (8, 8, 3, 3), 0.2), init("b2", (8,), 0.1),
             init("fc_w", (n, 8), 1.0), init("fc_b", (n,), 0.2)]
    if brightness:
        w1 = np.full((8, 3, 3, 3), 1 / 27, np.float32) * rng.uniform(0.5, 1.5, (8, 1, 1, 1))
        fc_w = np.zeros((n, 8), np.float32)
        fc_w[1] = 4.0
        fc_b = np.zeros(n, np.float32)
        fc_b[1] = -4.0 * 8 * 0.4  # brightness threshold: mean ReLU response 0.4
        inits[0] = numpy_helper.from_array(w1.astype(np.float32), "w1")
        inits[1] = numpy_helper.from_array(np.zeros(8, np.float32), "b1")
        inits[2] = numpy_helper.from_array((inits_w2 := rng.normal(0, 0.02, (8, 8, 3, 3)))
                                           .astype(np.float32), "w2")
        inits[3] = numpy_helper.from_array(np.zeros(8, np.float32), "b2")
        inits[4] = numpy_helper.from_array(fc_w, "fc_w")
        inits[5] = numpy_helper.from_array(fc_b, "fc_b")
        del inits_w2
    first = "input"
    nodes = []
    if stem:
        inits.append(numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1),
                                             "w0"))
        nodes.append(helper.make_node("Conv", ["input", "w0"], ["x0"], name="stem"))
        first = "x0"
    nodes += [
        helper.make_node("Conv", [first, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    write_info(model, ModelInfo(classes=tuple(classes), negative_class=classes[0],
                                preprocessing=Preprocessing(size=size)))
    onnx.save(model, str(path))
    return path


def make_slice_folder(root: Path, per_class: int = 12, seed: int = 0,
                      dark: bool = False) -> Path:
    """<root>/<class>/<i>.png grey slices, 40x48 (non-square); `dark`: nearly black images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if dark:
                image = rng.integers(0, 4, (40, 48))
            else:
                base = rng.uniform(20, 235)
                yy, xx = np.mgrid[0:40, 0:48]
                blob = 80 * np.exp(-((yy - 20) ** 2 + (xx - 10 - 25 * c) ** 2) / 60)
                image = np.clip(base + blob + rng.normal(0, 25, (40, 48)), 0, 255)
            Image.fromarray(image.astype(np.uint8), mode="L").save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def conv_model(tmp_path) -> Path:
    return make_conv_model(tmp_path / "conv.onnx")


@pytest.fixture
def conv_model_factory():
    return make_conv_model


@pytest.fixture
def slice_folder(tmp_path) -> Path:
    return make_slice_folder(tmp_path / "slices")


@pytest.fixture
def slice_folder_factory():
    return make_slice_folder
