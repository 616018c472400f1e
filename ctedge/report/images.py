"""Slice pictures for the report: the lung window, class-activation maps laid over it.

numpy + Pillow only. A map (h, w) covers the model input, which is the slice cropped (to the
body or the lung fields, when the model's preprocessing says so), padded to a square (centred,
as in ctedge.preprocess) and resized; `map_on_slice` undoes all three so the map sits on the
slice's own pixels.
"""

from __future__ import annotations

import numpy as np

# A perceptually ordered dark-to-bright ramp (close to matplotlib's "inferno"), as anchors.
_ANCHORS = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
    [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)),
                           _ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def grey_image(windowed: np.ndarray):
    """A float image in [0, 1] (the lung window) -> 8-bit grey PIL image."""
    from PIL import Image

    return Image.fromarray(np.round(np.clip(windowed, 0, 1) * 255).astype(np.uint8), "L")


def map_on_slice(cam: np.ndarray, shape: tuple[int, int],
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A (h, w) map over the padded square model input -> float32 (H, W) over the slice,
    bilinear, in the map's own units. box: (top, bottom, left, right) of the part of the slice
    the model saw (`Preprocessing.crop_box`); outside it the map holds its minimum."""
    from PIL import Image

    top, bottom, left, right = box or (0, shape[0], 0, shape[1])
    rows, cols = bottom - top, right - left
    side = max(rows, cols)
    square = np.asarray(Image.fromarray(np.asarray(cam, dtype=np.float32), "F")
                        .resize((side, side), Image.Resampling.BILINEAR))
    pad_top, pad_left = (side - rows) // 2, (side - cols) // 2
    inner = square[pad_top:pad_top + rows, pad_left:pad_left + cols]
    if (rows, cols) == tuple(shape):
        return inner
    out = np.full(shape, inner.min(), dtype=np.float32)
    out[top:bottom, left:right] = inner
    return out


def normalise(cam: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a CAM's absolute level is the class logit; its shape is the evidence).
    A constant map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    if high - low <= 1e-12:
        return np.zeros_like(cam)
    return (cam - low) / (high - low)


def overlay(windowed: np.ndarray, cam_norm: np.ndarray, strength: float = 0.6):
    """The grey slice with a [0, 1] map blended on top (colour ramp, opacity rising with the
    value, so low-evidence areas keep the plain image). Returns an RGB PIL image."""
    from PIL import Image

    grey = np.clip(windowed, 0, 1)[..., None] * 255.0
    colour = _LUT[np.round(np.clip(cam_norm, 0, 1) * 255).astype(np.uint8)].astype(np.float32)
    alpha = (strength * np.clip(cam_norm, 0, 1))[..., None]
    out = grey * (1 - alpha) + colour * alpha
    return Image.fromarray(np.round(out).astype(np.uint8), "RGB")


def colour_bar(width: int, height: int):
    """The colour ramp as a horizontal RGB PIL image (low on the left)."""
    from PIL import Image

    ramp = _LUT[np.linspace(0, 255, width).astype(np.uint8)]
    return Image.fromarray(np.repeat(ramp[None], height, axis=0), "RGB")


def thumbnail(image, side: int):
    """`image` scaled to fit a side x side box (aspect kept), area-averaged."""
    from PIL import Image

    scale = side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)


def png_bytes(image, compress_level: int = 3) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=compress_level)
    return buffer.getvalue()


def jpeg_bytes(image, quality: int = 90) -> bytes:
    """For the page's pictures: ~5x faster to encode and smaller than PNG at this size."""
    import io

    buffer = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
        buffer, "JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
