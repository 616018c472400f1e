"""Classification metrics (numpy only, no torch), shared by training evaluation, the parity gate
and the benchmarks: the paper's one-vs-rest tables, confusion matrix, ROC/AUC, F1.
Undefined ratios (0/0) are NaN, never silently 0 or 1."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


@dataclass(frozen=True)
class OneVsRest:
    """One class against all others (the paper's Supplementary Tables 1 and 2 layout)."""

    label: str
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"):
            out[name] = getattr(self, name)
        return out


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape} true labels vs {y_pred.shape} predictions")
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (y_true, y_pred), 1)
    return out


def one_vs_rest(matrix: np.ndarray, classes) -> list[OneVsRest]:
    """Per-class TP/FP/TN/FN from a confusion matrix."""
    matrix = np.asarray(matrix)
    total = int(matrix.sum())
    out = []
    for c, label in enumerate(classes):
        tp = int(matrix[c, c])
        fn = int(matrix[c].sum()) - tp
        fp = int(matrix[:, c].sum()) - tp
        out.append(OneVsRest(str(label), tp, fp, total - tp - fn - fp, fn))
    return out


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return _ratio(int((y_true == y_pred).sum()), len(y_true))


def roc_curve(positive, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of `score` for the boolean `positive`, from (0,0) to (1,1).

    Thresholds are the distinct scores, descending (a case is called positive when
    score >= threshold); the first threshold is +inf.
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    distinct = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(positive)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(fps) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, score[distinct]]


def auc(positive, score) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class ClassificationMetrics:
    """Everything computed from one set of predictions."""

    classes: tuple[str, ...]
    n: int
    accuracy: float
    confusion: list[list[int]]
    per_class: list[OneVsRest]
    positive_class: str | None = None  # the class of the ROC ("COVID vs rest")
    auc: float = float("nan")

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "n": self.n, "accuracy": self.accuracy,
                "confusion": self.confusion, "per_class": [c.to_dict() for c in self.per_class],
                "positive_class": self.positive_class, "auc": self.auc}

    def scalars(self) -> dict[str, float]:
        """Flat name -> value of every figure (what the bootstrap resamples)."""
        out = {"accuracy": self.accuracy, "auc": self.auc}
        for c in self.per_class:
            for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"):
                out[f"{c.label}.{name}"] = getattr(c, name)
        return out


def classification_metrics(y_true, probabilities, classes, positive_class: str | None = None,
                           y_pred=None) -> ClassificationMetrics:
    """Metrics of top-1 predictions (or the given `y_pred`) against integer labels.

    probabilities: (N, n_classes). positive_class: class for the one-vs-rest ROC and AUC.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    value = float("nan")
    if positive_class is not None:
        c = list(classes).index(positive_class)
        value = auc(y_true == c, probs[:, c])
    return ClassificationMetrics(tuple(classes), len(y_true), accuracy(y_true, y_pred),
                                 matrix.tolist(), one_vs_rest(matrix, classes), positive_class,
                                 value)
