"""Hand-computed cases for every shared metric."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from suite.errors import ConfigError, UnknownNameError
from suite.metrics import (accuracy, ari, brier, clustering_accuracy, confidence_bins, ece, exact_match,
                           group_accuracies, gsm8k_accuracy, gsm8k_extract, hungarian_map, mce, mean_pass_at_k,
                           nll, nmi, normalize_number, partitioned_calibration_error, pass_at_k,
                           worst_group_accuracy)


def test_accuracy_and_worst_group() -> None:
    pred, y, g = [0, 1, 1, 2], [0, 1, 2, 2], [0, 0, 1, 1]
    assert accuracy(pred, y) == 0.75
    logits = torch.tensor([[2.0, 0, 0], [0, 1, 0], [0, 3, 1], [0, 0, 5]])
    assert accuracy(logits, torch.tensor(y)) == 0.75
    assert group_accuracies(pred, y, g) == {0: 1.0, 1: 0.5}
    assert worst_group_accuracy(np.array(pred), np.array(y), np.array([3, 7, 7, 7])) == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="differ in length"):
        accuracy([0, 1], [0])


def test_clustering_accuracy_hungarian() -> None:
    y = [0, 0, 0, 1, 1, 2]
    c = [1, 1, 0, 2, 2, 0]  # best map 1->0, 2->1, 0->2: 2 + 2 + 1 matches
    assert clustering_accuracy(y, c) == pytest.approx(5 / 6)
    assert hungarian_map(y, c) == {1: 0, 2: 1, 0: 2}
    assert clustering_accuracy(y, [5, 5, 5, 9, 9, 7]) == 1.0  # any relabelling of the truth
    assert clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5  # more clusters than classes
    assert clustering_accuracy([0, 1, 2, 3], [0, 0, 0, 0]) == 0.25  # fewer clusters than classes


def test_nmi_ari_hand_values() -> None:
    y, c = [0, 0, 1, 1], [0, 0, 1, 2]
    # H(Y) = ln 2, H(C) = 1.5 ln 2, I = ln 2 (C determines Y): NMI = ln2 / (1.25 ln2)
    assert nmi(y, c) == pytest.approx(0.8)
    # sum C(n_ij,2) = 1, rows 2, cols 1, C(4,2) = 6: (1 - 1/3) / (1.5 - 1/3)
    assert ari(y, c) == pytest.approx(4 / 7)
    assert nmi(y, [1, 1, 0, 0]) == pytest.approx(1.0) and ari(y, [1, 1, 0, 0]) == pytest.approx(1.0)


P = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.55, 0.45]])
Y = np.array([0, 1, 1, 0, 1])  # correct: yes, no, yes, yes, no


def test_ece_mce_hand_values() -> None:
    # 5 bins (lo, hi]: 0.9 -> (0.8,1]; 0.8, 0.7 -> (0.6,0.8]; 0.6, 0.55 -> (0.4,0.6]
    assert confidence_bins(P.max(1), 5).tolist() == [4, 3, 3, 2, 2]
    assert confidence_bins([0.0, 1.0], 15).tolist() == [0, 14]
    # .2*|1-.9| + .4*|.5-.75| + .4*|.5-.575|
    assert ece(P, Y, n_bins=5) == pytest.approx(0.02 + 0.1 + 0.03)
    assert mce(P, Y, n_bins=5) == pytest.approx(0.25)
    assert ece(torch.tensor(P), torch.tensor(Y), n_bins=5) == pytest.approx(0.15)


def test_pce_reduces_to_ece_and_marginal() -> None:
    conf = P.max(1)
    assert partitioned_calibration_error(P, Y, confidence_bins(conf, 5)) == pytest.approx(ece(P, Y, 5))
    assert partitioned_calibration_error(P, Y, np.zeros(5)) == pytest.approx(abs(conf.mean() - 0.6))  # .11
    # two partitions averaged: {0,1 | 2,3,4} gives .4*|.5-.85| + .6*|2/3-.61667| = .17; constant gives .11
    parts = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    assert partitioned_calibration_error(P, Y, parts) == pytest.approx((0.17 + 0.11) / 2)
    with pytest.raises(ConfigError, match="groups must have shape"):
        partitioned_calibration_error(P, Y, np.zeros(4))


def test_pce_equals_ece_on_random_data() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, 4, 500)
    assert partitioned_calibration_error(p, y, confidence_bins(p.max(1), 15)) == pytest.approx(ece(p, y))
    bins = confidence_bins(p.max(1), 15)
    gaps = [abs((p.argmax(1) == y)[bins == b].mean() - p.max(1)[bins == b].mean()) * (bins == b).mean()
            for b in np.unique(bins)]
    assert ece(p, y) == pytest.approx(sum(gaps))  # loop definition


def test_nll_brier() -> None:
    assert nll(P, Y) == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)
                                        + math.log(0.45)) / 5)
    assert brier(P, Y) == pytest.approx((0.02 + 1.28 + 0.18 + 0.32 + 0.605) / 5)


def test_gsm8k_extraction() -> None:
    assert gsm8k_extract("5+7=12 apples\n#### 12") == "12"
    assert gsm8k_extract("#### $1,200.00") == "1200"
    assert gsm8k_extract("#### 3\n then #### -4.50") == "-4.5"
    assert gsm8k_extract("The answer is 42.") is None
    assert gsm8k_extract("The answer is 42.", "flexible") == "42"
    assert gsm8k_extract("costs $3.50, then -7 dollars", "flexible") == "-7"
    assert gsm8k_extract("no numbers here", "flexible") is None
    with pytest.raises(UnknownNameError):
        gsm8k_extract("x", "loose")


def test_exact_match_and_accuracy() -> None:
    assert normalize_number("$1,200.") == "1200" and normalize_number("18.0") == "18"
    assert normalize_number("0.50") == "0.5" and normalize_number("-0.0") == "0"
    assert exact_match("1,200", "1200.0") and exact_match("$5", "5")
    assert not exact_match("12", "13") and not exact_match(None, "1")
    comps = ["so she makes 18\n#### 18", "The answer is 18", "#### 19"]
    golds = ["16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n#### 18"] * 3
    assert gsm8k_accuracy(comps, golds, "strict") == pytest.approx(1 / 3)
    assert gsm8k_accuracy(comps, golds, "flexible") == pytest.approx(2 / 3)


def test_pass_at_k() -> None:
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 0, 3) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)
    exact = 1 - math.comb(163, 10) / math.comb(200, 10)
    assert pass_at_k(200, 37, 10) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - math.comb(197, 100) / math.comb(200, 100), rel=1e-12)
    assert mean_pass_at_k([5, 10], [2, 0], 2) == pytest.approx(0.35)
    with pytest.raises(ConfigError, match="at least k"):
        pass_at_k(3, 1, 5)


def test_chi2_gof_accepts_true_and_rejects_wrong_distribution():
    import torch

    from suite.metrics.stats import chi2_gof

    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01])
    draws = torch.multinomial(p, 20000, replacement=True, generator=g)
    assert chi2_gof(draws, p) > 1e-3
    wrong = torch.tensor([0.45, 0.35, 0.15, 0.04, 0.01])
    assert chi2_gof(draws, wrong) < 1e-6
    # tiny bins are pooled: a distribution with many rare outcomes still gives a valid test
    rare = torch.cat([p * 0.9, torch.full((50,), 0.1 / 50)])
    draws = torch.multinomial(rare, 5000, replacement=True, generator=g)
    assert chi2_gof(draws, rare) > 1e-3
