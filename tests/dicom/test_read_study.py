"""read_study on synthetic folders: bad input, series choice, sorting."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ctedge.dicom import read_study
from ctedge.errors import DicomError

from synthetic_dicom import SAGITTAL, make_ct, make_dose_report, make_series


def test_not_a_directory(tmp_path):
    f = tmp_path / "a.dcm"
    make_ct(f)
    with pytest.raises(DicomError, match="is not a folder"):
        read_study(f)
    with pytest.raises(DicomError, match="does not exist"):
        read_study(tmp_path / "missing")


def test_empty_directory(tmp_path):
    with pytest.raises(DicomError, match="no CT image series found in .*no files"):
        read_study(tmp_path)


def test_only_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(DicomError, match="no CT image series found.*not a DICOM file"):
        read_study(tmp_path)


def test_truncated_and_pixel_less_files_are_problems(tmp_path):
    make_series(tmp_path, [0.0, 1.0, 2.0])
    good = (tmp_path / "slice000.dcm").read_bytes()
    (tmp_path / "cut_pixels.dcm").write_bytes(good[:-100])
    (tmp_path / "cut_header.dcm").write_bytes(good[:200])
    make_ct(tmp_path / "no_pixels.dcm", z=5.0, with_pixels=False)
    study = read_study(tmp_path)
    assert len(study.series) == 3
    reasons = {p.file: p.reason for p in study.problems}
    assert reasons["cut_pixels.dcm"].startswith("truncated")
    assert reasons["no_pixels.dcm"] == "no pixel data"
    assert "cut_header.dcm" in reasons
    assert study.files_seen == 6


def test_chooses_ct_over_scout_and_dose_report(tmp_path):
    make_series(tmp_path / "ct", [0.0, 2.5, 5.0, 7.5])
    make_ct(tmp_path / "scout" / "topo.dcm", series_uid="1.2.3.77",
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), orientation=SAGITTAL)
    make_ct(tmp_path / "scout" / "lateral.dcm", series_uid="1.2.3.78",
            image_type=("ORIGINAL", "PRIMARY"), orientation=SAGITTAL)
    make_dose_report(tmp_path / "dose.dcm")
    (tmp_path / "DICOMDIR").write_bytes(b"not parsed")
    study = read_study(tmp_path)
    assert study.series.key == "1.2.826.0.1.3680043.8.498.10"
    assert len(study.series) == 4
    assert study.problems == []
    skipped = {p.file: p.reason for p in study.skipped}
    assert skipped["scout/topo.dcm"].startswith("localizer")
    assert skipped["scout/lateral.dcm"].startswith("not axial")
    assert "Dose" in skipped["dose.dcm"] and skipped["dose.dcm"].startswith("not an image")
    assert skipped["DICOMDIR"].startswith("DICOMDIR")


def test_most_slices_wins_and_series_uid_overrides(tmp_path):
    make_series(tmp_path, [0, 1, 2, 3, 4], series_uid="1.2.3.5", prefix="a")
    make_series(tmp_path, [0, 5, 10], series_uid="1.2.3.3", prefix="b")
    make_series(tmp_path, [0, 5, 10, 15], series_uid="1.2.3.4", prefix="c", modality="MR",
                sop_class="1.2.840.10008.5.1.4.1.1.4")
    study = read_study(tmp_path)
    assert study.series.key == "1.2.3.5"
    why = {s["key"]: s["why_not_chosen"] for s in study.other_series}
    assert why["1.2.3.3"].startswith("fewer slices")
    assert why["1.2.3.4"].startswith("not a CT image series")
    assert read_study(tmp_path, series_uid="1.2.3.3").series.key == "1.2.3.3"
    with pytest.raises(DicomError, match="series 9.9 not found.*1.2.3.3, 1.2.3.4, 1.2.3.5"):
        read_study(tmp_path, series_uid="9.9")


def test_only_non_ct_series_is_an_error(tmp_path):
    make_series(tmp_path, [0, 5], modality="MR", sop_class="1.2.840.10008.5.1.4.1.1.4")
    with pytest.raises(DicomError, match="no CT image series found.*1 non-CT image series"):
        read_study(tmp_path)


def test_sorted_by_position_head_first_not_by_instance_number(tmp_path):
    zs = [-30.0, 10.0, -10.0, 0.0, 20.0, -20.0]
    make_series(tmp_path, zs, instances=[3, 1, 6, 2, 5, 4])
    series = read_study(tmp_path).series
    assert series.sorted_by == "position"
    assert [s.z_mm for s in series.slices] == sorted(zs, reverse=True)
    assert [s.instance_number for s in series.slices] == [5, 1, 2, 6, 4, 3]


def test_feet_first_orientation_still_runs_head_first(tmp_path):
    # Normal of this orientation points to the feet: sorting must not flip.
    make_series(tmp_path, [0.0, 10.0, 5.0], orientation=(-1, 0, 0, 0, 1, 0))
    series = read_study(tmp_path).series
    assert [s.z_mm for s in series.slices] == [10.0, 5.0, 0.0]


def test_missing_positions_fall_back_to_instance_number(tmp_path):
    make_series(tmp_path, [None, None, None], instances=[2, 3, 1])
    study = read_study(tmp_path)
    assert study.series.sorted_by == "instance_number"
    assert [s.instance_number for s in study.series.slices] == [1, 2, 3]
    assert any("sorted by InstanceNumber" in w for w in study.warnings)


def test_duplicate_positions_are_counted_and_ordered(tmp_path):
    make_series(tmp_path, [0.0, 5.0, 0.0, 5.0, 10.0], instances=[4, 2, 3, 1, 5])
    study = read_study(tmp_path)
    assert study.series.duplicate_positions == 2
    assert [s.instance_number for s in study.series.slices] == [5, 1, 2, 3, 4]
    assert any("repeat the position" in w for w in study.warnings)


def test_missing_uids_fall_back_to_a_stable_key(tmp_path):
    make_series(tmp_path / "a", [0.0, 5.0, 10.0], series_uid="")
    first = read_study(tmp_path / "a")
    assert first.series.key.startswith("fallback-")
    assert any("no SeriesInstanceUID" in w for w in first.warnings)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    assert read_study(tmp_path / "elsewhere" / "b").series.key == first.series.key


def test_enhanced_multiframe_gives_one_slice_per_frame(tmp_path, ct_factory):
    ct_factory.make_enhanced_ct(tmp_path / "enh.dcm", [
        {"z": 0.0, "value": 1000},
        {"z": 10.0, "value": 1010},
        {"z": 5.0, "value": 1005},
        {"z": 50.0, "value": 0, "frame_type": ("ORIGINAL", "PRIMARY", "LOCALIZER", "NONE")},
    ])
    series = read_study(tmp_path).series
    assert [(s.frame, s.z_mm) for s in series.slices] == [(1, 10.0), (2, 5.0), (0, 0.0)]
    assert series.slices[0].pixel_spacing_mm == (0.8, 0.8)
    assert series.to_summary()["multi_frame"] is True
    assert series.slices[0].name == "enh.dcm#1"


def test_summary_is_plain_data(tmp_path):
    make_series(tmp_path, [0.0, 2.0])
    summary = read_study(tmp_path).to_summary()
    assert summary["series"]["slices"] == 2
    assert summary["series"]["z_range_mm"] == [2.0, 0.0]
    np.testing.assert_equal(summary["series"]["pixel_spacing_mm"], [0.5, 0.5])
