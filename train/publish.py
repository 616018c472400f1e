"""Publish a trained checkpoint as a compact ctedge ONNX model (FP16-stored weights, FP32 graph).

    checkpoint --(ctedge.export: FP32 ONNX, checked against PyTorch)--> fp32.onnx
               --(compact_fp16_weights)--> model.onnx (about half the size)

The published file is checked twice on real slices: against the FP32 graph with the same
FP16-rounded weights (must be identical: it is the same computation) and against the PyTorch
model with the original FP32 weights. FP16 storage rounds each weight by up to 2^-11 relative,
so probabilities move a little: the gate is no top-class change where PyTorch's top two classes
are more than `DECISIVE_GAP` apart, and max |delta p| <= `MAX_DELTA_P`; both are reported.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.artifact import read_info, write_info
from ctedge.errors import ModelError
from ctedge.export.compact import compact_fp16_weights, round_fp16_weights
from ctedge.io import atomic_path

DECISIVE_GAP = 0.02
MAX_DELTA_P = 0.05


@dataclass(frozen=True)
class PublishResult:
    path: Path
    size_bytes: int
    max_abs_diff_vs_torch: float
    mean_abs_diff_vs_torch: float
    top1_agreement_vs_torch: float
    decisive_top1_mismatches: int
    identical_to_rounded_fp32: bool
    checked_inputs: int

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "path"}, "path": str(self.path)}


def publish(checkpoint: str | Path, out: str | Path, check_inputs: np.ndarray,
            training_extra: dict | None = None) -> PublishResult:
    """Export `checkpoint` to a compact ONNX at `out`; raise ModelError if checks fail."""
    import onnx
    import onnxruntime as ort
    import torch

    from ctedge.export.model import load_checkpoint, model_from_checkpoint, with_softmax
    from ctedge.export.onnx_export import export_onnx

    ck = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_onnx(ck, fp32_path, check_inputs=check_inputs[:16])
        fp32 = onnx.load(str(fp32_path))
    info = read_info_from_proto(fp32)
    if training_extra:
        info = info.with_(training={**info.training, **training_extra})
    compact = compact_fp16_weights(fp32)
    write_info(compact, info)
    onnx.checker.check_model(compact)
    rounded = round_fp16_weights(fp32)

    def run(model):
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"input": check_inputs[i:i + 16]})[0]
                               for i in range(0, len(check_inputs), 16)])

    got = run(compact)
    identical = bool(np.array_equal(got, run(rounded)))
    net = with_softmax(model_from_checkpoint(ck)).eval()
    with torch.no_grad():
        ref = np.concatenate([net(torch.from_numpy(check_inputs[i:i + 16])).numpy()
                              for i in range(0, len(check_inputs), 16)])
    delta = np.abs(got - ref)
    diff = float(delta.max())
    changed = got.argmax(1) != ref.argmax(1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = int((changed & ((top2[:, 1] - top2[:, 0]) > DECISIVE_GAP)).sum())
    if not identical or diff > MAX_DELTA_P or decisive:
        raise ModelError(f"compact model check failed (identical to rounded FP32: {identical}, "
                         f"max |delta p| {diff:.2e}, decisive top-class changes {decisive}); "
                         f"nothing written to {out}")
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(compact, str(tmp))
    read_info(out)  # the runtime can read what was written
    return PublishResult(out, out.stat().st_size, diff, float(delta.mean()),
                         float(1 - changed.mean()), decisive, identical, len(check_inputs))


def read_info_from_proto(model):
    from ctedge.artifact import METADATA_KEY, ModelInfo

    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ModelError("exported model has no ctedge metadata")
    return ModelInfo.from_metadata_map(props)
