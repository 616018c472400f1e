"""The shared real studies: COVID-CT-MD (JPEG Lossless) and the abdomen edge case (JPEG 2000,
empty UIDs). Header reads are fast; decoding more than a few slices is marked slow."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ctedge.dicom import read_hu, read_study

SAMPLE_STUDY = Path(__file__).resolve().parents[2] / "samples" / "P001-every8th"

STUDIES = ["covid-ct-md/COVID-19/P001", "covid-ct-md/CAP/cap001", "covid-ct-md/Normal/normal001"]


def _pseudonym(folder):
    import pydicom

    first = next(folder.glob("*.dcm"))
    return str(pydicom.dcmread(first, stop_before_pixels=True).PatientID)


@pytest.mark.parametrize("name", STUDIES)
def test_covid_ct_md_headers_and_privacy(shared_data, name):
    folder = shared_data / name
    study = read_study(folder)
    series = study.series
    assert study.problems == [] and study.skipped == [] and study.warnings == []
    assert series.sorted_by == "position" and series.duplicate_positions == 0
    assert len(series) == study.files_seen
    z = [s.z_mm for s in series.slices]
    assert all(a > b for a, b in zip(z, z[1:], strict=False))  # head to feet
    pseudonym = _pseudonym(folder)
    assert len(pseudonym) >= 4
    text = repr(study) + str(study.to_summary()) + " ".join(s.name for s in series.slices)
    assert pseudonym not in text
    assert pseudonym in series.slices[0].path.name  # the names do carry it: redaction matters


def test_covid_ct_md_slice_order_facts(shared_data):
    """What docs/dicom.md says about file names, InstanceNumber and label columns."""
    study = read_study(shared_data / "covid-ct-md/COVID-19/P001")
    slices = study.series.slices
    # z order (head to feet) is InstanceNumber order: column j of the labels = slices[j].
    assert [s.instance_number for s in slices] == list(range(1, len(slices) + 1))
    # The number in the file name is the rank of the InstanceNumber sorted as text.
    by_text = sorted(slices, key=lambda s: str(s.instance_number))
    ranks = [int(re.search(r"_(\d+)\.dcm$", s.path.name).group(1)) for s in by_text]
    assert ranks == list(range(1, len(slices) + 1))
    assert slices[0].z_mm == pytest.approx(-52.1) and slices[1].z_mm == pytest.approx(-54.1)
    labels = np.load(shared_data / "covid-ct-md/Slice-level-labels-updated-1.npy")
    assert labels.shape == (79, 200)
    assert labels[0, len(slices):].sum() == 0
    assert np.flatnonzero(labels[0]).tolist()[:6] == [26, 27, 28, 29, 32, 33]


def test_covid_ct_md_decodes_to_hu(shared_data):
    study = read_study(shared_data / "covid-ct-md/COVID-19/P001")
    hu = read_hu(study.series.slices[74])
    assert hu.dtype == np.float32 and hu.shape == (512, 512)
    corner = hu[:20, :20]
    assert -1024 <= corner.mean() <= -950  # air around the patient
    assert hu.max() > 200  # bone


def test_abdomen_j2k_without_uids(shared_data):
    study = read_study(shared_data / "edge-cases/abdomen-j2k-no-uids")
    assert study.series.key.startswith("fallback-")
    assert any("no SeriesInstanceUID" in w for w in study.warnings)
    assert len(study.series) == 20 and study.problems == []
    assert study.series.sorted_by == "position"
    again = read_study(shared_data / "edge-cases/abdomen-j2k-no-uids")
    assert again.series.key == study.series.key
    hu = read_hu(study.series.slices[10])  # JPEG 2000 lossless
    assert hu.shape == (512, 512) and hu.dtype == np.float32
    assert hu.min() >= -1100 and 0 < np.median(hu[200:300, 200:300]) < 200  # soft tissue


def test_sample_study_is_every_8th_slice_of_p001(shared_data):
    study = read_study(SAMPLE_STUDY)
    full = read_study(shared_data / "covid-ct-md/COVID-19/P001")
    assert [s.path.name for s in study.series.slices] == \
        [s.path.name for s in full.series.slices[::8]]
    for small, big in zip(study.series.slices, full.series.slices[::8], strict=True):
        assert small.path.read_bytes() == big.path.read_bytes()


def test_sample_study_in_repo():
    """Needs no shared data: the sample ships with the repository."""
    study = read_study(SAMPLE_STUDY)
    assert [s.instance_number for s in study.series.slices] == list(range(1, 149, 8))
    assert _pseudonym(SAMPLE_STUDY) not in repr(study) + str(study.to_summary())
    hu = read_hu(study.series.slices[9])
    assert hu.shape == (512, 512) and hu[:20, :20].mean() < -950


@pytest.mark.slow
@pytest.mark.parametrize("name", [*STUDIES, "edge-cases/abdomen-j2k-no-uids"])
def test_every_slice_decodes(shared_data, name):
    study = read_study(shared_data / name)
    for ref in study.series.slices:
        hu = read_hu(ref)
        assert hu.shape == (512, 512) and -1100 <= hu.min() and hu.max() < 4000
