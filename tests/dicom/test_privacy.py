"""No patient identifier reaches anything read_study reports (synthetic data)."""

from __future__ import annotations

import pytest

from ctedge.dicom import read_study
from ctedge.errors import DicomError

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


def test_identifiers_are_found_in_any_case_separator_form_and_fragment():
    from ctedge.dicom.privacy import Redactor

    redact = Redactor()
    redact.learn_value("98C14734-ASSH")
    redact.learn_value("19510203")
    for text in ("98C14734-ASSH_1.dcm", "98c14734_assh", "98C14734ASSH", "ASSH-chest",
                 "x98C14734", "98C14734 ASSH", "1951-02-03", "1951.02.03"):
        out = redact(text)
        assert "98c14734" not in out.lower() and "assh" not in out.lower(), out
        assert "1951" not in out, out
    assert redact("P001/slice_12.dcm") == "P001/slice_12.dcm"


def test_damaged_values_never_make_the_redactor_match_everything_or_explode():
    from ctedge.dicom.privacy import Redactor

    redact = Redactor()
    for junk in ("-", "^^", " ", "\x00\x00", "A" * 100000):
        redact.learn_value(junk)
    assert redact("/data/study/slice_1.dcm") == "/data/study/slice_1.dcm"


def test_identifiers_of_an_unparseable_header_are_learnt_from_its_bytes(tmp_path):
    # The file's VR bytes are damaged past parsing; its name and folder carry the patient ID.
    from ctedge.fuzz.mutate import rewrite

    folder = tmp_path / PATIENT_ID
    make_series(folder, [0.0, 5.0], prefix="slice")
    bad = make_ct(folder / f"{PATIENT_ID}.dcm", z=10.0)
    bad.write_bytes(rewrite(bad.read_bytes(), 0x00080060, vr=b"\x00\x01"))  # Modality
    study = read_study(folder)
    assert study.problems and study.problems[0].file == "<redacted>.dcm"
    assert PATIENT_ID not in study.root_display and "<redacted>" in study.root_display


def test_series_key_and_reasons_go_through_the_redactor(tmp_path):
    folder = tmp_path / "study"
    make_series(folder, [0.0, 5.0], series_uid=f"1.2.3.{PATIENT_ID}")
    make_ct(folder / "scout.dcm", image_type=("ORIGINAL", "LOCALIZER"),
            description=f"scout of {PATIENT_ID}")
    study = read_study(folder)
    assert PATIENT_ID not in study.series.key and "<redacted>" in study.series.key
    assert PATIENT_ID not in _everything(study)


def test_library_warnings_are_summarised_not_printed(tmp_path):
    import warnings

    folder = tmp_path / "study"
    # An invalid UI value: pydicom warns "Invalid value for VR UI: '<the UID>'" per file.
    make_series(folder, [0.0, 5.0, 10.0], series_uid=f"1.2.3.{PATIENT_ID}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        study = read_study(folder)
    summaries = [w for w in study.warnings if w.startswith("library warning")]
    assert len(summaries) == 1 and "(3 x)" in summaries[0], study.warnings
    assert "Invalid value for VR UI" in summaries[0]
    assert PATIENT_ID not in summaries[0] and "1.2.3" not in summaries[0]


def test_internal_error_details_quote_no_values():
    from ctedge.dicom.privacy import safe_detail

    exc = ValueError(f"bad value b'{PATIENT_ID}' for 'PatientID' in /data/{PATIENT_ID}/a.dcm")
    detail = safe_detail(exc)
    assert detail.startswith("ValueError:") and PATIENT_ID not in detail


def test_identifiers_inside_a_deflated_data_set_with_a_damaged_meta_are_learnt(tmp_path):
    # Fuzz class: the transfer syntax element's group flipped, so nothing says "deflated";
    # the identifiers are only readable after inflating the data set.
    from ctedge.fuzz.seeds import DEFLATED, synthetic_slice

    data = synthetic_slice(DEFLATED)
    at = data.index(b"\x02\x00\x10\x00UI")
    folder = tmp_path / "FZ-7Q2X-PID"
    folder.mkdir()
    (folder / "FZ-7Q2X-PID.dcm").write_bytes(data[:at] + b"\x02\x10" + data[at + 2:])
    with pytest.raises(DicomError) as info:
        read_study(folder)
    assert "7Q2X" not in str(info.value) and "<redacted>" in str(info.value)


def test_single_characters_are_not_identifiers():
    from ctedge.dicom.privacy import Redactor

    redact = Redactor(_global=False)
    redact.learn_value("A^B")
    redact.learn_value("1-2345")
    assert redact("not a readable file at 127.0.0.1, e.g. x") == \
        "not a readable file at 127.0.0.1, e.g. x"
    assert redact("scan_2345.dcm") == "scan_<redacted>.dcm"


def test_each_cli_command_starts_with_no_known_identifiers():
    from ctedge.cli import main
    from ctedge.dicom import privacy

    privacy.redact_known("")  # module loaded
    privacy._KNOWN.learn_value("EARLIER-PATIENT")
    main(["--version"])
    assert privacy.redact_known("EARLIER-PATIENT") == "EARLIER-PATIENT"
