"""The two Q/DQ forms from one calibration, checked in the graph; FP16 numerics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctedge.artifact import file_sha256, read_info
from ctedge.export.calibration import CalibrationConfig, calibrate
from ctedge.export.fp16 import convert_fp16
from ctedge.export.quantize import QuantForm, prepare_for_quantization, quantize
from ctedge.export.slices import discover, load_inputs
from ctedge.preprocess import Preprocessing


@pytest.fixture
def quantized(conv_model, slice_folder, tmp_path):
    info = read_info(conv_model)
    prepared = prepare_for_quantization(conv_model, tmp_path / "prep.onnx")
    calib = calibrate(prepared, file_sha256(conv_model), discover(slice_folder),
                      info.preprocessing, CalibrationConfig(cache_dir=tmp_path / "cache"))
    out = {}
    for form in (QuantForm.tensorrt(), QuantForm.cpu()):
        path = tmp_path / f"{form.name}.onnx"
        out[form.name] = (path, quantize(prepared, path, calib, form, info))
    return out, calib


def _graph(path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return model.graph, inits


def _qdq(graph, inits, op="QuantizeLinear"):
    out = []
    for node in graph.node:
        if node.op_type == op:
            axis = next((a.i for a in node.attribute if a.name == "axis"), None)
            out.append((node, inits.get(node.input[1]), inits.get(node.input[2]), axis))
    return out


def test_tensorrt_form_is_symmetric_per_channel_with_float_outputs(quantized):
    path, info = quantized[0]["tensorrt"]
    graph, inits = _graph(path)
    dq = _qdq(graph, inits, "DequantizeLinear")
    assert dq and all(zp.dtype == np.int8 and not zp.any() for _, _, zp, _ in dq)
    weights = {"w2"}  # conv1 (the first conv) and fc stay float: float_nodes
    # Weights stay FP32 behind a Q/DQ pair, per channel on axis 0.
    q_weights = [(n, s, ax) for n, s, _, ax in _qdq(graph, inits)
                 if n.input[0] in {"w1", "w2", "fc_w"}]
    assert {n.input[0] for n, _, _ in q_weights} == weights
    assert all(ax == 0 and s.size > 1 for n, s, ax in q_weights)
    assert all(inits[w].dtype == np.float32 for w in weights)
    # Bias not quantised, softmax fed by float Gemm output, graph output float.
    assert not any(zp.dtype == np.int32 for _, _, zp, _ in dq)
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    producer = next(n for n in graph.node if softmax.input[0] in n.output)
    assert producer.op_type == "Gemm"
    assert graph.output[0].type.tensor_type.elem_type == 1
    assert info.precision == "int8" and info.quantization["form"] == "tensorrt"


def test_cpu_form_has_uint8_activations_and_int8_per_channel_weights(quantized):
    path, info = quantized[0]["cpu"]
    graph, inits = _graph(path)
    dq = _qdq(graph, inits, "DequantizeLinear")
    activations = [zp for n, _, zp, _ in dq if n.input[0] not in inits]
    assert activations and all(zp.dtype == np.uint8 for zp in activations)
    conv_weights = [(zp, ax, s) for n, s, zp, ax in dq if n.input[0].startswith("w")]
    assert conv_weights
    assert all(zp.dtype == np.int8 and not zp.any() and ax == 0 and s.size == 8
               for zp, ax, s in conv_weights)
    assert info.quantization["form"] == "cpu"


def test_both_forms_come_from_one_calibration(quantized):
    forms, calib = quantized
    ranges = json.loads(calib.ranges_path.read_text())["data"]
    # conv2's input (conv1 stays float, so the graph input is not quantised)
    def value(v):
        return float(np.ravel(v["data"] if isinstance(v, dict) else v)[0])

    lo, hi = (value(ranges["r1"][k]) for k in ("lowest", "highest"))
    scales = {}
    for name, (path, info) in forms.items():
        graph, inits = _graph(path)
        node = next(n for n in graph.node if n.op_type == "QuantizeLinear"
                    and n.input[0] == "r1")
        scales[name] = float(inits[node.input[1]])
        assert info.quantization["key"] == calib.key
    assert scales["tensorrt"] == pytest.approx(max(abs(lo), abs(hi)) / 127, rel=1e-5)
    assert scales["cpu"] == pytest.approx((max(hi, 0) - min(lo, 0)) / 255, rel=1e-5)


def test_fp16_model_keeps_float_io_and_fp32_softmax(conv_model, slice_folder, tmp_path):
    import onnx

    from ctedge.backends import open_backend

    info = convert_fp16(conv_model, tmp_path / "half.onnx", read_info(conv_model))
    assert info.precision == "fp16"
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in model.graph.initializer if t.name.startswith("w")} == {
        onnx.TensorProto.FLOAT16}
    x = load_inputs(discover(slice_folder), Preprocessing(size=32))
    with open_backend(conv_model) as ref, open_backend(tmp_path / "half.onnx") as half:
        p32, p16 = ref.infer(x), half.infer(x)
    assert np.max(np.abs(p32 - p16)) <= 5e-3
    assert (p32.argmax(1) == p16.argmax(1)).all()


def test_first_conv_and_classifier_stay_float(conv_model_factory, tmp_path):
    import onnx

    from ctedge.export.quantize import float_nodes

    plain = onnx.load(str(conv_model_factory(tmp_path / "m.onnx")))
    assert sorted(float_nodes(plain)) == ["conv1", "fc", "softmax"]
    stemmed = onnx.load(str(conv_model_factory(tmp_path / "s.onnx", stem=True)))
    assert sorted(float_nodes(stemmed)) == ["fc", "softmax", "stem"]  # conv1 is quantised then
