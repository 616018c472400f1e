"""Evaluate a ctedge ONNX model on labelled slices, exactly as it deploys (no torch).

Slices run through `ctedge.backends.open_backend`, so what is measured is what ships. Figures:
slice level (top-1) and study level (one study = one patient, both decision rules of
`ctedge.decision.decide`), each with the paper's one-vs-rest table, the confusion matrix, the
positive-class-vs-rest ROC and AUC, and 95 % bootstrap intervals that resample patients.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ctedge.decision import RULES, DecisionThresholds, decide
from ctedge.metrics import ClassificationMetrics, classification_metrics, roc_curve

from .dataset import SliceSet
from .stats import Interval, patient_bootstrap


@dataclass(frozen=True)
class Predictions:
    """Model probabilities for labelled slices (rows aligned with the slice set)."""

    probabilities: np.ndarray  # float32 (N, n_classes)
    labels: np.ndarray  # int64 (N,)
    patients: tuple[str, ...]
    classes: tuple[str, ...]
    sites: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def subset(self, mask: np.ndarray) -> Predictions:
        idx = np.flatnonzero(mask)

        def pick(t):
            return tuple(t[i] for i in idx) if t else ()

        return Predictions(self.probabilities[idx], self.labels[idx], pick(self.patients),
                           self.classes, pick(self.sites), pick(self.paths))


def predict(backend, slices: SliceSet, batch_size: int = 32) -> Predictions:
    """Run `backend` on every slice; checks the model's classes match the data's."""
    from ctedge.errors import DataError

    if tuple(backend.info.classes) != tuple(slices.classes):
        raise DataError(f"model classes {list(backend.info.classes)} differ from the data's "
                        f"{list(slices.classes)}; pass --classes in the model's order or map "
                        "labels with --map-label")
    chunks = [backend.infer(slices.inputs[i:i + batch_size])
              for i in range(0, len(slices), batch_size)]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(slices.classes)), np.float32)
    return Predictions(probs.astype(np.float32), slices.labels, slices.patients, slices.classes,
                       slices.sites, slices.paths)


@dataclass(frozen=True)
class Studies:
    """Per-study (patient) truth, decision and ROC score under one rule."""

    ids: tuple[str, ...]
    labels: np.ndarray  # int64 truth per study
    predicted: np.ndarray  # int64 decision per study
    scores: np.ndarray  # float64 positive-class score per study (see `study_level`)
    n_slices: np.ndarray


def study_truth(labels: list[int], negative: int) -> int:
    """A study's label: its most frequent non-negative slice label, else negative."""
    diseased = [v for v in labels if v != negative]
    if not diseased:
        return negative
    values, counts = np.unique(diseased, return_counts=True)
    return int(values[np.argmax(counts)])


def study_level(pred: Predictions, negative_class: str, rule: str,
                thresholds: DecisionThresholds, positive_class: str) -> Studies:
    """Decide each patient's study from its slices with `rule`.

    Score for the ROC: robust rule = the k-th largest positive-class probability among the
    study's slices, k = min(n, thresholds.required_slices(n)) (the quantity the rule thresholds);
    paper rule = the largest one.
    """
    classes = list(pred.classes)
    neg, pos = classes.index(negative_class), classes.index(positive_class)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pred.patients):
        groups[p].append(i)
    ids = tuple(sorted(groups))
    labels, predicted, scores, sizes = [], [], [], []
    for pid in ids:
        idx = groups[pid]
        probs = pred.probabilities[idx]
        decision = decide(probs, list(range(len(idx))), classes, negative_class, rule, thresholds)
        labels.append(study_truth([int(pred.labels[i]) for i in idx], neg))
        predicted.append(classes.index(decision.label))
        column = np.sort(probs[:, pos])[::-1]
        k = 1 if rule == "paper" else min(len(idx), thresholds.required_slices(len(idx)))
        scores.append(float(column[k - 1]))
        sizes.append(len(idx))
    return Studies(ids, np.array(labels, np.int64), np.array(predicted, np.int64),
                   np.array(scores), np.array(sizes))


@dataclass(frozen=True)
class LevelReport:
    """Metrics at one level (slices, or studies under one rule) with patient-bootstrap CIs."""

    level: str
    metrics: ClassificationMetrics
    intervals: dict[str, Interval]
    roc_fpr: list[float]
    roc_tpr: list[float]
    patients: int

    def to_dict(self) -> dict:
        return {"level": self.level, "patients": self.patients, **self.metrics.to_dict(),
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "roc": {"fpr": self.roc_fpr, "tpr": self.roc_tpr}}


def _level(level: str, labels, probs_or_none, predicted, scores, patients, classes,
           positive_class, n_resamples, seed) -> LevelReport:
    pos = list(classes).index(positive_class)
    labels = np.asarray(labels)

    def metrics_of(idx):
        if probs_or_none is not None:
            return classification_metrics(labels[idx], probs_or_none[idx], classes, positive_class)
        # studies: predictions from the rule, AUC from the study score
        fake = np.zeros((len(idx), len(classes)))
        fake[:, pos] = scores[idx]
        m = classification_metrics(labels[idx], fake, classes, positive_class, predicted[idx])
        return m

    full = metrics_of(np.arange(len(labels)))
    intervals = patient_bootstrap(patients, lambda idx: metrics_of(idx).scalars(),
                                  n_resamples=n_resamples, seed=seed) if n_resamples else {}
    score = probs_or_none[:, pos] if probs_or_none is not None else scores
    fpr, tpr, _ = roc_curve(labels == pos, score)
    return LevelReport(level, full, intervals, fpr.tolist(), tpr.tolist(),
                       len(set(patients)))


@dataclass(frozen=True)
class Evaluation:
    """All figures for one data set (or one site)."""

    name: str
    classes: tuple[str, ...]
    negative_class: str
    positive_class: str
    thresholds: DecisionThresholds
    slices: LevelReport
    studies: dict[str, LevelReport]  # rule -> report
    per_site: dict[str, Evaluation] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes),
                "negative_class": self.negative_class, "positive_class": self.positive_class,
                "thresholds": self.thresholds.to_dict(), "slices": self.slices.to_dict(),
                "studies": {r: v.to_dict() for r, v in self.studies.items()},
                "per_site": {s: v.to_dict() for s, v in self.per_site.items()}}


def default_positive_class(classes, negative_class: str) -> str:
    """covid19 when the model has it (the paper's COVID-vs-rest ROC), else the first disease."""
    if "covid19" in classes:
        return "covid19"
    return next(c for c in classes if c != negative_class)


def evaluate_predictions(pred: Predictions, negative_class: str, thresholds: DecisionThresholds,
                         positive_class: str | None = None, n_resamples: int = 2000,
                         seed: int = 0, name: str = "data", per_site: bool = True) -> Evaluation:
    """Slice- and study-level figures with CIs; sites (when given) are evaluated separately."""
    classes = pred.classes
    positive_class = positive_class or default_positive_class(classes, negative_class)
    slices = _level("slice", pred.labels, pred.probabilities.astype(np.float64), None, None,
                    np.asarray(pred.patients), classes, positive_class, n_resamples, seed)
    studies = {}
    for rule in RULES:
        s = study_level(pred, negative_class, rule, thresholds, positive_class)
        studies[rule] = _level(f"study ({rule} rule)", s.labels, None, s.predicted, s.scores,
                               np.asarray(s.ids), classes, positive_class, n_resamples, seed)
    sites = {}
    if per_site and pred.sites and len(set(pred.sites)) > 1:
        for site in sorted(set(pred.sites)):
            mask = np.array([s == site for s in pred.sites])
            sites[site or "(no site)"] = evaluate_predictions(
                pred.subset(mask), negative_class, thresholds, positive_class, n_resamples,
                seed, name=site or "(no site)", per_site=False)
    return Evaluation(name, classes, negative_class, positive_class, thresholds, slices,
                      studies, sites)


# --- the robust rule's thresholds, chosen on validation data only ---------------------------

PROBABILITY_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95
MIN_SLICES_GRID = (1, 2, 3)
MIN_FRACTION_GRID = (0.0, 0.05, 0.1)


@dataclass(frozen=True)
class ThresholdChoice:
    thresholds: DecisionThresholds
    balanced_accuracy: float
    studies: int
    grid: list[dict]

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds.to_dict(), "balanced_accuracy":
                self.balanced_accuracy, "studies": self.studies, "grid": self.grid}


def choose_thresholds(pred: Predictions, negative_class: str) -> ThresholdChoice:
    """Grid-search the robust rule on (validation) predictions.

    Objective: study-level balanced accuracy (mean per-class sensitivity). Ties go to the
    more conservative setting: higher probability, then larger min_fraction, then larger
    min_slices (one stray slice should not flip a study). Never call this on test data.
    """
    classes = list(pred.classes)
    positive = default_positive_class(classes, negative_class)
    grid, best, best_key = [], None, None
    for p in PROBABILITY_GRID:
        for k in MIN_SLICES_GRID:
            for f in MIN_FRACTION_GRID:
                t = DecisionThresholds(p, k, f)
                s = study_level(pred, negative_class, "robust", t, positive)
                recalls = [float((s.predicted[s.labels == c] == c).mean())
                           for c in range(len(classes)) if (s.labels == c).any()]
                bacc = float(np.mean(recalls))
                grid.append({**t.to_dict(), "balanced_accuracy": bacc})
                key = (round(bacc, 12), p, f, k)
                if best_key is None or key > best_key:
                    best, best_key = t, key
    return ThresholdChoice(best, best_key[0], len(set(pred.patients)), grid)
