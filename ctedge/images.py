"""Reading PNG/JPG slices (already windowed, no HU): one reader for training, calibration,
parity and benchmarks, so every tool sees the same pixels. Pillow decides the format from the
content, not the suffix (some public sets hold JPEG data behind a .png name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ImageError


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> uint8/uint16 (H, W) or (H, W, C) array, or float32 in [0, 1] for
    32-bit integer or float images; feed it to `Preprocessing.from_image`."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            elif im.mode.startswith("I;16"):
                return np.asarray(im, dtype=np.uint16)
            elif im.mode in ("I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                return ((arr - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
            return np.asarray(im)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: image not found; check the manifest's path or data "
                         "root") from exc
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ImageError(f"{path}: not a readable image ({exc}); remove it from the "
                         "manifest or folder") from exc
