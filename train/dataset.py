"""Slices -> float32 tensors through the runtime's one preprocessing, held in memory.

Every image is read once (Pillow sniffs the real format, so JPEG data behind a .png name is
fine), passed through `ctedge.preprocess.Preprocessing.from_image` and kept as a float32
(N, 3, S, S) array; augmentation then works on tensors, which is what makes CPU training fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.images import read_image
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


def concat_slices(parts: list[SliceSet]) -> SliceSet:
    """One SliceSet from several with the same classes (paths and sites kept per slice)."""
    if not parts:
        raise DataError("nothing to concatenate")
    classes = parts[0].classes
    if any(p.classes != classes for p in parts):
        raise DataError("slice sets with different classes cannot be combined")

    def joined(name):
        return tuple(v for p in parts for v in (getattr(p, name) or ("",) * len(p)))

    return SliceSet(np.concatenate([p.inputs for p in parts]),
                    np.concatenate([p.labels for p in parts]), joined("patients"), classes,
                    joined("paths"), joined("sites"))


def subset(data: SliceSet, mask: np.ndarray) -> SliceSet:
    """The slices where `mask` (bool, one per slice) is true."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))

    def pick(values):
        return tuple(values[i] for i in idx) if values else ()

    return SliceSet(data.inputs[idx], data.labels[idx], pick(data.patients), data.classes,
                    pick(data.paths), pick(data.sites))
