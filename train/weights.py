"""Initial weights and which layers train.

`paper` trainable layers = the paper's "last fully connected layer plus the last three
convolutional layers": `fc`, and in the last bottleneck block `layer4[2]` the three convolutions
`conv1`, `conv2`, `conv3` together with their BatchNorms `bn1`, `bn2`, `bn3` (a convolution
whose following BatchNorm is frozen cannot re-centre its output). Every other module is frozen,
and frozen BatchNorms stay in eval mode so their running statistics keep the pretrained values.
"""

from __future__ import annotations

from pathlib import Path

from ctedge.errors import ModelError

PAPER_TRAINABLE = ("fc", "layer4.2.conv1", "layer4.2.bn1", "layer4.2.conv2", "layer4.2.bn2",
                   "layer4.2.conv3", "layer4.2.bn3")
IMAGENET_FILE = "resnet50-0676ba61.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V1


def initial_state(weights: str) -> dict | None:
    """A torchvision ResNet-50 state_dict for `weights` ("imagenet", "none" or a .pth path)."""
    import torch

    if weights == "none":
        return None
    if weights == "imagenet":
        return _download_imagenet()
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found; pass --weights imagenet, none, or a "
                         "torchvision ResNet-50 state_dict (.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable state_dict ({type(exc).__name__}); pass a "
                         "torchvision ResNet-50 .pth") from exc
    if isinstance(state, dict) and "model_state" in state:  # a ctedge checkpoint
        state = state["model_state"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ModelError(f"{path}: not a ResNet-50 state_dict (no conv1.weight); pass a "
                         "torchvision ResNet-50 .pth")
    return state


def _download_imagenet() -> dict:
    import torchvision

    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, socket timeouts, HTTP errors, hash mismatches
        raise ModelError(
            f"could not download ImageNet weights from {weights.url} ({type(exc).__name__}: "
            f"{exc}); on a machine without internet, download {IMAGENET_FILE} elsewhere, copy "
            "it here and pass --weights /path/to/" + IMAGENET_FILE) from exc


def apply_initial_state(net, state: dict | None) -> dict:
    """Load `state` into `net` except a classifier of another width; returns a summary."""
    if state is None:
        return {"loaded": 0, "skipped": []}
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    skipped = sorted(k for k in state if k not in usable)
    missing = sorted(k for k in own if k not in usable and not k.startswith("fc."))
    if missing:
        raise ModelError(f"initial weights lack {len(missing)} ResNet-50 tensors (e.g. "
                         f"{missing[0]}); pass a torchvision ResNet-50 state_dict")
    net.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": skipped}


def set_trainable(net, trainable: str) -> list[str]:
    """Freeze per `trainable` ("all" or "paper"); returns the names of trainable parameters."""
    if trainable == "all":
        for p in net.parameters():
            p.requires_grad_(True)
    else:
        for name, p in net.named_parameters():
            p.requires_grad_(name.rsplit(".", 1)[0] in PAPER_TRAINABLE)
    return [n for n, p in net.named_parameters() if p.requires_grad]


def set_train_mode(net, trainable: str) -> None:
    """net.train(), but frozen BatchNorms stay in eval mode (keep pretrained statistics)."""
    import torch

    net.train()
    if trainable == "all":
        return
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and name not in PAPER_TRAINABLE:
            module.eval()
