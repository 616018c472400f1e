"""Classification metrics for the accuracy-parity section, pure numpy.

Per class (one-vs-rest): accuracy (recall of that class), sensitivity, specificity, PPV, NPV,
AUC. A triage summary treats every class but the negative one as "abnormal" with score
1 - p(negative). Agreement with the FP32 reference (top-1 agreement, |delta p|, the gate) is
the export helper's `ctedge.export.parity.compare`, not repeated here.
A metric with an empty denominator is None (not 0): "no positives in the set" is not "missed all".
"""

from __future__ import annotations

import numpy as np

from ctedge import metrics


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC area (ctedge.metrics.auc, ties count one half); None when a group is empty."""
    return _none_if_nan(metrics.auc(positive, scores))


def binary_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    """Sensitivity, specificity, PPV, NPV (and counts) of boolean predictions vs truth."""
    predicted = np.asarray(predicted, dtype=bool)
    actual = np.asarray(actual, dtype=bool)
    counts = metrics.OneVsRest("", tp=int((predicted & actual).sum()),
                               fp=int((predicted & ~actual).sum()),
                               tn=int((~predicted & ~actual).sum()),
                               fn=int((~predicted & actual).sum()))
    out = {k: getattr(counts, k) for k in ("tp", "tn", "fp", "fn")}
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        out[name] = _none_if_nan(getattr(counts, name))
    return out


def _none_if_nan(value: float) -> float | None:
    """JSON has no NaN: an undefined metric is null."""
    return None if np.isnan(value) else float(value)


def classification_report(probs: np.ndarray, labels: list[str], classes: list[str],
                          negative_class: str) -> dict:
    """Metrics of (N, n_classes) probabilities against true class names.

    Returns {"n", "accuracy", "per_class": {class: {...}}, "abnormal": {...}}; classes with
    no true sample still get PPV/specificity (a model can wrongly predict them).
    """
    probs = np.asarray(probs, dtype=np.float64)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[label] for label in labels], dtype=np.int64)
    top1 = probs.argmax(axis=1)
    per_class = {}
    for c, name in enumerate(classes):
        actual = truth == c
        m = binary_metrics(top1 == c, actual)
        m["support"] = int(actual.sum())
        m["accuracy"] = m["sensitivity"]  # per-class accuracy: fraction of that class right
        m["auc"] = auc(probs[:, c], actual)
        per_class[name] = m
    neg = index[negative_class]
    abnormal = binary_metrics(top1 != neg, truth != neg)
    abnormal["auc"] = auc(1.0 - probs[:, neg], truth != neg)
    return {
        "n": int(len(truth)),
        "accuracy": float((top1 == truth).mean()) if len(truth) else None,
        "per_class": per_class,
        "abnormal": abnormal,
    }


DELTA_KEYS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "auc")


def deltas(reference: dict, candidate: dict) -> dict:
    """candidate - reference for every metric in DELTA_KEYS (None where either is None)."""
    def diff(a, b):
        return None if a is None or b is None else b - a

    out = {"accuracy": diff(reference["accuracy"], candidate["accuracy"]), "per_class": {},
           "abnormal": {}}
    for name, ref in reference["per_class"].items():
        cand = candidate["per_class"][name]
        out["per_class"][name] = {k: diff(ref[k], cand[k]) for k in DELTA_KEYS}
    out["abnormal"] = {k: diff(reference["abnormal"].get(k), candidate["abnormal"].get(k))
                       for k in DELTA_KEYS if k != "accuracy"}
    return out
