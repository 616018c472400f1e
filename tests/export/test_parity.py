"""The parity gate's statistics and verdict."""

from __future__ import annotations

import numpy as np
import pytest

from ctedge.errors import ParityError
from ctedge.export.parity import compare

CLASSES = ("normal", "covid19")


def test_identical_models_pass_with_zero_deltas():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    result = compare(p, p, "int8", CLASSES, ["normal", "covid19", "covid19", "covid19"])
    assert result and result.top1_agreement == 1.0 and result.max_abs_diff == 0
    covid = result.classes[1]
    # covid19 scores: 0.1 for the normal slice, 0.8, 0.4, 0.7 for covid slices -> AUC 1
    assert covid.auc_reference == pytest.approx(1.0)
    assert covid.auc_delta == 0 and covid.sensitivity_delta == 0
    assert "PASS" in result.table()


def test_disagreement_below_gate_fails_and_reports_deltas():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    broken = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    labels = ["normal", "covid19", "normal", "covid19"]
    result = compare(ref, broken, "int8", CLASSES, labels)
    assert not result and result.top1_agreement == 0.5 and result.disagreements == 2
    assert result.max_abs_diff == pytest.approx(0.3)
    normal, covid = result.classes
    assert covid.sensitivity_delta == pytest.approx(-0.5)  # 2/2 -> 1/2 covid found
    assert normal.sensitivity_delta == pytest.approx(-0.5)
    assert covid.auc_reference == pytest.approx(1.0)
    assert covid.auc_delta == pytest.approx(0.75 - 1.0)
    assert "FAIL" in result.table()
    with pytest.raises(ParityError, match="below the gate"):
        result.require()


def test_thresholds_default_by_precision_and_unknown_labels_are_skipped():
    ref = np.eye(2)[[0] * 998 + [1, 1]]
    cand = ref.copy()
    cand[-2:] = [1, 0]
    assert compare(ref, cand, "int8", CLASSES)  # 99.8% >= 99%
    assert not compare(ref, cand, "fp16", CLASSES)  # 99.8% < 99.9%
    assert compare(ref, cand, "fp16", CLASSES, threshold=0.998)
    result = compare(ref, cand, "fp16", CLASSES, ["CT_COVID"] * 1000)
    assert result.labelled == 0 and result.classes == ()
    with pytest.raises(ParityError, match="empty"):
        compare(np.zeros((0, 2)), np.zeros((0, 2)), "int8", CLASSES)
