"""The one preprocessing definition, shared by training, calibration and every backend.

    HU --(lung window)--> [0, 1] --(crop to the body)--> (equalise) --> (pad to square)
       --> (area resize) --> (mean/std) --> float32 3 x size x size, the grey channel repeated
       three times

PNG/JPG slices (already windowed by whoever made them, no HU) enter after the windowing step.
The parameters travel inside the model artifact (`ctedge.artifact.ModelInfo`) and are read back
at inference, so training and deployment cannot drift apart.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Parameters of the slice-to-tensor transform.

    window_level, window_width: lung window in HU (default level -600, width 1500, so
        -1350 HU maps to 0 and +150 HU to 1).
    size: output height and width in pixels.
    mean, std: per-channel normalisation applied to the [0, 1] image (ImageNet's by default).
    crop: "none"; "body": crop to the bounding box of the body (the largest bright
        component above an Otsu threshold, plus a 3% margin) before padding, so that a scanner
        slice with its full field of view, table and air looks like a tight figure crop;
        "lungs": crop further to the box of the dark regions inside the body (the lung fields),
        which also gives small lesions more pixels; falls back to the body box.
    intensity: "window": the windowed grey values as they are; "equalize": histogram
        equalisation of the cropped image (256 levels, darkest level to 0, brightest to 1), so
        that every source's window, gamma and contrast map to one intensity distribution while
        the order of the grey values (aerated lung < ground glass < consolidation) is kept.
    The image is padded to a square with 0 (black, i.e. air after windowing) before resizing,
    so the aspect ratio is kept. Resizing is area (box) interpolation. The three channels are
    the same grey image; no extra channels are used.
    """

    window_level: float = -600.0
    window_width: float = 1500.0
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: str = "none"
    intensity: str = "window"

    def __post_init__(self):
        object.__setattr__(self, "window_level", float(self.window_level))
        object.__setattr__(self, "window_width", float(self.window_width))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.window_width <= 0:
            raise ValueError(f"window_width must be > 0 HU, got {self.window_width}")
        if not 16 <= self.size <= 2048:
            raise ValueError(f"size must be between 16 and 2048 pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values, one per channel")
        if min(self.std) <= 0:
            raise ValueError(f"std values must be > 0, got {self.std}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")

    @classmethod
    def lung(cls, size: int = 224) -> Preprocessing:
        """The default: lung window W1500/L-600, ImageNet normalisation."""
        return cls(size=size)

    @classmethod
    def ct_pretrained(cls, size: int = 160) -> Preprocessing:
        """For CT-pretrained backbones (Astra/Merlin): HU -1000..200 to [0, 1], no mean/std,
        cropped to the body."""
        return cls(window_level=-400.0, window_width=1200.0, size=size, mean=(0.0, 0.0, 0.0),
                   std=(1.0, 1.0, 1.0), crop="body")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing parameters {sorted(unknown)}")
        return cls(**data)

    # --- the transform -------------------------------------------------------------------

    def window(self, hu: np.ndarray) -> np.ndarray:
        """HU (any float or int array) -> float32 in [0, 1] through the lung window."""
        low = self.window_level - self.window_width / 2
        out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(self.window_width)
        return np.clip(out, 0.0, 1.0, out=out)

    def from_hu(self, hu: np.ndarray) -> np.ndarray:
        """A 2-D slice in HU -> float32 (3, size, size) model input."""
        return self.from_windowed(self.window(hu))

    def from_image(self, image: np.ndarray) -> np.ndarray:
        """An already windowed 8/16-bit or float image (H, W), (H, W, 3) or (H, W, 4) -> input.

        Colour images are converted to grey with ITU-R 601 weights; alpha is dropped.
        Integer images are scaled by their dtype's maximum; float images must be in [0, 1].
        """
        image = np.asarray(image)
        if image.ndim == 3:
            if image.shape[2] == 4:
                image = image[..., :3]
            if image.shape[2] == 3:
                weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
                scale = _dtype_max(image.dtype)
                grey = image.astype(np.float32) @ weights / np.float32(scale)
            elif image.shape[2] == 1:
                grey = image[..., 0].astype(np.float32) / np.float32(_dtype_max(image.dtype))
            else:
                raise ValueError(f"expected 1, 3 or 4 channels, got {image.shape[2]}")
        elif image.ndim == 2:
            grey = image.astype(np.float32) / np.float32(_dtype_max(image.dtype))
        else:
            raise ValueError(f"expected a 2-D or 3-D image, got shape {image.shape}")
        return self.from_windowed(np.clip(grey, 0.0, 1.0))

    def crop_box(self, grey: np.ndarray) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the part of a windowed slice that the model sees
        (before padding to a square): the whole slice unless `crop` says otherwise."""
        grey = np.asarray(grey)
        if self.crop == "none":
            return (0, grey.shape[0], 0, grey.shape[1])
        return body_box(grey, lungs=self.crop == "lungs")

    def from_windowed(self, grey: np.ndarray) -> np.ndarray:
        """A 2-D float image in [0, 1] -> float32 (3, size, size) model input."""
        grey = np.asarray(grey, dtype=np.float32)
        if grey.ndim != 2 or min(grey.shape) < 1:
            raise ValueError(f"expected a non-empty 2-D image, got shape {grey.shape}")
        if self.crop != "none":
            top, bottom, left, right = self.crop_box(grey)
            grey = grey[top:bottom, left:right]
        if self.intensity == "equalize":
            grey = equalize(grey)
        square = _pad_to_square(grey)
        resized = area_resize(square, self.size)
        out = np.empty((3, self.size, self.size), dtype=np.float32)
        for c in range(3):
            out[c] = (resized - np.float32(self.mean[c])) / np.float32(self.std[c])
        return out


CROPS = ("none", "body", "lungs")
INTENSITIES = ("window", "equalize")


def equalize(grey: np.ndarray, levels: int = 256) -> np.ndarray:
    """Histogram equalisation of a [0, 1] image: each pixel becomes the fraction of pixels at or
    below its level, rescaled so the darkest level present maps to 0 and the brightest to 1.
    Monotone, so grey-value order is kept; an image of one level stays as it is."""
    q = np.minimum((grey * levels).astype(np.intp), levels - 1)
    counts = np.bincount(q.ravel(), minlength=levels)
    cdf = np.cumsum(counts)
    first = cdf[np.flatnonzero(counts)[0]]
    if cdf[-1] == first:
        return np.asarray(grey, dtype=np.float32)
    lut = ((cdf - first) / (cdf[-1] - first)).clip(0.0, 1.0).astype(np.float32)
    return lut[q]


def crop_to_body(grey: np.ndarray, margin: float = 0.03, lungs: bool = False) -> np.ndarray:
    """The slice cropped to `body_box` (a view, no copy)."""
    top, bottom, left, right = body_box(grey, margin, lungs)
    return grey[top:bottom, left:right]


def body_box(grey: np.ndarray, margin: float = 0.03, lungs: bool = False
             ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), in pixels, of the body in a windowed [0, 1] slice.

    The body is the largest connected component brighter than the Otsu threshold (after a
    small opening) of a subsampled copy (about 128 px on the long side: well under 1 ms).
    When nothing plausible is found (no contrast, or a component under 5% of the image) the
    whole slice is the box: a tight crop (a figure from a paper) is left as it is.
    lungs: the box of the dark components (each >= 1% of the body) enclosed by the body
    instead, when they cover >= 5% of it; else the body box.
    """
    from scipy import ndimage

    h, w = grey.shape
    whole = (0, h, 0, w)
    step = max(1, max(h, w) // 128)
    small = grey[::step, ::step]
    threshold = _otsu(small)
    if threshold is None:
        return whole
    # an opening cuts thin bridges, so the scanner table does not join the body
    labels, n = ndimage.label(ndimage.binary_opening(small > threshold, iterations=2))
    if n == 0:
        return whole
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    if sizes[biggest - 1] < 0.05 * small.size:
        return whole
    region = labels == biggest
    if lungs:
        body = ndimage.binary_fill_holes(region)
        dark, n_dark = ndimage.label(body & ~region)
        if n_dark:
            dark_sizes = np.bincount(dark.ravel())[1:]
            keep = np.flatnonzero(dark_sizes >= 0.01 * body.sum()) + 1
            if dark_sizes[keep - 1].sum() >= 0.05 * body.sum():
                region = np.isin(dark, keep)
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    pad_r, pad_c = int(margin * h), int(margin * w)
    return (max(0, int(rows[0]) * step - pad_r), min(h, (int(rows[-1]) + 1) * step + pad_r),
            max(0, int(cols[0]) * step - pad_c), min(w, (int(cols[-1]) + 1) * step + pad_c))


def _otsu(image: np.ndarray, bins: int = 64) -> float | None:
    """Otsu's threshold of a [0, 1] image, or None when it has no contrast."""
    hist, edges = np.histogram(image, bins=bins, range=(0.0, 1.0))
    total = hist.sum()
    if total == 0:
        return None
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centres)
    mean = m0[-1]
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return None
    between = np.zeros(bins)
    between[valid] = (mean * w0[valid] - total * m0[valid]) ** 2 / (w0[valid] * w1[valid])
    return float(edges[int(np.argmax(between)) + 1])


def _dtype_max(dtype: np.dtype) -> float:
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    if dtype == np.bool_:
        return 1.0
    return 1.0


def _pad_to_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    if h == w:
        return image
    n = max(h, w)
    out = np.zeros((n, n), dtype=image.dtype)
    top, left = (n - h) // 2, (n - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square 2-D float32 image to size x size by area (box) averaging.

    Each output pixel is the mean of the input area it covers, with fractional overlaps
    weighted, done as two matrix products (exact for any ratio, up or down).
    """
    rows = _area_weights(image.shape[0], size)
    cols = _area_weights(image.shape[1], size)
    return (rows @ image @ cols.T).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix whose row i averages input pixels [i*s, (i+1)*s), s = n_in/n_out."""
    scale = n_in / n_out
    starts = np.arange(n_out) * scale
    ends = starts + scale
    edges = np.arange(n_in + 1, dtype=np.float64)
    lo = np.maximum(starts[:, None], edges[None, :-1])
    hi = np.minimum(ends[:, None], edges[None, 1:])
    weights = (np.clip(hi - lo, 0.0, None) / scale).astype(np.float32)
    weights.setflags(write=False)
    return weights
