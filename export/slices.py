"""Slice sets for export checks, INT8 calibration and parity: find slices, split, load.

A source is one of
- a folder of PNG/JPG slices (class sub-folders give labels; images directly inside have none),
- a CSV manifest `path,label,patient_id[,site][,split]` (ctedge.train.manifest format; relative
  paths resolve against `data_root`, by default the manifest's folder),
- a DICOM study folder, or a folder of study folders (needs `ctedge.dicom` and `ctedge.lungs`).
Every slice becomes a model input through the model's own `Preprocessing`, never another one.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge import images
from ctedge.errors import CalibrationError, ImageError
from ctedge.preprocess import Preprocessing

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class SliceRef:
    """One slice: an image file, or slice `index` (z order) of the DICOM study at `path`."""

    path: Path
    label: str | None = None
    index: int | None = None
    split: str = ""

    @property
    def key(self) -> str:
        return str(self.path) if self.index is None else f"{self.path}#{self.index}"


@dataclass(frozen=True)
class SliceSplit:
    """Disjoint calibration and parity slices, with a hash of each list."""

    calibration: tuple[SliceRef, ...]
    parity: tuple[SliceRef, ...]

    @property
    def calibration_sha256(self) -> str:
        return refs_sha256(self.calibration)

    @property
    def parity_sha256(self) -> str:
        return refs_sha256(self.parity)


def refs_sha256(refs: Sequence[SliceRef]) -> str:
    """Hash of a slice list (keys and labels, order-independent): what was used, not bytes."""
    items = sorted(f"{r.key}\t{r.label or ''}" for r in refs)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def discover(source: str | Path, data_root: str | Path | None = None) -> list[SliceRef]:
    """All slices a source names (see the module docstring); CalibrationError when none."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        refs = _from_manifest(source, Path(data_root) if data_root else source.parent)
    elif source.is_dir():
        refs = _from_folder(source)
        if not refs:
            refs = _from_dicom(source)
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        refs = [SliceRef(source)]
    else:
        raise CalibrationError(f"{source}: not found or not a slice source; pass a folder of "
                               "PNG/JPG slices, a CSV manifest or a DICOM study folder")
    if not refs:
        raise CalibrationError(f"{source}: no slices found; pass a folder of PNG/JPG slices "
                               "(class sub-folders allowed), a CSV manifest or DICOM studies")
    return refs


def _from_folder(root: Path) -> list[SliceRef]:
    refs = []
    for image in sorted(root.rglob("*")):
        if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
            rel = image.relative_to(root)
            label = rel.parts[0] if len(rel.parts) > 1 else None
            refs.append(SliceRef(image, label))
    return refs


def _from_manifest(path: Path, root: Path) -> list[SliceRef]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CalibrationError(f"{path}: unreadable manifest ({exc}); pass a CSV with columns "
                               "path,label,patient_id[,split]") from exc
    if rows and "path" not in rows[0]:
        raise CalibrationError(f"{path}: manifest has no 'path' column; pass a CSV with columns "
                               "path,label,patient_id[,split]")
    refs = []
    for row in rows:
        p = Path(row["path"].strip())
        refs.append(SliceRef(p if p.is_absolute() else root / p,
                             (row.get("label") or "").strip() or None,
                             split=(row.get("split") or "").strip()))
    return refs


def _from_dicom(root: Path) -> list[SliceRef]:
    """Lung slices of the DICOM studies under `root`, each study's slices in z order.

    A study is a folder that holds files directly; under `root/<class>/<study>/` the class
    folder is the label. Slices without lung fields (`ctedge.lungs.lung_field`) are left out,
    as the classifier never sees them.
    """
    folders = sorted({p.parent for p in root.rglob("*") if p.is_file()})
    if not folders:
        return []
    try:
        from ctedge.dicom import read_hu, read_study
        from ctedge.lungs import lung_field
    except ImportError as exc:
        raise CalibrationError(f"{root}: DICOM slices need ctedge.dicom and ctedge.lungs, which "
                               "this build lacks; pass PNG/JPG slices instead") from exc
    from ctedge.errors import CtedgeError

    refs, problems = [], []
    for folder in folders:
        rel = folder.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else None
        try:
            study = read_study(folder)
        except CtedgeError as exc:
            problems.append(f"{folder}: {exc}")
            continue
        for i, ref in enumerate(study.series.slices):
            try:
                if lung_field(read_hu(ref), ref.pixel_spacing_mm).used:
                    refs.append(SliceRef(folder, label, index=i))
            except CtedgeError:
                continue  # an unreadable slice is not used, as in classification
    if not refs and problems:
        raise CalibrationError(f"{root}: no readable CT study ({problems[0]}); pass PNG/JPG "
                               "slices or a folder of DICOM studies")
    return refs


# --- choosing slices --------------------------------------------------------------------------


def _order(refs: Sequence[SliceRef], salt: str) -> list[SliceRef]:
    """A deterministic shuffle: sort by a hash of the key (same set -> same order anywhere)."""
    return sorted(refs, key=lambda r: hashlib.sha256(f"{salt}:{r.key}".encode()).hexdigest())


def stratified(refs: Sequence[SliceRef], n: int, salt: str = "ctedge") -> list[SliceRef]:
    """Up to `n` slices, classes in proportion to their counts (round-robin by class share)."""
    by_class: dict[str, list[SliceRef]] = defaultdict(list)
    for r in _order(refs, salt):
        by_class[r.label or ""].append(r)
    total = sum(len(v) for v in by_class.values())
    if n >= total:
        return _order(refs, salt)
    # Largest-remainder apportionment keeps every class's share within one slice of exact.
    quotas = {c: n * len(v) / total for c, v in by_class.items()}
    take = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (take[c] - quotas[c], c))[: n - sum(take.values())]:
        take[c] += 1
    return [r for c in sorted(by_class) for r in by_class[c][: take[c]]]


def split_slices(source: Sequence[SliceRef], calib_size: int = 512, parity_size: int = 256,
                 parity_source: Sequence[SliceRef] | None = None) -> SliceSplit:
    """Disjoint calibration and parity slices, chosen deterministically.

    With a separate `parity_source`, calibration never takes a slice that is in it. With one
    source, rows marked split=val are calibration candidates and the rest of val plus test are
    parity candidates; without split marks the parity set is drawn first (at most half), then
    calibration from what is left. Never calibrate on a slice used for parity.
    """
    source = list(source)
    if parity_source is not None:
        parity = stratified(list(parity_source), parity_size, salt="parity")
        taken = {r.key for r in parity}
        calib = stratified([r for r in source if r.key not in taken], calib_size, salt="calib")
    elif any(r.split for r in source):
        val = [r for r in source if r.split == "val"]
        calib = stratified(val, calib_size, salt="calib")
        taken = {r.key for r in calib}
        rest = [r for r in source if r.split in ("val", "test") and r.key not in taken]
        parity = stratified(rest, parity_size, salt="parity")
    else:
        parity = stratified(source, min(parity_size, len(source) // 2), salt="parity")
        taken = {r.key for r in parity}
        calib = stratified([r for r in source if r.key not in taken], calib_size, salt="calib")
    if not calib:
        raise CalibrationError("no calibration slices left (a manifest needs rows with "
                               "split=val); pass --calib with validation slices")
    return SliceSplit(tuple(calib), tuple(parity))


# --- loading ----------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """`ctedge.images.read_image`, failing as a calibration/parity-set problem."""
    try:
        return images.read_image(path)
    except ImageError as exc:
        raise CalibrationError(f"unreadable image: {exc}; remove it from the calibration/"
                               "parity set") from exc


def load_inputs(refs: Sequence[SliceRef], preprocessing: Preprocessing) -> np.ndarray:
    """float32 (N, 3, S, S) model inputs for `refs`, through `preprocessing`."""
    out = np.empty((len(refs), *(3, preprocessing.size, preprocessing.size)), dtype=np.float32)
    studies: dict[Path, object] = {}
    for i, ref in enumerate(refs):
        if ref.index is None:
            image = read_image(ref.path)
            try:
                out[i] = preprocessing.from_image(image)
            except ValueError as exc:
                raise CalibrationError(f"{ref.path}: cannot preprocess ({exc}); remove it from "
                                       "the calibration/parity set") from exc
        else:
            out[i] = _dicom_input(ref, preprocessing, studies)
    return out


def _dicom_input(ref: SliceRef, preprocessing: Preprocessing, studies: dict) -> np.ndarray:
    from ctedge.dicom import read_hu, read_study

    if ref.path not in studies:
        studies[ref.path] = read_study(ref.path)
    return preprocessing.from_hu(read_hu(studies[ref.path].series.slices[ref.index]))


def labels_of(refs: Sequence[SliceRef]) -> list[str | None]:
    return [r.label for r in refs]
