import numpy as np
import pytest
from PIL import Image

from ctedge.errors import ImageError
from ctedge.images import read_image
from ctedge.preprocess import Preprocessing


def test_modes_read_to_the_same_model_input(tmp_path):
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(grey).save(tmp_path / "jpeg-behind.png", format="JPEG", quality=100)
    p = Preprocessing(size=32)
    want = p.from_image(read_image(tmp_path / "grey.png"))
    for name in ("rgba.png", "palette.png"):
        np.testing.assert_allclose(p.from_image(read_image(tmp_path / name)), want, atol=1e-5)
    assert np.abs(p.from_image(read_image(tmp_path / "jpeg-behind.png")) - want).max() < 0.1


def test_16_bit_png_keeps_its_range(tmp_path):
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint16 and image.max() == 63000


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="bad.png: not a readable image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="absent.png: image not found"):
        read_image(tmp_path / "absent.png")
