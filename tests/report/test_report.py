"""`ctedge classify --report`: the HTML page, the summary PNG, the Secondary Capture, privacy,
models without maps, bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re

import numpy as np
import pytest
from PIL import Image

from ctedge.cli import main
from ctedge.export.cam import add_cam_file

from synthetic_dicom import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME

SPACING_MM = 0.7
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"  # what tests/synthetic_dicom.py writes
IDENTIFIERS = (PATIENT_NAME, PATIENT_NAME.split("^")[0], PATIENT_ID, ACCESSION, BIRTH_DATE)


def chest(size=256, lesion: tuple[float, float] | None = None) -> np.ndarray:
    """Stored values (intercept -1024) of an axial chest phantom, optionally with a bright
    opacity in one lung at (x, y) (fractions of the image)."""
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), -1000.0)
    hu[((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1] = 40.0
    for cx in (0.33, 0.67):
        hu[((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.22) ** 2 < 1] = -850.0
    if lesion:
        hu[((xx - lesion[0]) / 0.06) ** 2 + ((yy - lesion[1]) / 0.06) ** 2 < 1] = -100.0
    return (hu + 1024).astype(np.uint16)


@pytest.fixture
def study(tmp_path, ct_factory):
    """A patient folder named after the patient (as PACS exports do): 4 chest slices, one
    with an opacity, and 2 slices without lungs."""
    folder = tmp_path / f"{PATIENT_NAME}-{PATIENT_ID}"
    for z, lesion in ((0.0, None), (2.0, (0.33, 0.45)), (4.0, None), (6.0, None)):
        ct_factory.make_series(folder, [z], prefix=f"s{int(z)}", instances=[int(z) + 1],
                               pixels=chest(lesion=lesion), size=256, spacing=SPACING_MM)
    blank = np.full((256, 256), 24, np.uint16)  # -1000 HU everywhere: no body, no lungs
    ct_factory.make_series(folder, [8.0, 10.0], prefix="neck", instances=[9, 11],
                           pixels=blank, size=256, spacing=SPACING_MM)
    return folder


@pytest.fixture
def cam_model(tmp_path, tiny_model_factory):
    plain = tiny_model_factory(tmp_path / "tiny.onnx", classes=("normal", "covid19"), size=64)
    add_cam_file(plain, tmp_path / "tiny-cam.onnx")
    return tmp_path / "tiny-cam.onnx"


def _classify(capsys, *args):
    code = main([str(a) for a in ["classify", *args]])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_shows_decision_profile_pictures_maps_and_skips(capsys, tmp_path, study,
                                                               cam_model):
    out = tmp_path / "report"
    code, stdout, err = _classify(capsys, study, "--model", cam_model, "--report", out,
                                  "--format", "json")
    assert code == 0, err
    result = json.loads(stdout)
    page = (out / "report.html").read_text()
    assert "with maps" in err
    # decision, rule, evidence, the profile, skipped slices and why, model, timings, disclaimer
    assert result["decision"]["label"].upper() in page.upper()
    assert result["decision"]["reason"].replace(">=", "&gt;=") in page
    assert "<svg" in page and "polyline" in page
    assert "no lung field" in page and "0&ndash;1" in page  # z 10, 8: head end
    assert result["model"]["sha256"] in page and "tiny-cam.onnx" in page
    assert "Decision support only" in page and "report gather" in page
    # strongest slices: each classified slice's picture with its map beside it
    for s in result["slices"]:
        if s["used"]:
            assert re.search(rf'id="slice-{s["index"]}-', page)
    n_maps = page.count(' map" src="data:image/jpeg;base64,')
    assert n_maps == page.count("<figure") > 0
    # self-contained: no script, no network
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    summary = Image.open(out / "summary.png")
    assert summary.mode == "RGB" and summary.width == 1400
    assert np.asarray(summary).std() > 20  # not blank
    # named by a hash of the StudyInstanceUID only
    assert hashlib.sha256(STUDY_UID.encode()).hexdigest()[:16] in page


def test_no_patient_identifier_in_any_report_file(capsys, tmp_path, study, cam_model):
    out = tmp_path / "report"
    assert _classify(capsys, study, "--model", cam_model, "--report", out)[0] == 0
    assert {p.name for p in out.iterdir()} == {"report.html", "summary.png"}
    for path in out.iterdir():
        data = path.read_bytes()
        for needle in (*IDENTIFIERS, str(study), STUDY_UID):
            assert needle.encode() not in data, (path.name, needle)


def test_maps_follow_the_opacity(tmp_path, study, cam_model):
    """The tiny model's map is its input weighted per class, so the covid19 map of the slice
    with the opacity must be hottest on the opacity (or coldest, by the sign of the weight)."""
    from ctedge.pipeline import ClassifyConfig, classify_study
    from ctedge.report.images import map_on_slice

    result = classify_study(study, ClassifyConfig(model=cam_model, maps=True, workers=1))
    lesion_slice = next(s.index for s in result.slices if s.z_mm == 2.0)
    cam = map_on_slice(result.maps[lesion_slice][1], (256, 256))
    yy, xx = np.mgrid[:256, :256] / 256
    inside = ((xx - 0.33) / 0.05) ** 2 + ((yy - 0.45) / 0.05) ** 2 < 1
    lung = ((xx - 0.67) / 0.1) ** 2 + ((yy - 0.5) / 0.18) ** 2 < 1
    assert abs(cam[inside].mean() - cam[lung].mean()) > 5 * cam[lung].std()


def test_model_without_maps_still_reports(capsys, tmp_path, study, tiny_model_factory):
    model = tiny_model_factory(tmp_path / "old.onnx", classes=("normal", "covid19"), size=64)
    out = tmp_path / "report"
    code, _, err = _classify(capsys, study, "--model", model, "--report", out)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "maps unavailable" in err and "maps unavailable" in page
    assert page.count("<figure") > 0 and " map\" src=" not in page


def test_report_path_that_is_a_file_is_bad_input(capsys, tmp_path, study, cam_model):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code, _, err = _classify(capsys, study, "--model", cam_model, "--report", target)
    assert code == 2 and "Traceback" not in err
    assert target.read_text() == "keep me"


@pytest.mark.skipif(importlib.util.find_spec("highdicom") is None,
                    reason="needs the report extra (highdicom)")
def test_secondary_capture_sits_in_the_source_study(capsys, tmp_path, study, cam_model):
    import pydicom

    from ctedge.pipeline import ClassifyConfig, classify_study
    from ctedge.report import write_report
    from ctedge.report.secondary_capture import study_secondary_capture

    result = classify_study(study, ClassifyConfig(model=cam_model, maps=True, workers=1))
    files = write_report(result, tmp_path / "report")
    sc = study_secondary_capture(result, files)
    sc.save_as(tmp_path / "sc.dcm")
    back = pydicom.dcmread(tmp_path / "sc.dcm")
    source = pydicom.dcmread(result.study.series.slices[0].path, stop_before_pixels=True)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image
    assert back.StudyInstanceUID == source.StudyInstanceUID == STUDY_UID
    assert back.PatientID == PATIENT_ID  # the study's patient module, as DICOM requires
    assert back.SeriesInstanceUID != source.SeriesInstanceUID
    assert back.SOPInstanceUID != source.SOPInstanceUID
    summary = np.asarray(Image.open(files.summary).convert("RGB"))
    np.testing.assert_array_equal(back.pixel_array, summary)


def test_study_without_lungs_still_gets_a_report(capsys, tmp_path, ct_factory, cam_model):
    folder = tmp_path / "abdomen"
    ct_factory.make_series(folder, [0.0, 2.0], pixels=np.full((256, 256), 24, np.uint16),
                           size=256, spacing=SPACING_MM)
    out = tmp_path / "report"
    code, _, err = _classify(capsys, folder, "--model", cam_model, "--report", out)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "indeterminate" in page and "0&ndash;1" in page
    assert page.count("<figure") == 0 and "no classified slice" in page
    assert Image.open(out / "summary.png").size[0] == 1400
