"""Histogram equalisation in the one preprocessing definition."""

import numpy as np
import pytest

from ctedge.preprocess import Preprocessing, equalize


def _lesioned_slice(window_low=0.0, window_high=1.0, gamma=1.0):
    """A body with two lungs and a ground-glass patch, seen through some window and gamma."""
    yy, xx = np.mgrid[:256, :256]
    tissue = np.full((256, 256), 0.05)  # air
    tissue[((yy - 128) / 100) ** 2 + ((xx - 128) / 120) ** 2 <= 1] = 0.85
    lungs = (((yy - 128) / 60) ** 2 + ((xx - 85) / 35) ** 2 <= 1) | \
        (((yy - 128) / 60) ** 2 + ((xx - 171) / 35) ** 2 <= 1)
    tissue[lungs] = 0.2
    tissue[((yy - 110) / 15) ** 2 + ((xx - 85) / 15) ** 2 <= 1] = 0.5  # ground glass
    tissue += np.random.default_rng(0).normal(0, 0.01, tissue.shape)
    grey = (window_low + (window_high - window_low) * np.clip(tissue, 0, 1)) ** gamma
    return grey.astype(np.float32)


def test_equalize_is_monotone_and_spans_zero_to_one():
    grey = _lesioned_slice()
    out = equalize(grey)
    assert out.dtype == np.float32 and out.shape == grey.shape
    assert out.min() == 0.0 and out.max() == 1.0
    order = np.argsort(grey.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # grey-value order kept
    flat = np.full((8, 8), 0.3, np.float32)
    assert np.array_equal(equalize(flat), flat)  # one level: left as it is


def test_equalized_input_does_not_depend_on_window_or_gamma():
    pp = Preprocessing(size=64, mean=(0, 0, 0), std=(1, 1, 1), crop="lungs",
                       intensity="equalize")
    plain = Preprocessing(size=64, mean=(0, 0, 0), std=(1, 1, 1), crop="lungs")
    reference = _lesioned_slice()
    other = _lesioned_slice(0.1, 0.8, gamma=1.6)  # another window, another gamma
    windowed_gap = np.abs(plain.from_windowed(reference) - plain.from_windowed(other)).mean()
    equalized_gap = np.abs(pp.from_windowed(reference) - pp.from_windowed(other)).mean()
    assert windowed_gap > 0.05 and equalized_gap < windowed_gap / 4


def test_intensity_travels_in_the_metadata():
    pp = Preprocessing(size=64, crop="lungs", intensity="equalize")
    assert Preprocessing.from_dict(pp.to_dict()) == pp
    assert Preprocessing.from_dict({"size": 64}).intensity == "window"  # older models
    with pytest.raises(ValueError, match="intensity"):
        Preprocessing(intensity="clahe")
