"""Paired comparison with a second reader (a radiologist or another model) on the same cases.

The second reader's file is a CSV `path,label[,score]`: its class per case and, optionally,
its score for the positive class (for DeLong). Cases are matched by `path`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ctedge.errors import DataError

from .evaluate import Predictions
from .stats import delong, mcnemar


def compare_with_reader(pred: Predictions, reader_csv: str | Path, positive_class: str) -> dict:
    """McNemar on accuracy and (with scores) DeLong on AUC; model = A, second reader = B."""
    reader_csv = Path(reader_csv)
    if not reader_csv.is_file():
        raise DataError(f"{reader_csv}: second reader's file not found")
    with open(reader_csv, newline="", encoding="utf-8") as f:
        rows = {r["path"].strip(): r for r in csv.DictReader(f)}
    classes = list(pred.classes)
    missing = [p for p in pred.paths if p not in rows]
    if missing:
        raise DataError(f"{reader_csv}: no reading for {len(missing)} evaluated case(s), e.g. "
                        f"{missing[0]}; both readers must read the same cases")
    labels = [rows[p]["label"].strip() for p in pred.paths]
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"{reader_csv}: labels {unknown} are not model classes {classes}")
    b_pred = np.array([classes.index(v) for v in labels])
    a_pred = pred.probabilities.argmax(1)
    out = {"cases": len(b_pred), "mcnemar": mcnemar(a_pred == pred.labels,
                                                    b_pred == pred.labels).to_dict()}
    if all((rows[p].get("score") or "").strip() for p in pred.paths):
        b_score = np.array([float(rows[p]["score"]) for p in pred.paths])
        pos = classes.index(positive_class)
        out["delong"] = delong(pred.labels == pos, pred.probabilities[:, pos], b_score).to_dict()
    return out
