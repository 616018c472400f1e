"""The one ResNet-50 builder and the checkpoint format, shared by training and export.

Checkpoint format (a `torch.save`d dict, documented in docs/engines.md):

    {
      "format": "ctedge-checkpoint", "schema": 1, "arch": "resnet50",
      "model_state": <state_dict of build_resnet50(len(classes))>,
      "classes": [...], "negative_class": "normal",
      "preprocessing": Preprocessing.to_dict(),      # optional, default lung window 224
      "thresholds": DecisionThresholds.to_dict(),    # optional
      "training": {...},                             # optional free-form summary
    }

A plain torchvision ResNet-50 state_dict (fc of any width) is accepted too; the class names
then come from the caller. Needs the `train` extra (torch, torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ctedge.errors import BackendUnavailable, ModelError

CHECKPOINT_FORMAT = "ctedge-checkpoint"
CHECKPOINT_SCHEMA = 1
FEATURES = 2048  # ResNet-50's pooled feature width


def require_torch():
    """Import torch and torchvision, or say which extra to install."""
    try:
        import torch
        import torchvision
    except ImportError as exc:
        raise BackendUnavailable(
            f"exporting and training need PyTorch ({exc.name} is missing); "
            "install it with: pip install 'ctedge[train]'") from exc
    return torch, torchvision


def build_resnet50(n_classes: int):
    """torchvision ResNet-50 (no pretrained weights) with fc replaced by Linear(2048, n_classes)."""
    torch, torchvision = require_torch()
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Linear(FEATURES, n_classes)
    return net


def with_softmax(net):
    """Wrap a logits network so its output is probabilities (the artifact contract)."""
    torch, _ = require_torch()
    return torch.nn.Sequential(net, torch.nn.Softmax(dim=1))


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds; optional fields are None when absent."""

    model_state: dict
    n_classes: int
    classes: tuple[str, ...] | None = None
    negative_class: str | None = None
    preprocessing: dict | None = None
    thresholds: dict | None = None
    training: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, net, classes, negative_class: str,
                    preprocessing: dict | None = None, thresholds: dict | None = None,
                    training: dict | None = None) -> Path:
    """Write a checkpoint in the format above, atomically."""
    torch, _ = require_torch()
    from ctedge.io import atomic_path

    classes = [str(c) for c in classes]
    if negative_class not in classes:
        raise ValueError(f"negative class {negative_class!r} is not one of {classes}")
    payload = {
        "format": CHECKPOINT_FORMAT, "schema": CHECKPOINT_SCHEMA, "arch": "resnet50",
        "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "classes": classes, "negative_class": negative_class,
        "preprocessing": preprocessing, "thresholds": thresholds, "training": training or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a ctedge checkpoint or a plain ResNet-50 state_dict (weights only, no code run)."""
    torch, _ = require_torch()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found; pass a file saved by `ctedge train` "
                         "or the word `new`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights-only errors all mean the same here
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}); "
                         "pass a file saved by `ctedge train`") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: checkpoint holds a {type(data).__name__}, expected a dict; "
                         "pass a file saved by `ctedge train`")
    if "model_state" in data:
        state = data["model_state"]
        meta = data
    else:  # a plain state_dict
        state, meta = data, {}
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape)[1:] != (FEATURES,):
        raise ModelError(f"{path}: not a ResNet-50 state_dict (no fc.weight of width {FEATURES}); "
                         "pass a file saved by `ctedge train`")
    classes = meta.get("classes")
    return Checkpoint(
        model_state=state, n_classes=int(fc.shape[0]),
        classes=tuple(classes) if classes else None,
        negative_class=meta.get("negative_class"),
        preprocessing=meta.get("preprocessing"), thresholds=meta.get("thresholds"),
        training=dict(meta.get("training") or {}),
    )


def model_from_checkpoint(checkpoint: Checkpoint):
    """A ResNet-50 in eval mode carrying the checkpoint's weights (strict load)."""
    net = build_resnet50(checkpoint.n_classes)
    try:
        net.load_state_dict(checkpoint.model_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ModelError(f"checkpoint weights do not fit ResNet-50 ({first}); "
                         "pass a file saved by `ctedge train`") from exc
    return net.eval()
