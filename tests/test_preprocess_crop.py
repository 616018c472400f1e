"""The body crop of the one preprocessing definition."""

import numpy as np
import pytest

from ctedge.preprocess import Preprocessing, crop_to_body


def _slice_with_body(h=512, w=512):
    grey = np.full((h, w), 0.2, np.float32)  # air around the patient
    yy, xx = np.mgrid[:h, :w]
    body = ((yy - 260) / 150) ** 2 + ((xx - 250) / 200) ** 2 <= 1
    grey[body] = 0.9
    lungs = (((yy - 250) / 80) ** 2 + ((xx - 180) / 50) ** 2 <= 1) | \
        (((yy - 250) / 80) ** 2 + ((xx - 320) / 50) ** 2 <= 1)
    grey[lungs] = 0.35
    return grey


def test_crop_finds_the_body_bounding_box():
    grey = _slice_with_body()
    out = crop_to_body(grey)
    h, w = out.shape
    # body spans rows 110..410 and columns 50..450; 3% margin (15 px) around it
    assert 290 <= h <= 340 and 390 <= w <= 440
    assert out.mean() > grey.mean()


def test_crop_leaves_tight_or_flat_images_whole():
    flat = np.full((100, 120), 0.5, np.float32)
    assert crop_to_body(flat).shape == flat.shape
    tight = _slice_with_body()[110:410, 50:450]
    assert crop_to_body(tight).shape[0] >= 0.95 * tight.shape[0]


def test_preset_and_metadata_round_trip():
    pp = Preprocessing.ct_pretrained(64)
    assert pp.crop == "body" and pp.mean == (0.0, 0.0, 0.0)
    assert Preprocessing.from_dict(pp.to_dict()) == pp
    assert Preprocessing.from_dict({"size": 64}).crop == "none"  # models made before the crop
    with pytest.raises(ValueError, match="crop"):
        Preprocessing(crop="heart")
    x = pp.from_windowed(_slice_with_body())
    assert x.shape == (3, 64, 64) and np.isfinite(x).all()


def test_lung_crop_is_tighter_than_the_body_crop():
    grey = _slice_with_body()
    body = crop_to_body(grey)
    lungs = crop_to_body(grey, lungs=True)
    # lungs span rows 170..330 and columns 130..370 (+3% margins)
    assert lungs.shape[0] < body.shape[0] and lungs.shape[1] < body.shape[1]
    assert 160 <= lungs.shape[0] <= 200 and 240 <= lungs.shape[1] <= 280
    no_lungs = grey.copy()
    no_lungs[(grey > 0.3) & (grey < 0.5)] = 0.9  # fill the lungs in: nothing dark inside
    assert crop_to_body(no_lungs, lungs=True).shape == crop_to_body(no_lungs).shape


def test_crop_box_is_what_the_model_sees():
    grey = _slice_with_body()
    for crop in ("none", "body", "lungs"):
        pp = Preprocessing(size=64, crop=crop)
        top, bottom, left, right = pp.crop_box(grey)
        same = Preprocessing(size=64).from_windowed(grey[top:bottom, left:right])
        assert np.array_equal(pp.from_windowed(grey), same)
    assert Preprocessing(crop="none").crop_box(grey) == (0, 512, 0, 512)
