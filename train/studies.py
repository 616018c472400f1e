"""DICOM studies with a study-level label (and optional per-slice labels), evaluated through
the deployed pipeline (`ctedge.pipeline.classify_study`: lung-field selection, preprocessing,
backend, study rule), so the figures are those of `ctedge classify`.

Manifest CSV columns: `path,label,patient_id[,site][,slice_labels,slice_labels_row][,split]`.
`path` is a study folder relative to the data root; `slice_labels` a .npy (rows = studies,
column j = the (j+1)-th slice from the top in z order, as in COVID-CT-MD; see docs/dicom.md),
`slice_labels_row` the study's row. Labels are the data set's own; `label_map` maps them to the
model's classes (e.g. cap -> non_covid for a binary COVID model).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctedge.decision import RULES, decide
from ctedge.errors import DataError
from ctedge.metrics import auc


@dataclass(frozen=True)
class StudyCase:
    path: str
    label: str
    patient_id: str
    site: str = ""
    slice_labels: str = ""
    slice_labels_row: int | None = None
    split: str = ""


def read_study_manifest(path: str | Path) -> list[StudyCase]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: study manifest not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cases = []
    for line, row in enumerate(rows, start=2):
        try:
            r = row.get("slice_labels_row", "") or ""
            cases.append(StudyCase(row["path"].strip(), row["label"].strip(),
                                   row["patient_id"].strip(), (row.get("site") or "").strip(),
                                   (row.get("slice_labels") or "").strip(),
                                   int(r) if r.strip() else None,
                                   (row.get("split") or "").strip()))
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path}:{line}: bad row ({exc}); columns are path,label,patient_id"
                            "[,site][,slice_labels,slice_labels_row]") from exc
    if not cases:
        raise DataError(f"{path}: no studies")
    return cases


def is_study_manifest(path: str | Path, root: str | Path) -> bool:
    """True when the manifest's first path is a folder (DICOM study), not an image file."""
    with open(path, newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f), None)
    return bool(first) and (Path(root) / first["path"].strip()).is_dir()


@dataclass(frozen=True)
class StudyOutcome:
    """One study through the pipeline: truth, both rules' decisions, slice-label agreement."""

    patient_id: str
    site: str
    truth: str
    decisions: dict[str, str]  # rule -> label
    reasons: dict[str, str]
    slices_read: int
    slices_used: int
    top1_counts: dict[str, int]
    slice_labels: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate_studies(model: str | Path, cases: list[StudyCase], root: str | Path,
                     label_map: dict[str, str] | None = None, workers: int = 1,
                     positive_class: str | None = None) -> list[StudyOutcome]:
    """Classify each study with the deployed pipeline and compare with its labels."""
    from ctedge.backends import open_backend
    from ctedge.pipeline import ClassifyConfig, classify_study

    from .evaluate import default_positive_class

    label_map = label_map or {}
    root = Path(root)
    outcomes = []
    with open_backend(model) as backend:
        info = backend.info
        classes = list(info.classes)
        positive = positive_class or default_positive_class(classes, info.negative_class)
        for case in cases:
            truth = label_map.get(case.label, case.label)
            if truth not in classes:
                raise DataError(f"study label {case.label!r} is not a model class {classes}; "
                                "map it with --map-label FROM=TO")
            result = classify_study(root / case.path, ClassifyConfig(model=Path(model),
                                                                     workers=workers), backend)
            used = [s for s in result.slices if s.used and s.probabilities]
            probs = np.array([[s.probabilities[c] for c in classes] for s in used],
                             dtype=np.float32).reshape(-1, len(classes))
            indices = [s.index for s in used]
            decisions, reasons = {}, {}
            for rule in RULES:
                d = decide(probs, indices, classes, info.negative_class, rule, info.thresholds)
                decisions[rule], reasons[rule] = d.label, d.reason
            top1 = probs.argmax(1) if len(probs) else np.zeros(0, int)
            counts = {c: int((top1 == i).sum()) for i, c in enumerate(classes)}
            agreement = {}
            if case.slice_labels:
                agreement = _slice_agreement(root / case.slice_labels, case.slice_labels_row,
                                             result.slices, classes, positive)
            outcomes.append(StudyOutcome(case.patient_id, case.site, truth, decisions, reasons,
                                         len(result.slices), len(used), counts, agreement))
    return outcomes


def _slice_agreement(npy: Path, row: int | None, slices, classes, positive: str) -> dict:
    """Per-slice infection labels vs the model, on the slices the pipeline used.

    Column j of the label row is slice j in z order (head to feet), checked in docs/dicom.md.
    """
    if row is None:
        raise DataError(f"{npy}: slice labels need slice_labels_row in the manifest")
    labels = np.load(npy)[row]
    pos = classes.index(positive)
    used = [s for s in slices if s.used and s.probabilities]
    infected = np.array([bool(labels[s.index]) if s.index < len(labels) else False for s in used])
    p = np.array([s.probabilities[positive] for s in used], dtype=np.float64)
    top = np.array([classes.index(s.label) == pos for s in used])
    return {
        "labelled_infected_slices": int(labels.astype(bool).sum()),
        "used_slices": len(used), "used_infected": int(infected.sum()),
        f"{positive}_top1_rate_infected": float(top[infected].mean()) if infected.any() else None,
        f"{positive}_top1_rate_uninfected": float(top[~infected].mean())
        if (~infected).any() else None,
        "auc_infected_vs_not": auc(infected, p) if infected.any() and (~infected).any() else None,
        "mean_p_infected": float(p[infected].mean()) if infected.any() else None,
        "mean_p_uninfected": float(p[~infected].mean()) if (~infected).any() else None,
    }


SLICE_LABEL_MODES = ("study", "labelled-only")


def load_study_slices(cases: list[StudyCase], root: str | Path, classes: tuple[str, ...],
                      preprocessing, label_map: dict[str, str] | None = None,
                      slice_labels: str = "labelled-only", negative_class: str | None = None):
    """DICOM studies -> a SliceSet for training, through the deployed slice path.

    Each study's chosen CT series is read with `ctedge.dicom.read_study`; every slice goes
    through `ctedge.slices.prepare_slice` (read_hu, lung-field selection, `from_hu`), so only
    slices with lung fields are used, as at inference. Labels:
    - slice_labels="study": every used slice gets the study's label;
    - slice_labels="labelled-only" (default): in studies with per-slice labels, slices labelled
      0 get the negative class when the study is negative, and are left out when the study is
      diseased (no visible finding on them: neither the disease nor proof of health);
      studies without per-slice labels fall back to "study".
    The patient id of every slice is the study's, so splits stay patient-disjoint.
    """
    from ctedge.dicom import read_study
    from ctedge.lungs import LungFieldConfig
    from ctedge.slices import prepare_slice

    from .dataset import SliceSet

    if slice_labels not in SLICE_LABEL_MODES:
        raise ValueError(f"slice_labels must be one of {SLICE_LABEL_MODES}")
    label_map = label_map or {}
    root = Path(root)
    negative = negative_class or classes[0]
    inputs, labels, patients, paths, sites = [], [], [], [], []
    for case in cases:
        label = label_map.get(case.label, case.label)
        if label not in classes:
            raise DataError(f"study label {case.label!r} is not among {list(classes)}; map it "
                            "with a label map")
        per_slice = None
        if case.slice_labels and slice_labels == "labelled-only":
            if case.slice_labels_row is None:
                raise DataError(f"{case.path}: slice labels need slice_labels_row")
            per_slice = np.load(root / case.slice_labels)[case.slice_labels_row]
        study = read_study(root / case.path)
        for j, ref in enumerate(study.series.slices):
            prepared = prepare_slice(j, ref, preprocessing, LungFieldConfig())
            if not prepared.used:
                continue
            if per_slice is not None and not (j < len(per_slice) and per_slice[j]):
                if label != negative:
                    continue  # an unlabelled slice of a diseased study: leave it out
            inputs.append(prepared.tensor)
            labels.append(classes.index(label))
            patients.append(case.patient_id)
            paths.append(f"{case.path}#{j}")
            sites.append(case.site)
    if not inputs:
        raise DataError("no slice with lung fields in the given studies")
    return SliceSet(np.stack(inputs).astype(np.float32), np.array(labels, np.int64),
                    tuple(patients), tuple(classes), tuple(paths), tuple(sites))
