import math

import numpy as np
import pytest

from ctedge.metrics import (
    auc,
    classification_metrics,
    confusion_matrix,
    one_vs_rest,
    roc_curve,
)


def test_one_vs_rest_against_hand_counts():
    # truth:      a a a b b c   predicted: a b a b c c
    m = confusion_matrix([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2], 3)
    assert m.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    a, b, c = one_vs_rest(m, ["a", "b", "c"])
    assert (a.tp, a.fp, a.tn, a.fn) == (2, 0, 3, 1)
    assert a.sensitivity == pytest.approx(2 / 3)
    assert a.specificity == 1.0
    assert a.ppv == 1.0
    assert a.npv == pytest.approx(3 / 4)
    assert a.accuracy == pytest.approx(5 / 6)
    assert (b.tp, b.fp, b.tn, b.fn) == (1, 1, 3, 1)
    assert b.f1 == pytest.approx(2 / 4)
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 1, 4, 0)
    assert c.npv == 1.0 and c.ppv == 0.5


def test_undefined_ratios_are_nan():
    (a, b) = one_vs_rest(confusion_matrix([0, 0], [0, 0], 2), ["a", "b"])
    assert math.isnan(a.specificity) and math.isnan(b.sensitivity) and math.isnan(b.ppv)


def test_auc_is_mann_whitney_with_ties_and_matches_the_curve():
    positive = [1, 1, 0, 0, 1, 0]
    score = [0.9, 0.4, 0.4, 0.1, 0.8, 0.7]
    # pairs (pos, neg): 0.9 beats all 3; 0.8 beats all 3; 0.4 beats 0.1, ties 0.4, loses 0.7
    assert auc(positive, score) == pytest.approx((3 + 3 + 1 + 0.5) / 9)
    fpr, tpr, thresholds = roc_curve(positive, score)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(positive, score))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert thresholds[0] == np.inf


def test_auc_matches_scipy_mannwhitneyu():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.4
    s = rng.normal(size=200) + y
    u = mannwhitneyu(s[y], s[~y]).statistic
    assert auc(y, s) == pytest.approx(u / (y.sum() * (~y).sum()))


def test_classification_metrics_top1_and_auc():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics([0, 0, 1, 1], probs, ["non_covid", "covid19"], "covid19")
    assert m.accuracy == 0.5
    assert m.confusion == [[1, 1], [1, 1]]
    assert m.auc == pytest.approx(0.75)
    assert m.scalars()["covid19.sensitivity"] == 0.5
