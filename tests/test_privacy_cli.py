"""Issue 9, privacy through the CLI: a study folder named by the patient's pseudonym (as the
shared COVID-CT-MD files and the repo's sample are) never shows in any output or error line,
and library warnings never reach the terminal raw."""

from __future__ import annotations

import json
import shutil

from conftest import SAMPLE_STUDY

from ctedge.cli import main

from synthetic_dicom import PATIENT_ID, make_series

PSEUDONYM = "98C14734-ASSH"  # the sample's PatientID, in its file names


def run(capfd, *args):
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def assert_no_pseudonym(*texts):
    for text in texts:
        low = text.lower()
        for part in ("98c14734", "assh"):
            assert part not in low, text[:2000]


def test_folder_named_by_the_pseudonym_is_redacted_everywhere(capfd, tmp_path, tiny_model):
    # Another separator and case form of the ID than the file names use.
    study = tmp_path / "98c14734_assh" / "ct"
    shutil.copytree(SAMPLE_STUDY, study)
    out_file = tmp_path / "result.json"
    code, out, err = run(capfd, "classify", study, "--model", tiny_model, "--format", "json",
                         "--out", out_file)
    assert code == 0, err
    result = json.loads(out_file.read_text())
    assert result["study"]["path"].endswith("<redacted>/ct")
    assert_no_pseudonym(out, err, out_file.read_text())
    code, out, err = run(capfd, "classify", study, "--model", tiny_model, "--format", "table")
    assert code == 0 and "<redacted>" in out
    assert_no_pseudonym(out, err)


def test_error_lines_name_no_patient(capfd, tmp_path, tiny_model):
    study = tmp_path / PSEUDONYM
    study.mkdir()
    for name in sorted(p.name for p in SAMPLE_STUDY.iterdir())[:2]:
        (study / name).write_bytes((SAMPLE_STUDY / name).read_bytes()[:2000])  # cut after PatientID
    code, out, err = run(capfd, "classify", study, "--model", tiny_model)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no CT image series" in err
    assert_no_pseudonym(out, err)


def test_library_warnings_never_reach_the_terminal(capfd, tmp_path, tiny_model):
    folder = tmp_path / "study"
    make_series(folder, [0.0, 5.0, 10.0], series_uid=f"1.2.3.{PATIENT_ID}", size=64)
    code, out, err = run(capfd, "classify", folder, "--model", tiny_model, "--format", "json")
    assert code == 0, err
    assert "Warning" not in err and PATIENT_ID not in err + out
    warnings = json.loads(out)["study"]["warnings"]
    assert sum(w.startswith("library warning") for w in warnings) == 1, warnings
