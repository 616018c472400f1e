from collections import Counter

import pytest

from ctedge.errors import DataError
from ctedge.train.manifest import Sample, read_manifest, scan_folder, write_manifest
from ctedge.train.splits import Split, official_split, patient_split, repeated_patient_splits


def _samples(n_patients=20, per=3):
    out = []
    for p in range(n_patients):
        label = "covid19" if p % 2 else "non_covid"
        out += [Sample(f"img/{p}_{k}.png", label, f"pt{p}") for k in range(per)]
    return out


def _patients(part):
    return {s.patient_id for s in part}


def test_patient_split_is_disjoint_and_about_three_to_one():
    split = patient_split(_samples(24), 0.25, seed=3)
    assert not _patients(split.train) & _patients(split.val)
    assert len(_patients(split.val)) == 6  # round(0.25 * 12) per class, two classes
    assert Counter(s.label for s in split.val) == {"covid19": 9, "non_covid": 9}


def test_repeated_splits_differ_by_seed_and_repeat_exactly():
    samples = _samples()
    runs = repeated_patient_splits(samples, repeats=5)
    assert [r.seed for r in runs] == [0, 1, 2, 3, 4]
    assert len({frozenset(_patients(r.val)) for r in runs}) > 1
    again = repeated_patient_splits(samples, repeats=5)
    assert [_patients(r.val) for r in runs] == [_patients(r.val) for r in again]


def test_test_rows_never_move_into_train_or_val():
    samples = _samples() + [Sample("t.png", "covid19", "held", split="test")]
    split = patient_split(samples, seed=0)
    assert [s.patient_id for s in split.test] == ["held"]
    assert "held" not in _patients(split.train) | _patients(split.val)


def test_split_refuses_a_patient_on_both_sides():
    a, b = Sample("a.png", "x", "p1"), Sample("b.png", "x", "p1")
    with pytest.raises(DataError, match="patient p1 is in both train and val"):
        Split([a], [b])


def test_official_split_uses_the_column(tmp_path):
    samples = [Sample("a.png", "x", "p1", split="train"), Sample("b.png", "y", "p2", split="val"),
               Sample("c.png", "y", "p3", split="test")]
    path = tmp_path / "m.csv"
    write_manifest(path, samples)
    back = read_manifest(path)
    assert back == samples
    split = official_split(back)
    assert [len(split.train), len(split.val), len(split.test)] == [1, 1, 1]


def test_manifest_errors_name_the_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,label,patient_id\na.png,x,\n")
    with pytest.raises(DataError, match=r"m.csv:2"):
        read_manifest(path)
    path.write_text("path,label\na.png,x\n")
    with pytest.raises(DataError, match="missing column"):
        read_manifest(path)


def test_scan_folder_reads_patient_prefix(image_folder):
    samples = scan_folder(image_folder)
    assert len(samples) == 24
    assert {s.label for s in samples} == {"clear", "lesion"}
    assert len({s.patient_id for s in samples}) == 8
