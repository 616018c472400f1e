import numpy as np
import pytest

from ctedge.benchmarks.metrics import auc, binary_metrics, classification_report, deltas


def test_auc_known_values():
    pos = np.array([True, True, False, False])
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), pos) == 1.0
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), pos) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), pos) == 0.5
    assert auc(np.array([0.9, 0.3, 0.5, 0.1]), pos) == 0.75
    assert auc(np.array([0.9, 0.8]), np.array([True, True])) is None


def test_auc_matches_scipy_rank_formula_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)
    pos = rng.random(200) < 0.4
    # brute force: P(score_pos > score_neg) + 0.5 P(equal)
    sp, sn = scores[pos][:, None], scores[~pos][None, :]
    expected = ((sp > sn).sum() + 0.5 * (sp == sn).sum()) / (sp.size * sn.size)
    assert auc(scores, pos) == pytest.approx(expected)


def test_binary_metrics_and_empty_denominators():
    m = binary_metrics(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 0, 1, 1], bool))
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 1)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(1 / 2)
    none = binary_metrics(np.zeros(3, bool), np.zeros(3, bool))
    assert none["sensitivity"] is None and none["ppv"] is None and none["specificity"] == 1.0


def test_classification_report_and_deltas():
    classes = ["normal", "covid19", "tuberculosis"]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    labels = ["normal", "covid19", "covid19", "tuberculosis"]
    r = classification_report(probs, labels, classes, "normal")
    assert r["n"] == 4 and r["accuracy"] == 0.75
    assert r["per_class"]["covid19"]["accuracy"] == 0.5
    assert r["per_class"]["covid19"]["support"] == 2
    assert r["abnormal"]["sensitivity"] == pytest.approx(2 / 3)
    assert r["abnormal"]["specificity"] == 1.0
    assert r["abnormal"]["auc"] == 1.0  # 1 - p(normal) ranks every abnormal above the normal
    better = probs.copy()
    better[2] = [0.2, 0.7, 0.1]
    d = deltas(r, classification_report(better, labels, classes, "normal"))
    assert d["accuracy"] == pytest.approx(0.25)
    assert d["per_class"]["covid19"]["sensitivity"] == pytest.approx(0.5)
    assert d["abnormal"]["sensitivity"] == pytest.approx(1 / 3)
