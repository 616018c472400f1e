"""From per-slice probabilities to one study-level decision.

Two rules:
- `paper`: the study is diseased if any used slice's top class is a disease; normal only if
  every used slice is normal (the Wuhan/Xiamen paper's patient rule). With several diseases
  present, the one with most top-1 slices wins (ties: higher summed probability).
- `robust`: a disease counts only when at least `required_slices(n)` used slices give it a
  probability >= `probability`; `required_slices(n) = max(min_slices, ceil(min_fraction * n))`.
  Several qualifying diseases are resolved by evidence: the largest sum of that disease's
  probability over its qualifying slices. One stray slice cannot flip a study.
Thresholds come from the model artifact (chosen on validation data by `ctedge evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

RULES = ("robust", "paper")
INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class DecisionThresholds:
    """Parameters of the robust rule (probability is unitless, fraction of used slices)."""

    probability: float = 0.5
    min_slices: int = 3
    min_fraction: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "probability", float(self.probability))
        object.__setattr__(self, "min_slices", int(self.min_slices))
        object.__setattr__(self, "min_fraction", float(self.min_fraction))
        if not 0.0 < self.probability < 1.0:
            raise ValueError(f"probability threshold must be in (0, 1), got {self.probability}")
        if self.min_slices < 1:
            raise ValueError(f"min_slices must be >= 1, got {self.min_slices}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")

    def required_slices(self, n_used: int) -> int:
        return max(self.min_slices, math.ceil(self.min_fraction * n_used))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DecisionThresholds:
        return cls(**data)


@dataclass(frozen=True)
class ClassEvidence:
    """What the slices say about one class."""

    label: str
    top1_slices: int  # used slices whose most probable class is this one
    above_threshold: int  # used slices with probability >= the robust rule's threshold
    max_probability: float
    evidence: float  # sum of probability over the slices above threshold
    strongest_slices: list[int] = field(default_factory=list)  # slice indices, best first


@dataclass(frozen=True)
class StudyDecision:
    label: str  # a class name, or "indeterminate" when no slice could be used
    rule: str
    reason: str
    slices_used: int
    classes: list[ClassEvidence]

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    probabilities: np.ndarray,
    slice_indices: list[int],
    classes: list[str],
    negative_class: str,
    rule: str = "robust",
    thresholds: DecisionThresholds | None = None,
) -> StudyDecision:
    """Decide one study from the (n_used, n_classes) probabilities of its used slices."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    thresholds = thresholds or DecisionThresholds()
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1, len(classes))
    n = probs.shape[0]
    if n != len(slice_indices):
        raise ValueError(f"{n} probability rows for {len(slice_indices)} slice indices")
    evidence = _evidence(probs, slice_indices, classes, thresholds.probability)
    if n == 0:
        reason = "no slice with lung fields to classify"
        return StudyDecision(INDETERMINATE, rule, reason, 0, evidence)

    diseases = [e for e in evidence if e.label != negative_class]
    if rule == "paper":
        present = [e for e in diseases if e.top1_slices > 0]
        if not present:
            reason = f"all {n} used slices are {negative_class}"
            return StudyDecision(negative_class, rule, reason, n, evidence)
        best = max(present, key=lambda e: (e.top1_slices, e.evidence))
        reason = f"{best.top1_slices} of {n} used slices have {best.label} as top class"
        return StudyDecision(best.label, rule, reason, n, evidence)

    need = thresholds.required_slices(n)
    qualifying = [e for e in diseases if e.above_threshold >= need]
    if not qualifying:
        reason = (
            f"no disease reaches {need} slice(s) with probability >= {thresholds.probability:g} "
            f"among {n} used slices"
        )
        return StudyDecision(negative_class, rule, reason, n, evidence)
    best = max(qualifying, key=lambda e: e.evidence)
    reason = (
        f"{best.above_threshold} of {n} used slices give {best.label} probability "
        f">= {thresholds.probability:g} (needs {need})"
    )
    return StudyDecision(best.label, rule, reason, n, evidence)


def _evidence(probs, slice_indices, classes, threshold, top_k=5) -> list[ClassEvidence]:
    top1 = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    out = []
    for c, label in enumerate(classes):
        p = probs[:, c]
        above = p >= threshold
        order = np.argsort(-p, kind="stable")[:top_k]
        out.append(
            ClassEvidence(
                label=label,
                top1_slices=int((top1 == c).sum()),
                above_threshold=int(above.sum()),
                max_probability=float(p.max()) if len(p) else 0.0,
                evidence=float(p[above].sum()),
                strongest_slices=[int(slice_indices[i]) for i in order if above[i]],
            )
        )
    return out
