"""Stochastic weight averaging: the running mean itself, and a tiny run that keeps it."""

import json

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from ctedge.preprocess import Preprocessing  # noqa: E402
from ctedge.train.averaging import WeightAverage  # noqa: E402
from ctedge.train.config import TrainConfig  # noqa: E402
from ctedge.train.dataset import load_slices  # noqa: E402
from ctedge.train.loop import train  # noqa: E402
from ctedge.train.manifest import scan_folder  # noqa: E402
from ctedge.train.splits import patient_split  # noqa: E402


def _net_at(value: float, batches: int):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for tensor in (*net.parameters(), net[1].running_mean):
            tensor.fill_(value)
    net[1].num_batches_tracked.fill_(batches)
    return net


def test_the_average_is_the_mean_of_every_update_and_restores():
    average = WeightAverage(_net_at(1.0, 1))
    for value, batches in ((2.0, 2), (6.0, 3)):
        average.update(_net_at(value, batches))
    assert average.count == 3
    state = average.net.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        assert torch.allclose(state[name], torch.full_like(state[name], 3.0)), name
    assert int(state["1.num_batches_tracked"]) == 3  # integer buffers follow the live net
    assert not any(p.requires_grad for p in average.net.parameters())
    again = WeightAverage.restore(_net_at(0.0, 0), average.state())
    again.update(_net_at(7.0, 4))
    assert again.count == 4 and float(again.net[0].weight[0, 0]) == pytest.approx(4.0)


def test_config_rejects_a_negative_start():
    with pytest.raises(ValueError, match="average_from"):
        TrainConfig(average_from=-1)


def test_a_tiny_run_validates_and_saves_the_average(image_folder, tmp_path):
    pp = Preprocessing(size=32)
    split = patient_split(scan_folder(image_folder), 0.25, seed=0)
    classes = ("clear", "lesion")
    train_set = load_slices(split.train, image_folder, classes, pp)
    val_set = load_slices(split.val, image_folder, classes, pp)
    before = torch.get_num_threads()
    try:
        config = TrainConfig(epochs=2, batch_size=4, precision="fp32", max_steps=2,
                             switch="never", keep="last", average_from=2, seed=1, threads=1)
        train(train_set, val_set, config, tmp_path, "clear", pp)
    finally:
        torch.set_num_threads(before)
    log = [json.loads(x) for x in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert [r["averaged_steps"] for r in log] == [0, 2]
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model_state"]
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    averaged, live = last["average"]["model_state"], last["model_state"]
    assert all(torch.equal(best[k], averaged[k]) for k in best)
    assert not torch.equal(best["fc.weight"], live["fc.weight"])


def test_frozen_batchnorm_keeps_the_initial_statistics():
    from ctedge.export.model import build_resnet50
    from ctedge.train.weights import set_train_mode

    net = build_resnet50(2)
    set_train_mode(net, "all", "frozen")
    before = net.bn1.running_mean.clone()
    net(torch.randn(4, 3, 32, 32))
    assert torch.equal(net.bn1.running_mean, before) and not net.bn1.training
    assert net.training and net.bn1.weight.requires_grad  # scale and shift still train
    set_train_mode(net, "all")
    net(torch.randn(4, 3, 32, 32))
    assert not torch.equal(net.bn1.running_mean, before)
    with pytest.raises(ValueError, match="batchnorm"):
        TrainConfig(batchnorm="off")
