import numpy as np
import pytest

from ctedge.decision import DecisionThresholds, decide

CLASSES = ["normal", "covid19", "tuberculosis"]


def probs(*rows):
    return np.array(rows, dtype=np.float32)


def test_paper_rule_any_diseased_slice_makes_the_study_diseased():
    p = probs([0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.6, 0.1])
    d = decide(p, [0, 1, 2], CLASSES, "normal", rule="paper")
    assert d.label == "covid19" and d.rule == "paper"


def test_paper_rule_normal_only_when_all_slices_normal():
    p = probs([0.9, 0.05, 0.05], [0.6, 0.3, 0.1])
    assert decide(p, [0, 1], CLASSES, "normal", rule="paper").label == "normal"


def test_robust_rule_ignores_one_stray_slice():
    p = probs(*([[0.9, 0.05, 0.05]] * 9 + [[0.1, 0.85, 0.05]]))
    d = decide(p, list(range(10)), CLASSES, "normal", rule="robust",
               thresholds=DecisionThresholds(probability=0.5, min_slices=3))
    assert d.label == "normal"
    assert decide(p, list(range(10)), CLASSES, "normal", rule="paper").label == "covid19"


def test_robust_rule_fraction_and_evidence_resolution():
    covid = [[0.2, 0.7, 0.1]] * 4
    tb = [[0.1, 0.1, 0.8]] * 4
    p = probs(*([[0.9, 0.05, 0.05]] * 12 + covid + tb))
    t = DecisionThresholds(probability=0.5, min_slices=1, min_fraction=0.2)  # needs 4 of 20
    d = decide(p, list(range(20)), CLASSES, "normal", thresholds=t)
    assert d.label == "tuberculosis"  # 4 x 0.8 beats 4 x 0.7
    by_label = {e.label: e for e in d.classes}
    assert by_label["covid19"].above_threshold == 4
    assert by_label["tuberculosis"].strongest_slices[0] >= 16
    t5 = DecisionThresholds(probability=0.5, min_slices=1, min_fraction=0.25)  # needs 5
    assert decide(p, list(range(20)), CLASSES, "normal", thresholds=t5).label == "normal"


def test_no_used_slices_is_indeterminate():
    d = decide(np.zeros((0, 3), np.float32), [], CLASSES, "normal")
    assert d.label == "indeterminate" and "lung" in d.reason


def test_bad_rule_and_thresholds_are_refused():
    with pytest.raises(ValueError, match="valid: robust, paper"):
        decide(probs([1, 0, 0]), [0], CLASSES, "normal", rule="vote")
    with pytest.raises(ValueError):
        DecisionThresholds(probability=1.5)
