"""DICOM studies as a data source: synthetic chests made here, tiny ONNX model, no torch."""

import numpy as np
import pytest

from ctedge.artifact import ModelInfo
from ctedge.preprocess import Preprocessing
from ctedge.train.studies import (
    evaluate_studies,
    is_study_manifest,
    load_study_slices,
    read_study_manifest,
)

CLASSES = ("non_covid", "covid19")


def _chest(size=128, lungs=True):
    """Stored values (intercept -1024): body ellipse of soft tissue with two lungs inside."""
    yy, xx = np.mgrid[:size, :size]
    hu = np.full((size, size), -1000.0)
    body = ((xx - 64) / 58) ** 2 + ((yy - 64) / 44) ** 2 <= 1
    hu[body] = 40
    if lungs:
        for cx in (40, 88):
            hu[((xx - cx) / 18) ** 2 + ((yy - 62) / 28) ** 2 <= 1] = -850
    return (hu + 1024).astype(np.uint16)


@pytest.fixture
def study_manifest(tmp_path, ct_factory):
    for name in ("sick", "well"):
        folder = tmp_path / "data" / name
        for j in range(4):  # slice 0 (top) has no lungs
            ct_factory.make_ct(folder / f"s{j}.dcm", z=-2.0 * j, instance=j + 1,
                               pixels=_chest(lungs=j > 0), size=128, spacing=2.0,
                               series_uid=f"1.2.3.{len(name)}")
    labels = np.zeros((2, 10), dtype=np.int32)
    labels[0, [1, 2]] = 1  # sick: slices 1 and 2 (z order) show the finding
    np.save(tmp_path / "data" / "labels.npy", labels)
    manifest = tmp_path / "data" / "studies.csv"
    manifest.write_text("path,label,patient_id,site,slice_labels,slice_labels_row\n"
                        "sick,covid19,P1,a,labels.npy,0\nwell,normal,P2,a,,\n")
    return manifest


def test_training_slices_follow_lungs_and_slice_labels(study_manifest):
    root = study_manifest.parent
    assert is_study_manifest(study_manifest, root)
    cases = read_study_manifest(study_manifest)
    data = load_study_slices(cases, root, CLASSES, Preprocessing(size=32),
                             {"normal": "non_covid"})
    # sick: slices 1, 2 labelled (slice 3 unlabelled -> left out, slice 0 no lungs);
    # well: slices 1-3 (no per-slice labels: the study label)
    assert data.paths == ("sick#1", "sick#2", "well#1", "well#2", "well#3")
    assert data.labels.tolist() == [1, 1, 0, 0, 0]
    assert data.patients == ("P1", "P1", "P2", "P2", "P2")
    assert data.inputs.shape == (5, 3, 32, 32)


@pytest.mark.slow  # the pipeline starts a decode process pool per study (~6 s each here)
def test_evaluate_studies_runs_the_pipeline(study_manifest, tmp_path, tiny_model_factory):
    info = ModelInfo(classes=CLASSES, negative_class="non_covid",
                     preprocessing=Preprocessing(size=32))
    model = tiny_model_factory(tmp_path / "m.onnx", classes=CLASSES, size=32, info=info)
    out = evaluate_studies(model, read_study_manifest(study_manifest), study_manifest.parent,
                           {"normal": "non_covid"})
    assert [o.truth for o in out] == ["covid19", "non_covid"]
    assert [(o.slices_read, o.slices_used) for o in out] == [(4, 3), (4, 3)]
    assert set(out[0].decisions) == {"robust", "paper"}
    assert out[0].slice_labels["used_infected"] == 2
    assert out[1].slice_labels == {}
    from ctedge.errors import DataError

    with pytest.raises(DataError, match="--map-label"):
        evaluate_studies(model, read_study_manifest(study_manifest), study_manifest.parent)
