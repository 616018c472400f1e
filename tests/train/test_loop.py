"""A tiny real training run (ResNet-50 at 32 px, a few steps) through the library and the CLI."""

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")

from ctedge.preprocess import Preprocessing  # noqa: E402
from ctedge.train.config import TrainConfig  # noqa: E402
from ctedge.train.dataset import load_slices  # noqa: E402
from ctedge.train.loop import class_weights, resolve_precision, train  # noqa: E402
from ctedge.train.manifest import scan_folder  # noqa: E402
from ctedge.train.splits import patient_split  # noqa: E402

PP = Preprocessing(size=32)


def _sets(image_folder):
    samples = scan_folder(image_folder)
    split = patient_split(samples, 0.25, seed=0)
    classes = ("clear", "lesion")
    return (load_slices(split.train, image_folder, classes, PP),
            load_slices(split.val, image_folder, classes, PP))


@pytest.fixture
def restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tiny_run_writes_log_checkpoints_and_resumes(image_folder, tmp_path, restore_threads):
    import torch

    from ctedge.export.model import load_checkpoint

    train_set, val_set = _sets(image_folder)
    # one thread: two OpenMP threads on a shared 2-core box spin against other processes
    config = TrainConfig(epochs=2, batch_size=4, precision="fp32", max_steps=2,
                         switch="epoch", switch_epoch=2, patience=5, seed=1, threads=1)
    out = tmp_path / "run"
    result = train(train_set, val_set, config, out, "clear", PP)
    lines = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert [r["optimizer"] for r in lines] == ["adam", "sgd"]
    assert lines[1]["lr"] == pytest.approx(1e-3)
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["val_accuracy"] <= 1 for r in lines)
    ck = load_checkpoint(out / "best.pt")
    assert ck.classes == ("clear", "lesion") and ck.negative_class == "clear"
    assert ck.preprocessing["size"] == 32
    assert ck.training["best_epoch"] == result.best_epoch
    raw = torch.load(out / "best.pt", weights_only=True)
    assert {"model_state", "classes", "negative_class", "preprocessing", "thresholds",
            "training"} <= set(raw)
    # resume one more epoch from last.pt
    more = TrainConfig(**{**config.to_dict(), "epochs": 3})
    resumed = train(train_set, val_set, more, out, "clear", PP, resume=True)
    assert resumed.epochs_run == 3
    assert len((out / "epochs.jsonl").read_text().splitlines()) == 3


def test_paper_trainable_layers_freeze_the_rest():
    from ctedge.export.model import build_resnet50
    from ctedge.train.weights import set_train_mode, set_trainable

    net = build_resnet50(2)
    names = set_trainable(net, "paper")
    assert {n.rsplit(".", 1)[0] for n in names} == {
        "fc", "layer4.2.conv1", "layer4.2.bn1", "layer4.2.conv2", "layer4.2.bn2",
        "layer4.2.conv3", "layer4.2.bn3"}
    set_train_mode(net, "paper")
    assert not net.bn1.training and net.layer4[2].bn3.training
    assert all(p.requires_grad for p in net.parameters()) is False
    set_trainable(net, "all")
    assert all(p.requires_grad for p in net.parameters())


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 4 / 2])
    from ctedge.errors import DataError

    with pytest.raises(DataError, match="no training images"):
        class_weights(np.array([0, 0]), 2)


def test_precision_resolution():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")


def test_config_validates():
    with pytest.raises(ValueError, match="trainable"):
        TrainConfig(trainable="some")
    with pytest.raises(ValueError, match="without pretrained weights"):
        TrainConfig(trainable="paper", weights="none")
    assert TrainConfig(weights="imagenet", trainable="paper").trainable == "paper"


@pytest.mark.slow
def test_cli_repeated_random_splits(image_folder, tmp_path, capsys, restore_threads):
    from ctedge.cli import main

    code = main(["train", str(image_folder), "--out", str(tmp_path / "out"), "--split", "random",
                 "--repeats", "2", "--epochs", "1", "--max-steps", "1", "--batch-size", "4",
                 "--size", "32", "--precision", "fp32", "--threads", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == 2
    assert [r["dir"].rsplit("/", 1)[1] for r in summary["per_run"]] == ["seed-0", "seed-1"]
    assert (tmp_path / "out" / "seed-1" / "best.pt").is_file()


def test_cli_rejects_a_bad_switch(capsys):
    from ctedge.cli import main

    assert main(["train", "x.csv", "--out", "o", "--switch", "sometimes"]) == 2
    assert "epoch:N, plateau:P or never" in capsys.readouterr().err
