"""`ctedge classify` end to end: results, exit codes, one-line errors, atomic output, privacy."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from ctedge.cli import main

CHEST_SPACING_MM = 0.7


def chest_phantom(size: int = 512, lungs: bool = True) -> np.ndarray:
    """Stored values (intercept -1024) of an axial chest: air, a soft-tissue body, two lungs."""
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), -1000.0)
    hu[((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1] = 40.0
    if lungs:
        for cx in (0.33, 0.67):
            hu[((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.22) ** 2 < 1] = -850.0
    return (hu + 1024).astype(np.uint16)


@pytest.fixture
def chest_study(tmp_path, ct_factory):
    folder = tmp_path / "study"
    ct_factory.make_series(folder, [float(z) for z in range(0, 16, 2)],
                           instances=[8, 3, 5, 1, 7, 2, 6, 4], pixels=chest_phantom(),
                           size=512, spacing=CHEST_SPACING_MM)
    return folder


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctedge: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_classify_json_result(capsys, chest_study, tiny_model):
    code, out, err = run(capsys, "classify", chest_study, "--model", tiny_model,
                         "--format", "json", "--batch-size", "3")
    assert code == 0, err
    result = json.loads(out)
    assert result["study"]["slices_read"] == 8
    assert result["study"]["slices_classified"] == 8, [s["skip_reason"] for s in result["slices"]]
    assert result["decision"]["rule"] == "robust"
    assert result["decision"]["label"] in result["model"]["classes"]
    zs = [s["z_mm"] for s in result["slices"]]
    assert zs == sorted(zs, reverse=True)  # head first, whatever the InstanceNumbers said
    for s in result["slices"]:
        assert abs(sum(s["probabilities"].values()) - 1) < 1e-4
        assert s["label"] == max(s["probabilities"], key=s["probabilities"].get)
    assert set(result["timings_s"]) >= {"read", "decode", "preprocess", "infer", "total"}
    assert result["model"]["backend"] == "onnxruntime" and len(result["model"]["sha256"]) == 64
    assert "not a medical device" in result["disclaimer"]


def test_paper_rule_and_formats(capsys, chest_study, tiny_model):
    code, out, _ = run(capsys, "classify", chest_study, "--model", tiny_model, "--rule", "paper",
                       "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8 and all(r["used"] == "1" for r in rows)
    code, out, _ = run(capsys, "classify", chest_study, "--model", tiny_model, "--rule", "paper")
    assert code == 0
    assert "paper rule" in out and "not a medical device" in out


def test_slices_without_lungs_are_skipped_and_reported(capsys, tmp_path, ct_factory, tiny_model):
    folder = tmp_path / "study"
    ct_factory.make_series(folder, [0.0, 2.0, 4.0], pixels=chest_phantom(), size=512,
                           spacing=CHEST_SPACING_MM)
    ct_factory.make_series(folder, [6.0, 8.0], prefix="neck", instances=[4, 5],
                           pixels=chest_phantom(lungs=False), size=512, spacing=CHEST_SPACING_MM)
    code, out, _ = run(capsys, "classify", folder, "--model", tiny_model, "--format", "json")
    assert code == 0
    study = json.loads(out)["study"]
    assert study["slices_classified"] == 3 and study["slices_skipped"] == 2
    assert study["skipped_reasons"] == {"no lung field": 2}


def test_out_file_is_written_atomically(capsys, tmp_path, chest_study, tiny_model):
    target = tmp_path / "result.json"
    code, out, _ = run(capsys, "classify", chest_study, "--model", tiny_model, "--format", "json",
                       "--out", target)
    assert code == 0 and "wrote" in out
    assert json.loads(target.read_text())["study"]["slices_read"] == 8
    failed = tmp_path / "failed.json"
    code, _, err = run(capsys, "classify", tmp_path / "missing", "--model", tiny_model,
                       "--out", failed)
    assert code == 2 and not failed.exists()
    assert list(tmp_path.glob("*.part")) == []


@pytest.mark.parametrize("case", ["not_a_dir", "empty", "non_dicom", "truncated", "no_pixels"])
def test_bad_studies_give_one_line_and_exit_2(capsys, tmp_path, ct_factory, tiny_model, case):
    folder = tmp_path / "study"
    if case == "not_a_dir":
        folder = tmp_path / "notes.txt"
        folder.write_text("hello")
    else:
        folder.mkdir()
    if case == "non_dicom":
        (folder / "readme.txt").write_text("not an image")
        (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    if case == "truncated":
        whole = ct_factory.make_ct(tmp_path / "whole.dcm", pixels=chest_phantom(), size=512)
        (folder / "cut.dcm").write_bytes(whole.read_bytes()[:2000])
    if case == "no_pixels":
        ct_factory.make_ct(folder / "a.dcm", with_pixels=False)
    code, out, err = run(capsys, "classify", folder, "--model", tiny_model)
    assert_one_line_error(code, out, err, str(folder))
    assert out == ""


def test_missing_codec_names_what_to_install(capsys, tmp_path, ct_factory, tiny_model):
    folder = tmp_path / "study"
    for i in range(3):  # JPEG XL: no decoder plugin for it exists in pydicom 3.0
        ct_factory.make_jpeg_xl_ct(folder / f"s{i}.dcm", z=float(i), instance=i + 1)
    code, out, err = run(capsys, "classify", folder, "--model", tiny_model)
    assert_one_line_error(code, out, err, ".dcm", "1.2.840.10008.1.2.4.110")
    assert "gdcm" in err


def test_mixed_folder_classifies_the_ct_series(capsys, tmp_path, ct_factory, tiny_model):
    folder = tmp_path / "study"
    ct_factory.make_series(folder / "ct", [0.0, 2.0, 4.0], pixels=chest_phantom(), size=512,
                           spacing=CHEST_SPACING_MM)
    ct_factory.make_ct(folder / "scout.dcm", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                       series_uid="1.2.826.0.1.3680043.8.498.77", z=0.0)
    ct_factory.make_dose_report(folder / "dose.dcm")
    code, out, err = run(capsys, "classify", folder, "--model", tiny_model, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["study"]["series_uid"] == "1.2.826.0.1.3680043.8.498.10"
    assert result["study"]["slices_read"] == 3


def test_unknown_series_is_bad_input(capsys, chest_study, tiny_model):
    code, out, err = run(capsys, "classify", chest_study, "--model", tiny_model,
                         "--series", "1.2.3.4")
    assert_one_line_error(code, out, err, "1.2.3.4")


def test_bad_model_files(capsys, tmp_path, chest_study, tiny_model_factory):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage")
    assert_one_line_error(*run(capsys, "classify", chest_study, "--model", corrupt),
                          "corrupt.onnx")
    from ctedge.artifact import ModelInfo
    from ctedge.preprocess import Preprocessing

    wrong = tiny_model_factory(tmp_path / "wrong.onnx", size=224,
                               info=ModelInfo(preprocessing=Preprocessing(size=128)))
    assert_one_line_error(*run(capsys, "classify", chest_study, "--model", wrong), "wrong.onnx")
    assert_one_line_error(*run(capsys, "classify", chest_study, "--model", tmp_path / "no.onnx"),
                          "no.onnx")


def test_missing_default_model_says_to_pass_model(capsys, chest_study, tmp_path, monkeypatch):
    monkeypatch.setenv("CTEDGE_MODEL", str(tmp_path / "absent.onnx"))
    assert_one_line_error(*run(capsys, "classify", chest_study), "--model")


def test_debug_shows_the_traceback(chest_study, tmp_path):
    cmd = [sys.executable, "-m", "ctedge.cli", "classify", str(tmp_path / "missing"),
           "--model", "x.onnx"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "DicomError" in debug.stderr


def test_bad_option_values_name_the_valid_ones(capsys, chest_study, tiny_model):
    code, _, err = run(capsys, "classify", chest_study, "--model", tiny_model, "--rule", "vote")
    assert code == 2 and "robust" in err and "paper" in err


def test_cli_import_is_torch_free():
    code = ("import sys, ctedge.cli; heavy = [m for m in ('torch', 'tensorrt', 'onnxruntime', "
            "'pydicom', 'scipy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_shared_studies_classify_without_leaking_identifiers(capsys, shared_data, tiny_model):
    import pydicom

    study = shared_data / "covid-ct-md" / "Normal" / "normal001"
    first = next(study.glob("*.dcm"))
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    secrets = [str(v) for v in (ds.get("PatientID"), ds.get("PatientName"),
                                ds.get("PatientBirthDate"), ds.get("AccessionNumber")) if v]
    assert secrets
    for fmt in ("json", "table", "csv"):
        code, out, err = run(capsys, "classify", study, "--model", tiny_model, "--format", fmt)
        assert code == 0, err
        for secret in secrets:
            assert secret not in out and secret not in err


def test_abdomen_without_lungs_says_so(capsys, shared_data, tiny_model):
    study = shared_data / "edge-cases" / "abdomen-j2k-no-uids"
    code, out, err = run(capsys, "classify", study, "--model", tiny_model, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["decision"]["label"] == "indeterminate"
    assert result["study"]["slices_classified"] == 0
    assert "lung" in err and str(study) in err


def test_atomic_write_keeps_ordinary_permissions_and_cleans_up(tmp_path):
    import os

    from ctedge.io import atomic_path, atomic_write

    atomic_write(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert (tmp_path / "a.txt").stat().st_mode & 0o044 == 0o044 & ~_umask()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("failed half way")
    assert os.listdir(tmp_path) == ["a.txt"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
