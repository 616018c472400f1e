"""CSV manifests: one row per slice image, with its label, patient and (optionally) site and split.

Columns: `path,label,patient_id[,site][,split]`. `path` is relative to the manifest's data root
(given on the command line, e.g. `../shared/data`), or absolute. `split` is one of
`train`, `val`, `test` when an official split exists; otherwise splits are made by patient
(`ctedge.train.splits`). `site` names an external test site (evaluated per site).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ctedge.errors import DataError
from ctedge.io import atomic_write

REQUIRED = ("path", "label", "patient_id")
OPTIONAL = ("site", "split")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One slice image: where it is, its class, whose it is."""

    path: str
    label: str
    patient_id: str
    site: str = ""
    split: str = ""

    def __post_init__(self):
        for name in ("path", "label", "patient_id", "site", "split"):
            object.__setattr__(self, name, str(getattr(self, name) or "").strip())
        if not self.path or not self.label or not self.patient_id:
            raise ValueError("path, label and patient_id must be non-empty")
        if self.split and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or empty, got {self.split!r}")

    def resolve(self, root: Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else Path(root) / p


def read_manifest(path: str | Path) -> list[Sample]:
    """Read a manifest CSV; raise DataError naming the file and row on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; write one with columns "
                        f"{','.join(REQUIRED)}[,site][,split] (see docs/training.md)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; needed: {', '.join(REQUIRED)}")
        samples = []
        for line, row in enumerate(reader, start=2):
            try:
                samples.append(Sample(**{k: row.get(k, "") for k in REQUIRED + OPTIONAL}))
            except ValueError as exc:
                raise DataError(f"{path}:{line}: {exc}; fix that row") from exc
    if not samples:
        raise DataError(f"{path}: manifest has no rows")
    return samples


def write_manifest(path: str | Path, samples: list[Sample]) -> None:
    """Write samples as CSV (atomically); site/split columns only when any sample has one."""
    columns = list(REQUIRED) + [c for c in OPTIONAL if any(getattr(s, c) for s in samples)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for s in samples:
        writer.writerow([getattr(s, c) for c in columns])
    atomic_write(path, buf.getvalue())


def scan_folder(root: str | Path) -> list[Sample]:
    """A folder per class of slice images -> samples (paths relative to `root`).

    Without patient information each image counts as its own patient, unless its file name
    starts with `<patient>__` (double underscore), e.g. `p017__slice042.png`: then the part
    before `__` is the patient id. Images of one patient must never straddle a split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass a folder with one sub-folder per class")
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(class_dir.rglob("*")):
            if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
                continue
            rel = image.relative_to(root).as_posix()
            stem = image.stem
            patient = stem.split("__", 1)[0] if "__" in stem else f"{class_dir.name}/{rel}"
            samples.append(Sample(rel, class_dir.name, patient))
    if not samples:
        raise DataError(f"{root}: no images found; expected <class>/<image>.png|jpg sub-folders")
    return samples
