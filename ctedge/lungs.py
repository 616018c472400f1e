"""Lung-field selection: does a CT slice show enough lung to be worth classifying?

The paper dropped slices without good lung fields. Per slice, on a 2x-downsampled image:

    body  = largest component of HU > body_hu, holes filled        (the patient, not the table)
    air   = HU < air_hu inside the body, components >= min_component_cm2
            (lungs, airways, bowel gas; the air around the patient is outside the filled body)
    lung  = air components whose median HU is above gas_hu: lung parenchyma has a median
            near -850 HU (vessels, septa), gas in the stomach, bowel or trachea near -1000
    lung area (cm2) from the pixel spacing; the slice is used when it reaches min_area_cm2.

Without a pixel spacing the area is unknown and `min_fraction` of the image is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Pixel spacing assumed only to size components when the slice has none (mm); a typical
# 512-pixel chest field of view of ~360 mm.
_FALLBACK_SPACING_MM = 0.7


@dataclass(frozen=True)
class LungFieldConfig:
    """Thresholds of the lung-field test.

    body_hu: tissue threshold for the body mask (HU); fat (-100) and soft tissue pass,
        lung and air do not. Default -500.
    air_hu: lung/air threshold inside the body (HU). Default -400, so ground-glass opacity
        (-700 to -300 HU) mostly still counts as lung; dense consolidation does not.
    min_component_cm2: air components smaller than this (bowel gas bubbles, small airways at
        the apex) are ignored (cm2). Default 1.0.
    gas_hu: air components with a median below this are gas, not lung (HU). Default -950
        (measured: lungs -790 to -870, stomach/bowel gas -955 to -990, trachea about -940).
        Severe emphysema can approach it; lower it for such patients.
    min_area_cm2: a slice is used when its lung area reaches this (cm2). Default 20.
    min_fraction: the same test as a fraction of the image area, used when the pixel spacing
        is unknown. Default 0.03 (about 20 cm2 of a 36 cm field of view).
    downsample: integer block size for the computation (2 halves each side: ~4x faster).
    """

    body_hu: float = -500.0
    air_hu: float = -400.0
    gas_hu: float = -950.0
    min_component_cm2: float = 1.0
    min_area_cm2: float = 20.0
    min_fraction: float = 0.03
    downsample: int = 2

    def __post_init__(self):
        for name in ("body_hu", "air_hu", "gas_hu", "min_component_cm2", "min_area_cm2",
                     "min_fraction"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "downsample", int(self.downsample))
        if not -1000.0 < self.air_hu <= self.body_hu + 300.0:
            raise ValueError(f"air_hu must be above -1000 HU and not far above body_hu, got "
                             f"air_hu={self.air_hu}, body_hu={self.body_hu}")
        if not -1100.0 <= self.gas_hu < self.air_hu:
            raise ValueError(f"gas_hu must be in [-1100, air_hu) HU, got {self.gas_hu}")
        if self.min_component_cm2 < 0 or self.min_area_cm2 < 0:
            raise ValueError("min_component_cm2 and min_area_cm2 must be >= 0 cm2")
        if not 0.0 <= self.min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1), got {self.min_fraction}")
        if not 1 <= self.downsample <= 8:
            raise ValueError(f"downsample must be 1..8, got {self.downsample}")


@dataclass(frozen=True)
class LungField:
    """Lung found in one slice.

    area_cm2: lung area in cm2, None when the pixel spacing is unknown.
    fraction: lung area as a fraction of the image area.
    used: whether the slice passes the lung-field test. reason: one line saying why.
    """

    area_cm2: float | None
    fraction: float
    used: bool
    reason: str

    def __bool__(self) -> bool:
        return self.used


def lung_field(hu: np.ndarray, pixel_spacing_mm=None,
               config: LungFieldConfig = LungFieldConfig()) -> LungField:
    """Measure the lung field of one axial slice in HU (2-D array, any float/int dtype).

    pixel_spacing_mm: (row, column) spacing in mm, or None; a spacing that is not two
        positive finite values counts as unknown.

    Raises ValueError only for an array that is not 2-D; a slice too small to measure, or one
    with non-finite values, is returned as not used, with the reason.
    """
    from scipy import ndimage as ndi

    hu = np.asarray(hu)
    if hu.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {hu.shape}")
    if min(hu.shape) < 2 * config.downsample:
        return LungField(None, 0.0, False, f"image of {hu.shape[0]} x {hu.shape[1]} pixels is "
                         "too small for the lung-field test")
    with np.errstate(all="ignore"):
        small = _block_mean(hu, config.downsample)
    if not np.isfinite(small).all():
        return LungField(None, 0.0, False, "the slice holds non-finite values")
    spacing = _spacing(pixel_spacing_mm)
    pixel_cm2 = (spacing[0] if spacing else _FALLBACK_SPACING_MM) \
        * (spacing[1] if spacing else _FALLBACK_SPACING_MM) / 100.0 * config.downsample ** 2

    body = _largest_component(small > config.body_hu, ndi)
    if body is None:
        return _result(0, small.size, pixel_cm2, spacing, config, "no body in the image")
    body = _fill_holes(body, ndi)
    air = (small < config.air_hu) & body
    labels, n = ndi.label(air)
    if n == 0:
        return _result(0, small.size, pixel_cm2, spacing, config, "no air inside the body")
    sizes = np.bincount(labels.ravel())[1:]
    # The filled body cannot reach air outside it, but a body cut by the image edge can:
    # components touching the border are outside air, not lung.
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes[border[border > 0] - 1] = 0
    ids = np.flatnonzero(sizes * pixel_cm2 >= config.min_component_cm2) + 1
    if ids.size:
        # median >= gas_hu  <=>  at most half of the component lies below gas_hu (a bincount,
        # far cheaper than a per-component median)
        below = np.bincount(labels[small < config.gas_hu], minlength=n + 1)
        ids = ids[2 * below[ids] <= sizes[ids - 1]]
    lung_pixels = int(sizes[ids - 1].sum())
    return _result(lung_pixels, small.size, pixel_cm2, spacing, config, None)


def _result(pixels: int, total: int, pixel_cm2: float, spacing, config, why) -> LungField:
    fraction = pixels / total
    area = pixels * pixel_cm2 if spacing else None
    if area is not None:
        used = area >= config.min_area_cm2
        measure = f"lung area {area:.1f} cm2 {'>=' if used else '<'} {config.min_area_cm2:g} cm2"
    else:
        used = fraction >= config.min_fraction
        measure = (f"lung fraction {fraction:.3f} {'>=' if used else '<'} "
                   f"{config.min_fraction:g} (no pixel spacing)")
    return LungField(area_cm2=area, fraction=fraction, used=used,
                     reason=f"{why}; {measure}" if why else measure)


def _spacing(value) -> tuple[float, float] | None:
    """Two positive finite spacings (mm), else None (unknown: the fraction test applies)."""
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not (0 < row < float("inf") and 0 < col < float("inf")):
        return None
    return row, col


def _block_mean(hu: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return hu.astype(np.float32, copy=False)
    h, w = (hu.shape[0] // k) * k, (hu.shape[1] // k) * k
    if h == 0 or w == 0:
        return hu.astype(np.float32, copy=False)
    # Sum of k*k strided views: several times faster than reshape(...).mean(axis=(1, 3)).
    out = np.zeros((h // k, w // k), dtype=np.float32)
    for i in range(k):
        for j in range(k):
            out += hu[i:h:k, j:w:k]
    out *= np.float32(1.0 / (k * k))
    return out


def _fill_holes(mask: np.ndarray, ndi) -> np.ndarray:
    """Holes = background components not touching the border (faster than binary_fill_holes)."""
    labels, n = ndi.label(~mask)
    if n == 0:
        return mask
    outside = np.zeros(n + 1, dtype=bool)
    outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    outside[0] = False
    return ~outside[labels]


def _largest_component(mask: np.ndarray, ndi) -> np.ndarray | None:
    labels, n = ndi.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())
