import numpy as np
import pytest

from ctedge.preprocess import Preprocessing, area_resize


def test_window_maps_lung_window_edges():
    p = Preprocessing()  # level -600, width 1500: -1350 HU -> 0, +150 HU -> 1
    out = p.window(np.array([-2000, -1350, -600, 150, 3000], dtype=np.int16))
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1], atol=1e-6)
    assert out.dtype == np.float32


def test_from_hu_shape_normalisation_and_channels():
    p = Preprocessing()
    x = p.from_hu(np.full((512, 512), -600.0, dtype=np.float32))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    for c in range(3):  # grey 0.5 normalised per channel
        np.testing.assert_allclose(x[c], (0.5 - p.mean[c]) / p.std[c], atol=1e-5)


def test_area_resize_averages_blocks_exactly():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = area_resize(image, 2)
    np.testing.assert_allclose(out, [[2.5, 4.5], [10.5, 12.5]])


def test_area_resize_fractional_ratio_preserves_mean():
    rng = np.random.default_rng(0)
    image = rng.random((512, 512), dtype=np.float32)
    out = area_resize(image, 224)
    assert out.shape == (224, 224)
    assert abs(out.mean() - image.mean()) < 1e-4


def test_non_square_image_is_padded_with_black_keeping_aspect():
    p = Preprocessing(size=32, mean=(0, 0, 0), std=(1, 1, 1))
    grey = np.ones((16, 32), dtype=np.float32)
    x = p.from_windowed(grey)
    assert x[0, 0, 0] == 0 and x[0, -1, 0] == 0  # top and bottom rows padded
    np.testing.assert_allclose(x[0, 8:24], 1.0)


def test_from_image_rgb_rgba_and_8bit_agree():
    p = Preprocessing(size=32)
    grey8 = np.full((40, 40), 128, dtype=np.uint8)
    rgb = np.stack([grey8] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((40, 40, 1), 255, np.uint8)], axis=-1)
    a, b, c = p.from_image(grey8), p.from_image(rgb), p.from_image(rgba)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    # a windowed image enters after the windowing step: same tensor as the matching HU slice
    hu = np.full((40, 40), p.window_level - p.window_width / 2 + p.window_width * 128 / 255)
    np.testing.assert_allclose(p.from_hu(hu), a, atol=1e-5)


def test_round_trip_and_validation():
    p = Preprocessing(window_level=-500, size=256)
    assert Preprocessing.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="window_width"):
        Preprocessing(window_width=0)
    with pytest.raises(ValueError, match="unknown"):
        Preprocessing.from_dict({"gamma": 2})
