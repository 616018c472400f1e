"""Slices -> float32 tensors through the runtime's one preprocessing, held in memory.

Every image is read once (Pillow sniffs the real format, so JPEG data behind a .png name is
fine), passed through `ctedge.preprocess.Preprocessing.from_image` and kept as a float32
(N, 3, S, S) array; augmentation then works on tensors, which is what makes CPU training fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.errors import DataError, ImageError
from ctedge.preprocess import Preprocessing

from .manifest import Sample


@dataclass(frozen=True)
class SliceSet:
    """Preprocessed slices with integer labels (index into `classes`) and patient ids."""

    inputs: np.ndarray  # float32 (N, 3, S, S), the model's input
    labels: np.ndarray  # int64 (N,)
    patients: tuple[str, ...]
    classes: tuple[str, ...]
    paths: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)


def read_image(path: Path) -> np.ndarray:
    """An image file -> uint8/uint16 numpy array (H, W) or (H, W, C)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            elif im.mode == "I;16" or im.mode.startswith("I;16"):
                return np.asarray(im, dtype=np.uint16)
            elif im.mode in ("I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                return ((arr - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
            return np.asarray(im)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: image not found; check the manifest's path or data "
                         "root") from exc
    except OSError as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); remove it from the "
                         "manifest") from exc


def load_slices(samples: list[Sample] | tuple[Sample, ...], root: str | Path,
                classes: tuple[str, ...], preprocessing: Preprocessing) -> SliceSet:
    """Read and preprocess every sample. root: folder the manifest's relative paths start from."""
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise DataError(f"labels {unknown} are not among the model's classes {list(classes)}")
    size = preprocessing.size
    inputs = np.empty((len(samples), 3, size, size), dtype=np.float32)
    for i, s in enumerate(samples):
        inputs[i] = preprocessing.from_image(read_image(s.resolve(Path(root))))
    labels = np.array([classes.index(s.label) for s in samples], dtype=np.int64)
    return SliceSet(inputs, labels, tuple(s.patient_id for s in samples), tuple(classes),
                    tuple(s.path for s in samples), tuple(s.site for s in samples))
