"""Calibration metrics: ECE/MCE with equal-width confidence bins, NLL, Brier, and the partitioned
calibration error PCE of Yang et al. 2023 ("Beyond probability partitions", Eq. for PCE):

    PCE(g) = sum_P p(P) sum_{G in P} p(G) * |S(G) - S(f(G))|,

with the top-label statistic S(G) = accuracy in group G, S(f(G)) = mean confidence in G. With g the
confidence bin it is the ECE; with a constant g it is |mean confidence - accuracy|.

Binning convention (fixed and tested): bins (lo, hi] of width 1/n_bins, confidence 0 in the first
bin; confidence = max probability, prediction = argmax (first index on ties).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from suite.errors import ConfigError
from suite.metrics._arrays import as_numpy, same_length


def _probs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_numpy(probs).astype(np.float64), as_numpy(labels).astype(np.int64)
    if p.ndim != 2:
        raise ConfigError(f"calibration metrics need probabilities of shape (N, K), got {p.shape}")
    same_length(p, y)
    return p, y


def confidence_bins(conf: Any, n_bins: int = 15) -> np.ndarray:
    """Bin index of each confidence: bin b holds (b/n_bins, (b+1)/n_bins]; 0 goes to bin 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], as_numpy(conf), side="left")


def partitioned_calibration_error(probs: Any, labels: Any, groups: Any) -> float:
    """Top-label PCE for one partition (``groups`` (N,) group ids) or several ((P, N), averaged
    with p(P) = 1/P). p(G) is the fraction of examples in G."""
    p, y = _probs(probs, labels)
    g = as_numpy(groups).astype(np.int64)
    g = g[None] if g.ndim == 1 else g
    if g.ndim != 2 or g.shape[1] != len(y):
        raise ConfigError(f"groups must have shape (N,) or (P, N) with N={len(y)}, got {as_numpy(groups).shape}")
    conf, correct = p.max(1), (p.argmax(1) == y).astype(np.float64)
    total = 0.0
    for part in g:  # loop over partitions only; groups are vectorised with bincount
        _, inv = np.unique(part, return_inverse=True)
        n = np.bincount(inv).astype(np.float64)
        gap = np.bincount(inv, weights=correct) / n - np.bincount(inv, weights=conf) / n
        total += float((n / len(y) * np.abs(gap)).sum())
    return total / len(g)


def ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Expected calibration error: sum_b |B_b|/N * |acc(B_b) - conf(B_b)| over equal-width bins."""
    p, y = _probs(probs, labels)
    return partitioned_calibration_error(p, y, confidence_bins(p.max(1), n_bins))


def mce(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Maximum calibration error: max over non-empty bins of |acc - conf|."""
    p, y = _probs(probs, labels)
    _, inv = np.unique(confidence_bins(p.max(1), n_bins), return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    acc = np.bincount(inv, weights=(p.argmax(1) == y).astype(np.float64)) / n
    return float(np.abs(acc - np.bincount(inv, weights=p.max(1)) / n).max())


def nll(probs: Any, labels: Any, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class."""
    p, y = _probs(probs, labels)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], eps, None)).mean())


def brier(probs: Any, labels: Any) -> float:
    """Mean over examples of sum_k (p_k - 1[y = k])^2."""
    p, y = _probs(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())
