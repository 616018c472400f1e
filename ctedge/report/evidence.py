"""What a study report shows, gathered once from a classified study: the decision, per-class
evidence, the probability profile along z, the strongest slices per class (re-read from disk,
lung window, with and without the class-activation map), skipped slices, model and timings.

Free of patient identifiers by construction: the study is named by a hash of its
StudyInstanceUID; no path, name, date or accession number is copied in.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from ..errors import CtedgeError
from ..preprocess import Preprocessing
from ..result import StudyResult
from . import images

PER_CLASS = 3  # strongest slices shown per class
THUMB = 224  # picture side in pixels


@dataclass(frozen=True)
class SlicePicture:
    """One slice shown for one class: its lung-window picture and, if maps exist, the
    overlay. probability: of that class; flagged: probability >= the robust threshold."""

    index: int
    z_mm: float | None
    label: str
    probability: float
    flagged: bool
    plain: object  # PIL image
    overlay: object | None  # PIL image, None without maps


@dataclass(frozen=True)
class ClassRow:
    label: str
    top1_slices: int
    above_threshold: int
    max_probability: float
    evidence: float
    pictures: list[SlicePicture]


@dataclass(frozen=True)
class SkippedRun:
    """Consecutive skipped slices sharing one reason category."""

    first: int
    last: int
    z_first: float | None
    z_last: float | None
    category: str
    details: list[str]


@dataclass(frozen=True)
class ReportData:
    study_hash: str
    decision: object  # StudyDecision
    classes: list[str]
    negative_class: str
    threshold: float
    required_slices: int
    slices_read: int
    slices_used: int
    z_mm: list[float | None]
    probabilities: list[list[float] | None]  # per slice in z order; None: skipped
    rows: list[ClassRow]
    skipped: list[SkippedRun]
    model: dict  # name, sha256, precision, backend
    timings_s: dict
    maps_available: bool
    notes: list[str] = field(default_factory=list)


def gather(result: StudyResult, per_class: int = PER_CLASS, thumb: int = THUMB) -> ReportData:
    """Collect everything the report shows; re-reads only the slices it pictures."""
    from ..decision import DecisionThresholds

    start = time.perf_counter()
    classes = list(result.model["classes"])
    thresholds = DecisionThresholds.from_dict(result.model.get("thresholds", {}))
    pre = Preprocessing.from_dict(result.model["preprocessing"]) \
        if "preprocessing" in result.model else Preprocessing()
    used = [s for s in result.slices if s.used]
    maps = result.maps or {}
    notes = []
    if result.maps is None:
        notes.append("Class-activation maps unavailable: this model has no maps output "
                     "(add it with `ctedge export MODEL.onnx --out NEW.onnx`).")

    chosen = {c: sorted(used, key=lambda s, c=c: -s.probabilities[c])[:per_class]
              for c in classes}
    windows = _read_windows({s.index for picks in chosen.values() for s in picks},
                            result, pre, notes)
    by_label = {e.label: e for e in result.decision.classes}
    rows = []
    for ci, c in enumerate(classes):
        pictures = []
        for s in chosen[c]:
            window = windows.get(s.index)
            if window is None:
                continue
            cam = maps.get(s.index)
            over = None
            if cam is not None:
                norm = images.normalise(images.map_on_slice(cam[ci], window.shape,
                                                            pre.crop_box(window)))
                over = images.thumbnail(images.overlay(window, norm), thumb)
            p = s.probabilities[c]
            pictures.append(SlicePicture(s.index, s.z_mm, c, p, p >= thresholds.probability,
                                         images.thumbnail(images.grey_image(window), thumb),
                                         over))
        e = by_label.get(c)
        rows.append(ClassRow(c, e.top1_slices if e else 0, e.above_threshold if e else 0,
                             e.max_probability if e else 0.0, e.evidence if e else 0.0,
                             pictures))
    timings = dict(result.timings_s)
    timings["report_gather"] = time.perf_counter() - start
    model = result.model
    return ReportData(
        study_hash=study_hash(result), decision=result.decision, classes=classes,
        negative_class=model.get("negative_class", classes[0]),
        threshold=thresholds.probability,
        required_slices=thresholds.required_slices(len(used)),
        slices_read=len(result.slices), slices_used=len(used),
        z_mm=[s.z_mm for s in result.slices],
        probabilities=[[s.probabilities[c] for c in classes] if s.used else None
                       for s in result.slices],
        rows=rows, skipped=_skipped_runs(result), timings_s=timings,
        model={"name": _model_name(model), "sha256": model.get("sha256", ""),
               "precision": model.get("precision", "?"), "backend": model.get("backend", "?")},
        maps_available=result.maps is not None, notes=notes)


def study_hash(result: StudyResult) -> str:
    """16 hex digits of sha256(StudyInstanceUID) (the series key when the files carry none)."""
    uid = None
    refs = result.study.series.slices
    if refs:
        try:
            import pydicom

            ds = pydicom.dcmread(refs[0].path, stop_before_pixels=True,
                                 specific_tags=["StudyInstanceUID"])
            uid = str(ds.get("StudyInstanceUID", "") or "") or None
        except Exception:  # noqa: BLE001  (any unreadable header falls back to the series key)
            uid = None
    key = uid or f"series:{result.study.series.key}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _model_name(model: dict) -> str:
    from pathlib import Path

    return Path(str(model.get("path", "model"))).name


def _read_windows(indices, result: StudyResult, pre: Preprocessing, notes: list[str]) -> dict:
    """{slice index: lung-window float image} for the pictured slices."""
    from ..dicom import read_hu

    refs = result.study.series.slices
    out = {}
    for i in sorted(indices):
        try:
            out[i] = pre.window(read_hu(refs[i]))
        except CtedgeError as exc:  # the file changed since classification
            notes.append(f"slice {i} could not be re-read for its picture ({exc})")
    return out


def _skipped_runs(result: StudyResult) -> list[SkippedRun]:
    runs: list[SkippedRun] = []
    for s in result.slices:
        if s.used or not s.skip_reason:
            continue
        category = s.skip_reason.split(":")[0]
        last = runs[-1] if runs else None
        if last and last.category == category and last.last == s.index - 1:
            runs[-1] = SkippedRun(last.first, s.index, last.z_first, s.z_mm, category,
                                  [*last.details, f"slice {s.index}: {s.skip_reason}"])
        else:
            runs.append(SkippedRun(s.index, s.index, s.z_mm, s.z_mm, category,
                                   [f"slice {s.index}: {s.skip_reason}"]))
    return runs


def profile_points(data: ReportData) -> list[list[list[tuple[int, float]]]]:
    """Per class, the runs of consecutive classified slices as (slice index, probability)
    lists: a skipped slice breaks the line."""
    out = []
    for ci in range(len(data.classes)):
        runs, current = [], []
        for i, probs in enumerate(data.probabilities):
            if probs is None:
                if current:
                    runs.append(current)
                current = []
            else:
                current.append((i, float(probs[ci])))
        if current:
            runs.append(current)
        out.append(runs)
    return out


def picture_order(data: ReportData) -> list[ClassRow]:
    """Rows in reading order: the decided class first, then the other non-negative classes
    by evidence, the negative class last."""
    label = data.decision.label

    def key(row: ClassRow):
        return (row.label != label, row.label == data.negative_class, -row.max_probability)

    return sorted(data.rows, key=key)


__all__ = ["ReportData", "gather", "picture_order", "profile_points", "study_hash"]
