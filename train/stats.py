"""Confidence intervals and paired tests (numpy + scipy, no torch).

- `patient_bootstrap`: 95 % percentile intervals that resample patients (all slices of a
  drawn patient come along), because slices of one patient are not independent.
- `mcnemar`: paired accuracy of two readers on the same cases; exact binomial test on the
  discordant pairs (two-tailed), which is valid for any count (the chi-square form is given too).
- `delong`: paired AUC comparison (DeLong, DeLong & Clarke-Pearson 1988), using the
  structural-component form of Sun & Xu 2014; two-tailed z test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "level": self.level}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.low:.3f}-{self.high:.3f})"


def patient_bootstrap(patients, statistic: Callable[[np.ndarray], dict[str, float]],
                      n_resamples: int = 2000, level: float = 0.95,
                      seed: int = 0) -> dict[str, Interval]:
    """Percentile intervals of every figure `statistic(indices)` returns, resampling patients.

    patients: one id per case (slice). statistic: takes an index array into the cases
    (with repeats) and returns name -> value. Resamples where a figure is undefined (NaN,
    e.g. no positive case drawn) are left out of that figure's interval.
    """
    patients = np.asarray(patients)
    ids, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    full = statistic(np.arange(len(patients)))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in full}
    for _ in range(n_resamples):
        chosen = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([members[i] for i in chosen])
        for k, v in statistic(idx).items():
            if k in draws and not math.isnan(v):
                draws[k].append(v)
    tail = (1 - level) / 2 * 100
    out = {}
    for k, v in full.items():
        values = np.asarray(draws[k])
        if len(values) == 0 or math.isnan(v):
            out[k] = Interval(v, float("nan"), float("nan"), level)
        else:
            low, high = np.percentile(values, [tail, 100 - tail])
            out[k] = Interval(float(v), float(low), float(high), level)
    return out


@dataclass(frozen=True)
class PairedTest:
    """A two-tailed paired comparison; `significant` at p < 0.05."""

    test: str
    statistic: float
    p_value: float
    a: float  # reader A's figure (accuracy or AUC)
    b: float
    detail: dict

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def to_dict(self) -> dict:
        return {"test": self.test, "statistic": self.statistic, "p_value": self.p_value,
                "a": self.a, "b": self.b, "significant": self.significant, **self.detail}


def mcnemar(correct_a, correct_b) -> PairedTest:
    """McNemar's test on paired correctness (boolean per case) of readers A and B.

    p-value: exact two-tailed binomial test of b01 vs b10 (the discordant pairs) at 1/2;
    statistic: the continuity-corrected chi-square (|b01 - b10| - 1)^2 / (b01 + b10).
    """
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("both readers must score the same cases")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        p, chi2 = 1.0, 0.0
    else:
        p = float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
        chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return PairedTest("mcnemar-exact", float(chi2), p, float(a.mean()), float(b.mean()),
                      {"only_a_correct": only_a, "only_b_correct": only_b, "n": int(len(a))})


def _midrank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def delong(positive, score_a, score_b) -> PairedTest:
    """DeLong's test for two correlated AUCs (same cases, same truth), two-tailed."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.vstack([np.asarray(score_a, dtype=np.float64), np.asarray(score_b, np.float64)])
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two positive and two negative cases")
    pos, neg = scores[:, positive], scores[:, ~positive]
    tx = np.array([_midrank(r) for r in pos])
    ty = np.array([_midrank(r) for r in neg])
    tz = np.array([_midrank(r) for r in np.hstack([pos, neg])])
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n  # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m  # ... and of the negatives
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 0:
        z, p = 0.0, 1.0
    else:
        from scipy.stats import norm

        z = diff / math.sqrt(var)
        p = float(2 * norm.sf(abs(z)))
    return PairedTest("delong", float(z), p, float(aucs[0]), float(aucs[1]),
                      {"variance": float(var), "covariance": cov.tolist(), "n_positive": m,
                       "n_negative": n})
