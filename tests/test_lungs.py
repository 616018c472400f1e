"""Lung-field selection: synthetic phantoms, then the shared studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctedge.lungs import LungField, LungFieldConfig, lung_field

SAMPLE_STUDY = Path(__file__).resolve().parents[1] / "samples" / "P001-every8th"


def _ellipse(shape, cy, cx, ry, rx):
    y, x = np.ogrid[:shape[0], :shape[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def phantom(lungs_hu=-850.0, lung_radius=(120, 70), size=512, noise=20.0, seed=0):
    """A chest: air outside, a 40 HU body ellipse, a table, two lungs with vessel-like dots."""
    rng = np.random.default_rng(seed)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[_ellipse(hu.shape, 256, 256, 180, 240)] = 40.0
    hu[470:480, 40:470] = 200.0  # table: a separate, smaller component
    for cx in (160, 352):
        lung = _ellipse(hu.shape, 250, cx, *lung_radius)
        hu[lung] = lungs_hu
        vessels = lung & (rng.random(hu.shape) < 0.03)
        hu[vessels] = 0.0
    hu += rng.normal(0, noise, hu.shape).astype(np.float32)
    return hu


def test_phantom_lungs_are_found_with_their_area():
    hu = phantom()
    result = lung_field(hu, (0.7, 0.7))
    expected_cm2 = 2 * np.pi * 120 * 70 * 0.7 * 0.7 / 100  # two ellipses: ~259 cm2
    assert result.used and bool(result)
    assert result.area_cm2 == pytest.approx(expected_cm2, rel=0.08)
    assert result.fraction == pytest.approx(2 * np.pi * 120 * 70 / 512**2, rel=0.08)
    assert "lung area" in result.reason


def test_area_scales_with_pixel_spacing():
    hu = phantom()
    a = lung_field(hu, (0.5, 0.5)).area_cm2
    b = lung_field(hu, (1.0, 1.0)).area_cm2
    assert b == pytest.approx(4 * a, rel=1e-6)


def test_no_spacing_uses_the_image_fraction():
    result = lung_field(phantom(), None)
    assert result.area_cm2 is None and result.used
    assert "no pixel spacing" in result.reason
    small = lung_field(phantom(lung_radius=(20, 12)), None)
    assert not small.used and small.fraction < 0.03


def test_slices_without_lungs_are_skipped():
    air = np.full((256, 256), -1000.0, dtype=np.float32)
    assert lung_field(air, (0.7, 0.7)).reason.startswith("no body")
    abdomen = phantom(lungs_hu=40.0)  # lungs replaced by soft tissue
    result = lung_field(abdomen, (0.7, 0.7))
    assert not result.used and result.area_cm2 < 1


def test_gas_is_not_lung():
    # Uniform -1000 HU pockets (stomach, bowel) are air but not lung parenchyma.
    gas = phantom(lungs_hu=-1000.0, noise=5.0)
    assert not lung_field(gas, (0.7, 0.7)).used
    lungs = phantom(lungs_hu=-870.0)
    assert lung_field(lungs, (0.7, 0.7)).used


def test_small_lungs_below_the_threshold():
    hu = phantom(lung_radius=(30, 20))  # 2 x 9.2 cm2
    result = lung_field(hu, (0.7, 0.7))
    assert not result.used and 15 < result.area_cm2 < 20
    assert lung_field(hu, (0.7, 0.7), LungFieldConfig(min_area_cm2=15)).used


def test_air_reaching_the_image_edge_is_not_lung():
    hu = np.full((128, 128), 40.0, dtype=np.float32)  # body fills the field of view
    hu[:, :30] = -1000.0  # air strip at the edge
    assert lung_field(hu, (0.7, 0.7)).area_cm2 == 0


def test_config_is_validated():
    with pytest.raises(ValueError, match="air_hu"):
        LungFieldConfig(air_hu=-1000)
    with pytest.raises(ValueError, match="gas_hu"):
        LungFieldConfig(gas_hu=-300)
    with pytest.raises(ValueError, match="min_fraction"):
        LungFieldConfig(min_fraction=1.5)
    with pytest.raises(ValueError, match="downsample"):
        LungFieldConfig(downsample=0)
    assert LungFieldConfig(min_area_cm2="25").min_area_cm2 == 25.0
    with pytest.raises(ValueError, match="2-D"):
        lung_field(np.zeros(10))
    # A spacing that is not two positive finite values is unknown, not an error (issue 9).
    for bad in ((0.0, 0.7), (-0.7, 0.7), (float("nan"), 0.7), (float("inf"), 0.7), ("x", 1)):
        result = lung_field(phantom(), bad)
        assert result.area_cm2 is None and "no pixel spacing" in result.reason, bad


def test_result_is_an_object():
    result = lung_field(phantom(), (0.7, 0.7))
    assert isinstance(result, LungField)
    assert not LungField(area_cm2=1.0, fraction=0.0, used=False, reason="x")


# --- real data ---------------------------------------------------------------------------


def _fields(folder):
    from ctedge.dicom import read_hu, read_study

    series = read_study(folder).series
    return [lung_field(read_hu(r), r.pixel_spacing_mm) for r in series.slices]


def test_sample_study_keeps_labelled_slices():
    # samples/P001-every8th = z positions 0, 8, ..., 144 of P001; positions 32-120 are
    # labelled infection slices (docs/dicom.md), 0 is above the lungs.
    fields = _fields(SAMPLE_STUDY)
    used = [f.used for f in fields]
    assert used[0] is False and used[-1] is False  # apex (3 cm2), base at 144 (~17 cm2)
    assert all(used[4:16])  # positions 32..120


@pytest.mark.slow
@pytest.mark.parametrize("name, row", [("covid-ct-md/COVID-19/P001", 0),
                                       ("covid-ct-md/CAP/cap001", 55)])
def test_every_labelled_slice_is_used(shared_data, name, row):
    fields = _fields(shared_data / name)
    labels = np.load(shared_data / "covid-ct-md/Slice-level-labels-updated-1.npy")[row]
    labelled = np.flatnonzero(labels[:len(fields)])
    assert labelled.size > 0
    assert all(fields[i].used for i in labelled), [i for i in labelled if not fields[i].used]
    # The top and bottom of the scan have no good lung field.
    assert not any(f.used for f in fields[:5]) and not fields[-1].used
    used = sum(f.used for f in fields)
    assert 0.7 * len(fields) < used < len(fields)


@pytest.mark.slow
def test_normal_study_skips_apex_and_base(shared_data):
    fields = _fields(shared_data / "covid-ct-md/Normal/normal001")
    assert not any(f.used for f in fields[:5]) and not any(f.used for f in fields[-5:])
    assert all(f.used for f in fields[30:110])


def test_abdomen_has_no_lung_field(shared_data):
    fields = _fields(shared_data / "edge-cases/abdomen-j2k-no-uids")
    assert sum(f.used for f in fields) <= 1
