"""FP16 ONNX: weights and activations in float16, float32 input and output, Softmax in FP32.

Built with ONNX Runtime's own converter (`onnxruntime.transformers.float16`, no extra
dependency). It is the input TensorRT 11 needs for an FP16 engine (strong typing: precision
comes from the ONNX), and it runs, slowly, on ONNX Runtime CPU so its numerics are checked here.
"""

from __future__ import annotations

from pathlib import Path

from ctedge.artifact import ModelInfo, write_info

# Kept in FP32: the softmax (exp overflows/underflows in fp16 and the output is a probability)
# plus ORT's default block list (ops without fp16 kernels or with fp16 accuracy problems).
FP32_OPS = ("Softmax",)


def convert_fp16(model_path: Path, out: Path, info: ModelInfo) -> ModelInfo:
    """Write the FP16 version of the FP32 model at `model_path` to `out`; returns its info."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(model_path))
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    new_info = write_info(half, info.with_(precision="fp16", quantization={
        "form": "fp16", "fp32_ops": list(FP32_OPS), "io": "float32"}))
    onnx.save(half, str(out))
    return new_info
