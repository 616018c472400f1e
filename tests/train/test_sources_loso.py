"""Multi-source training: source manifest, SARS-CoV-2 block split, balanced sampling,
leave-one-source-out folds, cross-source augmentation and the 3-D weight import."""

import numpy as np
import pytest

from ctedge.errors import DataError
from ctedge.train.loso import folds, stratified_cap
from ctedge.train.sources import (
    SourceRow,
    balanced_weights,
    is_source_manifest,
    read_source_manifest,
    sarscov2_rows,
    write_source_manifest,
)


def _sarscov2_tree(root, n_covid=95, n_non=61):
    for folder, stem, n in (("COVID", "Covid", n_covid), ("non-COVID", "Non-Covid", n_non)):
        (root / folder).mkdir(parents=True)
        for i in range(1, n + 1):
            (root / folder / f"{stem} ({i}).jpg").write_bytes(b"")
    return root


def test_sarscov2_split_keeps_every_number_block_on_one_side(tmp_path):
    rows = sarscov2_rows(_sarscov2_tree(tmp_path / "sarscov2-ct"), block=10)
    assert len(rows) == 95 + 61
    sides = {}
    for r in rows:
        assert sides.setdefault(r.patient_id, r.split) == r.split, r.patient_id
    for folder in ("COVID", "non-COVID"):
        mine = [r for r in rows if f"/{folder}/" in r.path]
        numbers = [int(r.path.rsplit("(", 1)[1].split(")")[0]) for r in mine]
        by_split = {s: [n for n, r in zip(numbers, mine, strict=True) if r.split == s]
                    for s in ("train", "val", "test")}
        assert all(by_split.values()), by_split
        # contiguous ranges in file-number order (natural order, not "1, 10, 100, 11")
        assert max(by_split["train"]) < min(by_split["val"]) <= max(by_split["val"]) \
            < min(by_split["test"])
        # blocks are runs of consecutive numbers
        for pid in {r.patient_id for r in mine}:
            ns = sorted(n for n, r in zip(numbers, mine, strict=True) if r.patient_id == pid)
            assert ns == list(range(ns[0], ns[-1] + 1))


def test_sarscov2_rows_need_numbered_files(tmp_path):
    (tmp_path / "COVID").mkdir()
    (tmp_path / "COVID" / "odd.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="Covid"):
        sarscov2_rows(tmp_path)


def test_source_manifest_round_trip(tmp_path):
    rows = [SourceRow("a/x.png", "covid19", "p1", "ucsd", "train"),
            SourceRow("dicom/P", "non_covid", "s1", "dicom", "train", "labels.npy", 3)]
    path = tmp_path / "m.csv"
    write_source_manifest(path, rows)
    assert is_source_manifest(path)
    assert read_source_manifest(path) == rows
    assert rows[1].is_study and not rows[0].is_study
    plain = tmp_path / "plain.csv"
    plain.write_text("path,label,patient_id\nx.png,a,p\n")
    assert not is_source_manifest(plain)
    with pytest.raises(DataError, match="missing columns"):
        read_source_manifest(plain)


def test_balanced_weights_give_every_source_and_class_the_same_mass():
    sources = ["a"] * 90 + ["a"] * 10 + ["b"] * 5 + ["b"] * 5
    labels = [0] * 90 + [1] * 10 + [0] * 5 + [1] * 5
    w = balanced_weights(sources, labels)
    assert w.sum() == pytest.approx(1.0)
    for s, c in (("a", 0), ("a", 1), ("b", 0), ("b", 1)):
        mask = [(x, y) == (s, c) for x, y in zip(sources, labels, strict=True)]
        assert w[mask].sum() == pytest.approx(0.25)


def test_each_fold_leaves_its_source_out_and_never_trains_on_test_rows():
    sites = np.array(["ucsd"] * 6 + ["sarscov2"] * 6 + ["dicom"] * 3)
    splits = np.array(["train", "val", "test"] * 5)
    made = folds(sites, splits)
    assert [f.held_out for f in made] == ["dicom", "sarscov2", "ucsd"]
    for f in made:
        assert not (f.train & (sites == f.held_out)).any()
        assert (f.test == (sites == f.held_out)).all()
        assert not (f.train & (splits == "test")).any()
        assert f.train[(sites != f.held_out) & (splits != "test")].all()
    with pytest.raises(DataError, match="two sources"):
        folds(np.array(["a", "a"]), np.array(["train", "train"]))


def test_stratified_cap_keeps_class_proportions():
    labels = np.array([0] * 300 + [1] * 100)
    idx = stratified_cap(labels, 100, seed=1)
    assert len(idx) == 100 and (np.diff(idx) > 0).all()
    assert (labels[idx] == 1).sum() == 25
    assert len(stratified_cap(labels[:50], 100)) == 50


torch = pytest.importorskip("torch", reason="needs the train extra (torch)")


def test_cross_source_augmentation_is_deterministic_under_a_seed():
    from ctedge.preprocess import Preprocessing
    from ctedge.train.augment import Augmentation

    pp = Preprocessing(size=32)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([pp.from_image(rng.integers(0, 255, (40, 40), np.uint8))
                                   for _ in range(4)]))
    aug = Augmentation.cross_source()
    a = aug(x, pp.mean, pp.std, torch.Generator().manual_seed(7))
    b = aug(x, pp.mean, pp.std, torch.Generator().manual_seed(7))
    c = aug(x, pp.mean, pp.std, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and torch.isfinite(a).all()


def test_jpeg_augmentation_is_deterministic_and_compresses_only_the_chosen_slices():
    from ctedge.preprocess import Preprocessing
    from ctedge.train.augment import Augmentation

    pp = Preprocessing(size=64)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.stack([pp.from_image(rng.integers(0, 255, (64, 64), np.uint8))
                                   for _ in range(8)]))
    only_jpeg = Augmentation(0, 0, 0, 0, 0, 0, jpeg=0.5)
    a = only_jpeg(x, pp.mean, pp.std, torch.Generator().manual_seed(3))
    b = only_jpeg(x, pp.mean, pp.std, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = [not torch.allclose(a[i], x[i], atol=1e-5) for i in range(len(x))]
    assert 0 < sum(changed) < len(x)  # p = 0.5 on 8 slices: some, not all (seeded)
    grey = [a[:, c] * pp.std[c] + pp.mean[c] for c in range(3)]  # undo the normalisation
    for i in np.flatnonzero(changed):  # the three channels stay one grey image
        assert torch.allclose(grey[0][i], grey[1][i], atol=1e-5)
        assert torch.allclose(grey[1][i], grey[2][i], atol=1e-5)
    with pytest.raises(ValueError):
        Augmentation(jpeg=1.5)


def test_inflated_3d_weights_map_onto_resnet50():
    import torchvision

    from ctedge.export.model import build_resnet50
    from ctedge.train.weights import apply_initial_state, inflated_to_resnet50

    # a tiny "I3ResNet-152": ResNet-152 shapes with a depth axis, as Astra/Merlin store them
    ref = torchvision.models.resnet152(weights=None).state_dict()
    gen = torch.Generator().manual_seed(0)
    state3d = {}
    for k, v in ref.items():
        if v.ndim == 4:
            depth = 3 if v.shape[-1] > 1 else 1
            state3d[k] = torch.randn(v.shape[0], v.shape[1], depth, *v.shape[2:],
                                     generator=gen).to(torch.bfloat16)
        else:
            state3d[k] = v.clone()
    state3d.pop("fc.weight")
    state3d.pop("fc.bias")
    mapped = inflated_to_resnet50(state3d)
    assert "layer3.6.conv1.weight" not in mapped and "layer3.5.conv1.weight" in mapped
    net = build_resnet50(2)
    summary = apply_initial_state(net, mapped)
    assert summary["skipped"] == []
    expected = state3d["conv1.weight"].float().sum(dim=2)
    assert torch.equal(net.conv1.weight.detach(), expected)
    # the 2-D net on an image equals the 3-D conv on a volume constant along z (centre slice)
    x = torch.randn(1, 3, 32, 32, generator=gen)
    vol = x.unsqueeze(2).repeat(1, 1, 3, 1, 1)
    w3 = state3d["conv1.weight"].float()
    y3 = torch.nn.functional.conv3d(vol, w3, stride=(1, 2, 2), padding=(1, 3, 3))[:, :, 1]
    y2 = torch.nn.functional.conv2d(x, expected, stride=2, padding=3)
    assert torch.allclose(y3, y2, atol=1e-4)
    with pytest.raises(Exception, match="conv1"):
        inflated_to_resnet50({"layer1.0.conv1.weight": torch.zeros(1, 1, 1, 1, 1)})
