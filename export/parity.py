"""The accuracy parity gate: a reduced-precision model against its FP32 reference.

On the parity slices (validation slices never used for calibration) both models' probabilities
are compared: top-1 agreement, max and mean |delta p|, and, where labels are known, per-class
sensitivity/specificity and one-vs-rest AUC deltas (candidate minus reference). The gate is
top-1 agreement >= threshold (default 99% for INT8, 99.9% for FP16).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ctedge.errors import ParityError
from ctedge.metrics import auc

DEFAULT_THRESHOLDS = {"int8": 0.99, "fp16": 0.999, "fp32": 0.999}


@dataclass(frozen=True)
class ClassDelta:
    """One class's metric change, candidate minus reference (None where undefined)."""

    label: str
    sensitivity_delta: float | None
    specificity_delta: float | None
    auc_reference: float | None
    auc_delta: float | None


@dataclass(frozen=True)
class ParityResult:
    """Statistics of a candidate model against the FP32 reference on one parity set."""

    precision: str
    n: int
    top1_agreement: float  # fraction of slices with the same top class, 0..1
    max_abs_diff: float  # max |delta p| over slices and classes
    mean_abs_diff: float
    threshold: float
    labelled: int = 0  # slices whose label is one of the model's classes
    classes: tuple[ClassDelta, ...] = field(default_factory=tuple)
    # Class-activation maps, candidate vs reference: Pearson r of each slice's map for the
    # reference's top class, mean and minimum over slices (None: the models have no maps).
    map_correlation: float | None = None
    map_correlation_min: float | None = None

    def __bool__(self) -> bool:
        return self.n > 0 and self.top1_agreement >= self.threshold

    @property
    def disagreements(self) -> int:
        return int(round((1.0 - self.top1_agreement) * self.n))

    def to_dict(self) -> dict:
        return {
            "precision": self.precision, "n": self.n, "passed": bool(self),
            "top1_agreement": self.top1_agreement, "threshold": self.threshold,
            "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
            "labelled": self.labelled,
            "classes": [vars(c) for c in self.classes],
            **({"map_correlation": self.map_correlation,
                "map_correlation_min": self.map_correlation_min}
               if self.map_correlation is not None else {}),
        }

    def with_maps(self, reference: np.ndarray, candidate: np.ndarray,
                  top: np.ndarray | None = None) -> ParityResult:
        """This result plus the map correlation of candidate vs reference maps (N, C, h, w).

        top: the class whose map is compared per slice (default: the reference map's class
        with the largest mean, i.e. the reference's top class)."""
        r = map_correlations(reference, candidate, top)
        return replace(self, map_correlation=float(np.mean(r)) if r.size else None,
                       map_correlation_min=float(np.min(r)) if r.size else None)

    def table(self) -> str:
        """A short human-readable report."""
        verdict = "PASS" if self else "FAIL"
        lines = [
            f"parity {self.precision} vs fp32 on {self.n} slices: {verdict}",
            f"  top-1 agreement  {self.top1_agreement:.4%}  (gate >= {self.threshold:.2%}, "
            f"{self.disagreements} disagreeing)",
            f"  |delta p|        max {self.max_abs_diff:.4f}  mean {self.mean_abs_diff:.5f}",
        ]
        if self.map_correlation is not None:
            lines.append(f"  map correlation  mean {self.map_correlation:.4f}  min "
                         f"{self.map_correlation_min:.4f}  (class-activation maps, top class)")
        if self.classes:
            lines.append(f"  {'class':<22}{'d sens':>9}{'d spec':>9}{'AUC fp32':>10}{'d AUC':>9}"
                         f"   ({self.labelled} labelled slices)")
            for c in self.classes:
                lines.append(f"  {c.label:<22}{_fmt(c.sensitivity_delta):>9}"
                             f"{_fmt(c.specificity_delta):>9}{_fmt(c.auc_reference, False):>10}"
                             f"{_fmt(c.auc_delta):>9}")
        return "\n".join(lines)

    def require(self) -> ParityResult:
        """Return self if the gate passed, else raise ParityError."""
        if not self:
            raise ParityError(
                f"{self.precision} top-1 agreement {self.top1_agreement:.2%} on {self.n} slices "
                f"is below the gate {self.threshold:.2%}; no engine written. Try another "
                "--calib-method (entropy/percentile), more --calib-size, or --precision fp16")
        return self


def map_correlations(reference: np.ndarray, candidate: np.ndarray,
                     top: np.ndarray | None = None) -> np.ndarray:
    """Per slice, Pearson r between the two models' maps of one class (default: the class
    whose reference map has the largest mean = the reference's top class). Slices where
    either map is constant are left out. Returns a 1-D float64 array."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 4:
        raise ValueError(f"map arrays differ in shape or are not (N, C, h, w): "
                         f"{reference.shape} vs {candidate.shape}")
    n = len(reference)
    if top is None:
        top = reference.mean(axis=(2, 3)).argmax(1)
    a = reference[np.arange(n), top].reshape(n, -1)
    b = candidate[np.arange(n), top].reshape(n, -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    norm = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    ok = norm > 0
    return (a[ok] * b[ok]).sum(1) / norm[ok]


def _fmt(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str,
            classes: Sequence[str], labels: Sequence[str | None] | None = None,
            threshold: float | None = None) -> ParityResult:
    """Parity statistics of candidate vs reference probabilities, both (N, n_classes)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"probability arrays differ in shape: {reference.shape} vs "
                         f"{candidate.shape}")
    threshold = DEFAULT_THRESHOLDS.get(precision, 0.99) if threshold is None else threshold
    n = len(reference)
    if n == 0:
        raise ParityError("parity set is empty; pass --parity-set with validation slices")
    diff = np.abs(reference - candidate)
    ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
    deltas, labelled = _class_deltas(reference, candidate, ref_top, cand_top, classes, labels)
    return ParityResult(precision, n, float(np.mean(ref_top == cand_top)), float(diff.max()),
                        float(diff.mean()), float(threshold), labelled, deltas)


def _class_deltas(reference, candidate, ref_top, cand_top, classes, labels):
    if labels is None:
        return (), 0
    index = {c: i for i, c in enumerate(classes)}
    known = np.array([lab in index for lab in labels], dtype=bool)
    if not known.any():
        return (), 0
    y = np.array([index[lab] for lab, k in zip(labels, known, strict=True) if k])
    ref_p, cand_p = reference[known], candidate[known]
    rt, ct = ref_top[known], cand_top[known]
    out = []
    for i, name in enumerate(classes):
        pos, neg = y == i, y != i
        sens = (np.mean(ct[pos] == i) - np.mean(rt[pos] == i)) if pos.any() else None
        spec = (np.mean(ct[neg] != i) - np.mean(rt[neg] != i)) if neg.any() else None
        auc_ref = _auc(ref_p[:, i], pos)
        auc_cand = _auc(cand_p[:, i], pos)
        out.append(ClassDelta(
            name, None if sens is None else float(sens), None if spec is None else float(spec),
            auc_ref, None if auc_ref is None or auc_cand is None else auc_cand - auc_ref))
    return tuple(out), int(known.sum())


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC (ctedge.metrics.auc); None when a group is empty."""
    value = auc(positive, scores)
    return None if np.isnan(value) else value
