import math

import numpy as np
import pytest

from ctedge.train.stats import delong, mcnemar, patient_bootstrap


def test_mcnemar_exact_matches_binomial_by_hand():
    # 10 cases: A alone right on 6, B alone right on 1, both right on 3
    a = np.array([1] * 6 + [0] * 1 + [1] * 3, dtype=bool)
    b = np.array([0] * 6 + [1] * 1 + [1] * 3, dtype=bool)
    t = mcnemar(a, b)
    # two-tailed exact: 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * (1 + 7) / 128
    assert t.p_value == pytest.approx(16 / 128)
    assert t.statistic == pytest.approx((abs(6 - 1) - 1) ** 2 / 7)
    assert not t.significant
    assert (t.detail["only_a_correct"], t.detail["only_b_correct"]) == (6, 1)


def test_mcnemar_significant_and_symmetric():
    a = np.array([1] * 15 + [0] * 2, dtype=bool)
    b = ~a
    t = mcnemar(a, b)
    assert t.significant and t.p_value == pytest.approx(mcnemar(b, a).p_value)
    assert mcnemar(a, a).p_value == 1.0


def _delong_by_definition(y, sa, sb):
    """DeLong et al. 1988 written out with the psi kernel, O(m n) loops."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    m, n = len(pos), len(neg)

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10, v01, aucs = [], [], []
    for s in (sa, sb):
        k = np.array([[psi(s[i], s[j]) for j in neg] for i in pos])
        aucs.append(k.mean())
        v10.append(k.mean(axis=1))
        v01.append(k.mean(axis=0))
    s10 = np.cov(np.vstack(v10))
    s01 = np.cov(np.vstack(v01))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return aucs, var


def test_delong_matches_the_definition_with_ties():
    from scipy.stats import norm

    rng = np.random.default_rng(7)
    y = rng.random(60) < 0.45
    sa = np.round(rng.normal(size=60) + 1.2 * y, 1)  # rounding makes ties
    sb = np.round(rng.normal(size=60) + 0.4 * y, 1)
    t = delong(y, sa, sb)
    (auc_a, auc_b), var = _delong_by_definition(y, sa, sb)
    assert (t.a, t.b) == (pytest.approx(auc_a), pytest.approx(auc_b))
    assert t.detail["variance"] == pytest.approx(var)
    assert t.statistic == pytest.approx((auc_a - auc_b) / math.sqrt(var))
    assert t.p_value == pytest.approx(2 * norm.sf(abs(t.statistic)))


def test_delong_identical_readers_and_a_clear_difference():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.5
    good = rng.normal(size=300) + 2 * y
    noise = rng.normal(size=300)
    assert delong(y, good, good).p_value == 1.0
    t = delong(y, good, noise)
    assert t.significant and t.a > 0.85 and 0.35 < t.b < 0.65


def test_bootstrap_resamples_patients_not_slices():
    # patient A: 9 slices all correct; patients B..D: 1 slice each, wrong.
    patients = np.array(["A"] * 9 + ["B", "C", "D"])
    correct = np.array([1.0] * 9 + [0.0] * 3)
    ci = patient_bootstrap(patients, lambda idx: {"acc": float(correct[idx].mean())},
                           n_resamples=500, seed=1)["acc"]
    assert ci.estimate == pytest.approx(0.75)
    # resampling patients, a draw without A has accuracy 0 (probability (3/4)^4 = 0.32)
    assert ci.low == 0.0 and ci.high == 1.0 or ci.low == 0.0
    slice_level = patient_bootstrap(np.arange(12), lambda idx: {"acc": float(correct[idx].mean())},
                                    n_resamples=500, seed=1)["acc"]
    assert slice_level.low > 0.4  # slices as independent units give a far narrower interval


def test_bootstrap_skips_undefined_draws():
    patients = np.array(["a", "b", "c"])
    values = np.array([1.0, 2.0, np.nan])
    ci = patient_bootstrap(patients, lambda idx: {"m": float(np.mean(values[idx]))},
                           n_resamples=200, seed=0)["m"]
    assert math.isnan(ci.estimate) and math.isnan(ci.low)
