"""Accuracy parity: every model (and real-weight peer) against the labels and the FP32 reference.

The labelled set is read with the export helper's slice sources (`ctedge.export.slices`: a
manifest CSV or a class folder) and preprocessed with the reference model's own
`Preprocessing`, so the benchmark cannot drift from what the runtime does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ctedge.errors import DataError

from .metrics import classification_report, deltas


def labelled_set(source: Path, data_root: Path, split: str, limit: int):
    """(refs, labels) of the labelled slices: `split` rows of a manifest (all rows of a folder
    or of a manifest without split marks), `limit` > 0 takes a class-stratified subset."""
    from ctedge.export.slices import discover, stratified

    refs = discover(source, data_root)
    if split != "all" and any(r.split for r in refs):
        refs = [r for r in refs if r.split == split]
        if not refs:
            raise DataError(f"{source}: no rows with split={split}; pass --split all or "
                            "another split")
    unlabelled = [r for r in refs if not r.label]
    if unlabelled:
        raise DataError(f"{source}: {len(unlabelled)} slice(s) have no label (e.g. "
                        f"{unlabelled[0].path}); pass a manifest with a label column or a "
                        "folder with one sub-folder per class")
    if limit:
        refs = stratified(refs, limit, salt="bench")
    return refs, [r.label for r in refs]


def predict(runner, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([runner.infer(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def run_accuracy(source: Path, data_root: Path, split: str, limit: int, reference,
                 candidates: list) -> dict:
    """`reference` is (label, runner, ModelInfo), FP32; `candidates` are (label, runner,
    precision). Every candidate is scored against the labels (absolute metrics and their
    deltas) and against the reference's probabilities (the export helper's ParityResult:
    top-1 agreement, max/mean |delta p|, per-class sensitivity/specificity/AUC deltas, gate).
    """
    from ctedge.export.parity import compare
    from ctedge.export.slices import load_inputs

    ref_label, ref_runner, info = reference
    classes, negative = list(info.classes), info.negative_class
    refs, labels = labelled_set(source, data_root, split, limit)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"{source}: labels {unknown} are not classes of the model "
                        f"({classes}); pass a labelled set named with the model's classes")
    inputs = load_inputs(refs, info.preprocessing)
    ref_probs = predict(ref_runner, inputs)
    ref_metrics = classification_report(ref_probs, labels, classes, negative)
    rows = []
    for label, runner, precision in [(ref_label, ref_runner, "fp32"), *candidates]:
        probs = ref_probs if runner is ref_runner else predict(runner, inputs)
        metrics = classification_report(probs, labels, classes, negative)
        parity = compare(ref_probs, probs, precision, classes, labels)
        rows.append({"label": label, "precision": precision, "reference": runner is ref_runner,
                     "metrics": metrics, "deltas": deltas(ref_metrics, metrics),
                     "agreement": {"top1_agreement": parity.top1_agreement,
                                   "max_abs_dp": parity.max_abs_diff,
                                   "mean_abs_dp": parity.mean_abs_diff},
                     "parity": parity.to_dict()})
    return {
        "data": {"source": str(source), "split": split, "n": len(refs),
                 "per_class": dict(Counter(labels)), "limit": limit},
        "classes": classes,
        "negative_class": negative,
        "reference": ref_label,
        "models": rows,
    }
