"""Calibration slices, cache keys and cache reuse."""

from __future__ import annotations

import json

import pytest

from ctedge.artifact import file_sha256
from ctedge.errors import CalibrationError
from ctedge.export.calibration import CalibrationConfig, calibrate, calibration_key
from ctedge.export.slices import SliceRef, discover, refs_sha256, split_slices, stratified
from ctedge.preprocess import Preprocessing


def test_key_changes_with_every_input():
    pre = Preprocessing(size=32)
    base = calibration_key("a" * 64, pre, "s" * 64, "minmax")
    assert base == calibration_key("a" * 64, Preprocessing(size=32), "s" * 64, "minmax")
    changed = [
        calibration_key("b" * 64, pre, "s" * 64, "minmax"),
        calibration_key("a" * 64, Preprocessing(size=32, window_level=-500), "s" * 64, "minmax"),
        calibration_key("a" * 64, pre, "t" * 64, "minmax"),
        calibration_key("a" * 64, pre, "s" * 64, "entropy"),
        calibration_key("a" * 64, pre, "s" * 64, "percentile", {"percentile": 99.9}),
        calibration_key("a" * 64, pre, "s" * 64, "percentile", {"percentile": 99.99}),
    ]
    assert len({base, *changed}) == 1 + len(changed)


def test_slice_list_hash_ignores_order_but_not_content(tmp_path):
    a, b = SliceRef(tmp_path / "a.png", "x"), SliceRef(tmp_path / "b.png", "y")
    assert refs_sha256([a, b]) == refs_sha256([b, a])
    assert refs_sha256([a, b]) != refs_sha256([a])
    assert refs_sha256([a]) != refs_sha256([SliceRef(tmp_path / "a.png", "y")])


def test_cache_is_reused_only_for_the_same_key(conv_model, slice_folder, tmp_path):
    cfg = CalibrationConfig(cache_dir=tmp_path / "cache")
    refs = discover(slice_folder)
    pre = Preprocessing(size=32)
    sha = file_sha256(conv_model)
    first = calibrate(conv_model, sha, refs[:8], pre, cfg)
    assert not first.reused and first.ranges_path.is_file()
    again = calibrate(conv_model, sha, refs[:8], pre, cfg)
    assert again.reused and again.key == first.key
    fewer = calibrate(conv_model, sha, refs[:6], pre, cfg)
    other_method = calibrate(conv_model, sha, refs[:8], pre, CalibrationConfig.minmax(
        cache_dir=tmp_path / "cache"))
    other_model = calibrate(conv_model, "0" * 64, refs[:8], pre, cfg)
    for result in (fewer, other_method, other_model):
        assert not result.reused and result.key != first.key
    # A corrupt cache file is recomputed, never trusted.
    first.ranges_path.write_text("{not json")
    redone = calibrate(conv_model, sha, refs[:8], pre, cfg)
    assert not redone.reused
    assert json.loads(redone.ranges_path.read_text())["data"]


def test_empty_or_unreadable_calibration_sets_fail_clearly(conv_model, tmp_path):
    cfg = CalibrationConfig(cache_dir=tmp_path / "cache")
    with pytest.raises(CalibrationError, match="empty"):
        calibrate(conv_model, "0" * 64, [], Preprocessing(size=32), cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no slices found"):
        discover(tmp_path / "empty")
    bad = tmp_path / "bad" / "normal"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="unreadable image"):
        calibrate(conv_model, "0" * 64, discover(tmp_path / "bad"), Preprocessing(size=32), cfg)


def test_split_is_disjoint_deterministic_and_stratified(slice_folder, tmp_path):
    refs = discover(slice_folder)
    assert {r.label for r in refs} == {"normal", "covid19"}
    one = split_slices(refs, calib_size=10, parity_size=8)
    two = split_slices(list(reversed(refs)), calib_size=10, parity_size=8)
    assert one == two
    assert not {r.key for r in one.calibration} & {r.key for r in one.parity}
    assert len(one.parity) == 8 and len(one.calibration) == 10
    assert sorted(r.label for r in stratified(refs, 6)) == ["covid19"] * 3 + ["normal"] * 3


def test_manifest_uses_val_rows_for_calibration(slice_folder, tmp_path):
    rows = ["path,label,patient_id,split"]
    for i, ref in enumerate(discover(slice_folder)):
        split = ("train", "val", "test")[i % 3]
        rows.append(f"{ref.path.relative_to(slice_folder)},{ref.label},p{i},{split}")
    manifest = slice_folder / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    refs = discover(manifest)
    split = split_slices(refs, calib_size=100, parity_size=100)
    assert {r.split for r in split.calibration} == {"val"}
    assert {r.split for r in split.parity} == {"test"}  # every val row went to calibration
    assert all(r.path.is_file() for r in refs)
