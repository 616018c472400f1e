"""Two INT8 Q/DQ ONNX models from one calibration: the TensorRT form and the CPU form.

- TensorRT form: int8 activations *symmetric* (zero point 0), int8 weights per-channel
  symmetric on the output-channel axis, weights kept FP32 behind a Q/DQ pair, bias not
  quantised, op outputs not quantised (TensorRT fuses), as NVIDIA's Model Optimizer asks of
  ONNX Runtime's quantiser. TensorRT rejects non-zero zero points.
- CPU form: uint8 activations (asymmetric), int8 per-channel weights: ONNX Runtime's fast
  x86 path (VNNI), about 5x the symmetric form on the development CPU (FACTS.md).
The softmax and the output stay FP32 in both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ctedge.artifact import ModelInfo, write_info
from ctedge.errors import ModelError

from .calibration import Calibration, ort_method

FORMS = ("tensorrt", "cpu")
# Ops whose inputs the TensorRT form quantises; Softmax and the output stay float.
TRT_OPS = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool")


@dataclass(frozen=True)
class QuantForm:
    """One Q/DQ recipe (see the module docstring)."""

    name: str
    activation_symmetric: bool
    activation_uint8: bool
    op_types: tuple[str, ...] | None  # None: ORT's default set
    weight_qdq_pair: bool
    exclude_output_quantization: bool

    @classmethod
    def tensorrt(cls) -> QuantForm:
        return cls("tensorrt", True, False, TRT_OPS, True, True)

    @classmethod
    def cpu(cls) -> QuantForm:
        return cls("cpu", False, True, None, False, False)

    @classmethod
    def named(cls, name: str) -> QuantForm:
        if name not in FORMS:
            raise ValueError(f"quantisation form must be one of {FORMS}, got {name!r}")
        return getattr(cls, name)()

    def to_dict(self) -> dict:
        return {"form": self.name,
                "activations": "uint8 asymmetric" if self.activation_uint8 else
                ("int8 symmetric" if self.activation_symmetric else "int8"),
                "weights": "int8 per-channel symmetric"}


def prepare_for_quantization(model_path: Path, out: Path) -> Path:
    """ORT's pre-processing (shape inference, graph clean-up) so every Conv gets quantised."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet_logs():
        quant_pre_process(str(model_path), str(out), skip_symbolic_shape=False)
    return out


def quantize(prepared: Path, out: Path, calibration: Calibration, form: QuantForm,
             info: ModelInfo) -> ModelInfo:
    """Write the `form` Q/DQ model of `prepared` to `out` using cached `calibration` ranges.

    info: the FP32 model's metadata; the result carries precision int8 and the calibration.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    keep_float = float_nodes(onnx.load(str(prepared), load_external_data=False))
    extra = {
        "ActivationSymmetric": form.activation_symmetric,
        "WeightSymmetric": True,
        "QuantizeBias": not form.weight_qdq_pair,  # TensorRT form: bias stays FP32
        "AddQDQPairToWeight": form.weight_qdq_pair,
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
    }
    if form.exclude_output_quantization:
        extra["OpTypesToExcludeOutputQuantization"] = list(form.op_types or ())
        extra["ForceQuantizeNoInputCheck"] = True
    with tempfile.TemporaryDirectory(prefix="ctedge-q-") as tmp, _quiet_logs():
        raw = Path(tmp) / "q.onnx"
        try:
            quantize_static(
                str(prepared), str(raw), calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(form.op_types) if form.op_types else None,
                per_channel=True, reduce_range=False,
                activation_type=QuantType.QUInt8 if form.activation_uint8 else QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=keep_float,
                calibrate_method=ort_method(calibration.method),
                calibration_cache_path=str(calibration.ranges_path), extra_options=extra)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(f"{prepared}: ONNX Runtime could not quantise it ({exc}); "
                             "check it is an FP32 model exported by `ctedge export`") from exc
        model = onnx.load(str(raw))
    new_info = info.with_(precision="int8", quantization={
        **form.to_dict(), **calibration.to_dict(), "quantizer": _ort_version(),
        "float_nodes": "first convolution, classifier (Gemm/MatMul), softmax"})
    new_info = write_info(model, new_info)
    onnx.save(model, str(out))
    return new_info


def float_nodes(model) -> list[str]:
    """Nodes kept in float: the first convolution (it sees the raw image, whose range differs
    most between sources), the classifier (its logits decide near-ties) and the softmax. Keeping
    these two layers in FP32 costs about 3% of ResNet-50's work and is what brought the INT8
    engine of the multi-source model from 96% to the gate (models/README.md)."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    keep = [n.name for n in graph.node if n.op_type in ("Softmax", "Gemm", "MatMul")]
    first_conv = next((n for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs), None)
    if first_conv is not None:
        keep.append(first_conv.name)
    return [k for k in keep if k]


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


@contextlib.contextmanager
def _quiet_logs():
    """ORT's quantiser logs advice and prints progress; the CLI prints its own summary."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
