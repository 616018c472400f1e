"""No patient identifier reaches anything read_study reports (synthetic data)."""

from __future__ import annotations

from ctedge.dicom import read_study

from synthetic_dicom import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME, make_ct, make_series

IDENTIFIERS = [PATIENT_ID, ACCESSION, BIRTH_DATE, *PATIENT_NAME.split("^")]


def _everything(study) -> str:
    return "\n".join([repr(study), str(study.to_summary()), repr(study.series.slices),
                      *(s.name for s in study.series.slices)])


def test_identifiers_in_file_names_descriptions_and_problems_are_redacted(tmp_path):
    folder = tmp_path / "study"
    make_series(folder, [0.0, 5.0, 10.0], prefix=f"{PATIENT_ID}_",
                description=f"Chest {PATIENT_NAME.split('^')[0]}")
    make_series(folder / "other", [0.0], prefix=f"{ACCESSION}-", series_uid="1.2.3.9")
    (folder / f"{PATIENT_ID}_notes.txt").write_text("not dicom")
    make_ct(folder / f"{BIRTH_DATE}_scout.dcm", image_type=("ORIGINAL", "LOCALIZER"))
    study = read_study(folder)
    text = _everything(study)
    assert study.problems and study.skipped and study.other_series
    for value in IDENTIFIERS:
        assert value.lower() not in text.lower(), value
    assert study.series.slices[-1].name == "<redacted>_000.dcm"  # z = 0: the lowest
    assert study.problems[0].file == "<redacted>_notes.txt"


def test_short_identifiers_only_redact_whole_tokens(tmp_path):
    from ctedge.dicom.privacy import Redactor

    class _Ds(dict):
        pass

    redact = Redactor()
    redact.learn(_Ds(PatientID="12", PatientName="Li^Wang"))
    assert redact("slice_12.dcm") == "slice_<redacted>.dcm"
    assert redact("slice_120.dcm") == "slice_120.dcm"
    assert redact("WANG_li-chest") == "<redacted>_<redacted>-chest"
