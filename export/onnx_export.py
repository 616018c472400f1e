"""PyTorch ResNet-50 -> one self-contained ONNX file with ctedge metadata, checked on ORT.

Graph: input `input` float32 (N, 3, S, S) with dynamic N, output `probabilities` (N, classes),
softmax inside the graph, opset 17, plus the class-activation maps output (export/cam.py).
The file is written only if ONNX Runtime reproduces PyTorch on the check inputs
(max |delta p| <= 1e-4 and the same top class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.artifact import ModelInfo, write_info
from ctedge.errors import ModelError
from ctedge.io import atomic_path

from .cam import add_cam
from .model import (
    Checkpoint,
    build_resnet50,
    load_checkpoint,
    model_from_checkpoint,
    require_torch,
    with_softmax,
)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
TOLERANCE = 1e-4  # max |delta p| between PyTorch and ONNX Runtime, probabilities in [0, 1]


@dataclass(frozen=True)
class ExportCheck:
    """PyTorch vs ONNX Runtime on the check inputs."""

    n_inputs: int
    max_abs_diff: float
    argmax_mismatches: int
    tolerance: float = TOLERANCE

    def __bool__(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_mismatches == 0


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    check: ExportCheck


def model_info_for(checkpoint: Checkpoint | None, classes=None, negative_class=None,
                   size: int | None = None) -> ModelInfo:
    """ModelInfo from a checkpoint's own fields plus caller options; conflicts are errors."""
    from ctedge.decision import DecisionThresholds
    from ctedge.preprocess import Preprocessing

    ck = checkpoint
    if ck is not None and ck.classes and classes and tuple(classes) != tuple(ck.classes):
        raise ModelError(f"--classes {','.join(classes)} differ from the checkpoint's "
                         f"{','.join(ck.classes)}; drop --classes")
    names = tuple(classes or (ck.classes if ck else None) or ())
    if not names:
        if ck is not None:
            raise ModelError(f"checkpoint has no class names ({ck.n_classes} outputs); "
                             "pass --classes a,b,...")
        from ctedge.artifact import PAPER_CLASSES

        names = PAPER_CLASSES
    if ck is not None and len(names) != ck.n_classes:
        raise ModelError(f"{len(names)} class names for a checkpoint with {ck.n_classes} "
                         "outputs; pass matching --classes")
    negative = negative_class or (ck.negative_class if ck else None) or names[0]
    pre = Preprocessing.from_dict(dict(ck.preprocessing)) if ck and ck.preprocessing else None
    if pre is None:
        pre = Preprocessing(size=size or 224)
    elif size and size != pre.size:
        raise ModelError(f"--size {size} differs from the checkpoint's trained size {pre.size}; "
                         "drop --size")
    thresholds = DecisionThresholds.from_dict(ck.thresholds) if ck and ck.thresholds else \
        DecisionThresholds()
    training = dict(ck.training) if ck else {"weights": "random"}
    try:
        return ModelInfo(classes=names, negative_class=negative, preprocessing=pre,
                         thresholds=thresholds, precision="fp32", training=training)
    except ValueError as exc:
        raise ModelError(f"{exc}; fix --classes/--negative") from exc


def export_onnx(checkpoint: str | Path | Checkpoint | None, out: str | Path,
                info: ModelInfo | None = None, *, check_inputs: np.ndarray | None = None,
                opset: int = OPSET, seed: int = 0) -> ExportResult:
    """Export a checkpoint (file or loaded; None: a random-weights ResNet-50) to `out`.

    info: the metadata to stamp; by default built from the checkpoint (`model_info_for`).
    check_inputs: float32 (N, 3, S, S) real slices to compare on, on top of random inputs.
    Raises ModelError, leaving no file, when ONNX Runtime disagrees with PyTorch.
    """
    torch, _ = require_torch()
    ck = checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None else \
        load_checkpoint(checkpoint)
    info = info or model_info_for(ck)
    if ck is not None:
        net = model_from_checkpoint(ck)
    else:
        torch.manual_seed(seed)
        net = build_resnet50(len(info.classes)).eval()
        info = info.with_(training={**info.training, "weights": "random"})
    net = with_softmax(net).eval()
    size = info.preprocessing.size
    inputs = _check_batch(info, check_inputs, seed)
    out = Path(out)
    with atomic_path(out) as tmp:
        _torch_export(torch, net, size, tmp, opset)
        info = _stamp(tmp, info)
        check = _compare(torch, net, tmp, inputs)
        if not check:
            raise ModelError(
                f"{out}: ONNX Runtime disagrees with PyTorch (max |delta p| "
                f"{check.max_abs_diff:.2e} > {check.tolerance:.0e} or {check.argmax_mismatches} "
                "top-class mismatches); no file written. Run again with --debug and report it")
    return ExportResult(out, info, check)


def _torch_export(torch, net, size: int, path: Path, opset: int) -> None:
    example = torch.zeros(2, 3, size, size)
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            # The TorchScript exporter gives a plain, well-tested graph for a CNN.
            torch.onnx.export(net, (example,), str(path), dynamo=False,
                              dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
                              **kwargs)
        except TypeError:  # a torch without the legacy exporter
            batch = torch.export.Dim("N", min=1, max=4096)
            torch.onnx.export(net, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=({0: batch},), **kwargs)


def _stamp(path: Path, info: ModelInfo) -> ModelInfo:
    import onnx

    model = onnx.load(str(path))
    _drop_initializer_identities(model)
    model.producer_name = "ctedge"
    info = add_cam(model, write_info(model, info))  # second output: class-activation maps
    onnx.checker.check_model(model)
    onnx.save(model, str(path))  # < 2 GB: one file, weights inside
    return info


def _drop_initializer_identities(model) -> None:
    """Remove Identity nodes whose input is a weight (the legacy exporter's shared-weight
    copies), rewiring their consumers, so tools downstream see Conv weights directly."""
    inits = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    rename = {}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not rename:
        return
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _check_batch(info: ModelInfo, real: np.ndarray | None, seed: int) -> np.ndarray:
    """Random normal inputs (the input range the network sees after normalisation) + real."""
    size = info.preprocessing.size
    rng = np.random.default_rng(seed)
    batches = [rng.standard_normal((4, 3, size, size), dtype=np.float32)]
    if real is not None and len(real):
        real = np.asarray(real, dtype=np.float32)
        if real.shape[1:] != (3, size, size):
            raise ModelError(f"check inputs have shape {real.shape[1:]}, the model takes "
                             f"(3, {size}, {size})")
        batches.append(real)
    return np.concatenate(batches)


def _compare(torch, net, path: Path, inputs: np.ndarray, chunk: int = 8) -> ExportCheck:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ref, got = [], []
    with torch.no_grad():
        for i in range(0, len(inputs), chunk):
            x = inputs[i:i + chunk]
            ref.append(net(torch.from_numpy(x)).numpy())
            got.append(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
    ref, got = np.concatenate(ref), np.concatenate(got)
    return compare_probabilities(ref, got)


def compare_probabilities(ref: np.ndarray, got: np.ndarray,
                          tolerance: float = TOLERANCE) -> ExportCheck:
    """Max |delta p| and top-class mismatches; a near-tie in the reference (top two within
    `tolerance`) is not counted as a mismatch, since either class is a correct answer."""
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > tolerance
    mismatches = int(np.sum((ref.argmax(1) != got.argmax(1)) & decisive))
    return ExportCheck(len(ref), diff, mismatches, tolerance)
