import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch)")

from ctedge.errors import ModelError  # noqa: E402
from ctedge.preprocess import Preprocessing  # noqa: E402
from ctedge.train.augment import Augmentation  # noqa: E402
from ctedge.train.weights import apply_initial_state, initial_state  # noqa: E402


def test_imagenet_download_failure_says_how_to_pass_a_local_file(monkeypatch, tmp_path):
    import torchvision

    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached file
    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    with pytest.raises(ModelError, match=r"--weights /path/to/resnet50-0676ba61\.pth"):
        initial_state("imagenet")


def test_local_state_dict_loads_except_a_different_classifier(tmp_path):
    import torchvision

    from ctedge.export.model import build_resnet50

    source = torchvision.models.resnet50(weights=None)  # 1000-class fc, like ImageNet's
    path = tmp_path / "r50.pth"
    torch.save(source.state_dict(), path)
    net = build_resnet50(2)
    summary = apply_initial_state(net, initial_state(str(path)))
    assert summary["skipped"] == ["fc.bias", "fc.weight"]
    assert torch.equal(net.conv1.weight, source.conv1.weight)
    assert initial_state("none") is None
    with pytest.raises(ModelError, match="not found"):
        initial_state(str(tmp_path / "missing.pth"))
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="not a ResNet-50"):
        initial_state(str(tmp_path / "bad.pth"))


def test_augmentation_keeps_shape_and_black_padding():
    pp = Preprocessing(size=32)
    black = np.zeros((20, 20), dtype=np.uint8)
    x = torch.from_numpy(np.stack([pp.from_image(black)] * 4))
    gen = torch.Generator().manual_seed(0)
    out = Augmentation(brightness=0, contrast=0)(x, pp.mean, pp.std, gen)
    assert out.shape == x.shape
    # a black image stays black: padding and rotation bring in air, never grey
    assert torch.allclose(out, x, atol=1e-5)
    bright = torch.from_numpy(np.stack([pp.from_image(np.full((20, 20), 200, np.uint8))] * 4))
    moved = Augmentation()(bright, pp.mean, pp.std, gen)
    assert not torch.allclose(moved, bright)
    assert torch.equal(Augmentation.none()(bright, pp.mean, pp.std, gen).round(decimals=4),
                       bright.round(decimals=4))


def test_local_views_zoom_into_the_slice_without_padding():
    pp = Preprocessing(size=32, mean=(0, 0, 0), std=(1, 1, 1))
    halves = np.zeros((32, 32), dtype=np.uint8)
    halves[:, :16] = 255  # left half white, right half black
    x = torch.from_numpy(np.stack([pp.from_image(halves)] * 64))
    still = dict(rotate_deg=0, zoom=0, shift=0, flip=0, brightness=0, contrast=0)
    local = Augmentation(**still, local=1.0)
    out = local(x, pp.mean, pp.std, torch.Generator().manual_seed(0))
    again = local(x, pp.mean, pp.std, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # deterministic under a seed
    white = out[:, 0].mean(dim=(1, 2))
    # a 1.5-2.5x view of one part: some views see mostly one half, none the whole slice
    assert (white > 0.7).any() and (white < 0.3).any()
    assert not torch.allclose(out, x)
    bright = torch.from_numpy(np.stack([pp.from_image(np.full((32, 32), 200, np.uint8))] * 16))
    seen = local(bright, pp.mean, pp.std, torch.Generator().manual_seed(1))
    assert seen.min() > 0.7  # the window stays inside the slice: no black padding comes in
    off = Augmentation(**still)(x, pp.mean, pp.std, torch.Generator().manual_seed(0))
    assert torch.allclose(off, x, atol=1e-5)
