"""One slice from file to model input, run in worker processes.

Decoding (about 12 ms for a 512x512 JPEG Lossless slice) and preprocessing hold the GIL, so
they run in a process pool that overlaps the main process's batched inference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .dicom import SliceRef, read_hu
from .errors import CtedgeError
from .lungs import LungField, LungFieldConfig, lung_field
from .preprocess import Preprocessing


@dataclass
class PreparedSlice:
    """A decoded slice: its model input when it has lung fields, else why it is skipped."""

    index: int
    used: bool  # has lung fields and goes to the model
    tensor: np.ndarray | None  # float32 (3, size, size) while waiting for inference
    lung: LungField | None
    problem: str | None  # why the slice could not be read, None when it was
    decode_s: float
    preprocess_s: float


def prepare_slice(index: int, ref: SliceRef, preprocessing: Preprocessing,
                  lungs: LungFieldConfig) -> PreparedSlice:
    start = time.perf_counter()
    try:
        hu = read_hu(ref)
    except CtedgeError as exc:
        return PreparedSlice(index, False, None, None, str(exc), time.perf_counter() - start, 0.0)
    decoded = time.perf_counter()
    field = lung_field(hu, ref.pixel_spacing_mm, lungs)
    tensor = preprocessing.from_hu(hu) if field.used else None
    return PreparedSlice(index, field.used, tensor, field, None, decoded - start,
                         time.perf_counter() - decoded)
