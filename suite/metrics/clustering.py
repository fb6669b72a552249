"""Clustering metrics: accuracy under the best one-to-one cluster->class map (Hungarian matching,
scipy ``linear_sum_assignment``), NMI and ARI (scikit-learn)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from suite.metrics._arrays import as_numpy, same_length


def _contingency(y: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ys, yi = np.unique(y, return_inverse=True)
    cs, ci = np.unique(c, return_inverse=True)
    m = np.zeros((len(cs), len(ys)), dtype=np.int64)
    np.add.at(m, (ci, yi), 1)
    return m, cs, ys


def hungarian_map(labels_true: Any, labels_pred: Any) -> dict[int, int]:
    """The cluster -> class map maximising the number of matches (clusters left unmatched when there
    are more clusters than classes are absent from the map)."""
    y, c = as_numpy(labels_true).ravel(), as_numpy(labels_pred).ravel()
    same_length(y, c)
    m, cs, ys = _contingency(y, c)
    rows, cols = linear_sum_assignment(m, maximize=True)
    return {int(cs[r]): int(ys[k]) for r, k in zip(rows, cols)}


def clustering_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """ACC = max over one-to-one maps of the fraction of examples whose mapped cluster equals the class."""
    y, c = as_numpy(labels_true).ravel(), as_numpy(labels_pred).ravel()
    same_length(y, c)
    m, _, _ = _contingency(y, c)
    rows, cols = linear_sum_assignment(m, maximize=True)
    return float(m[rows, cols].sum() / len(y))


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information (arithmetic-mean normalisation, scikit-learn's default)."""
    y, c = as_numpy(labels_true).ravel(), as_numpy(labels_pred).ravel()
    same_length(y, c)
    return float(normalized_mutual_info_score(y, c))


def ari(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985)."""
    y, c = as_numpy(labels_true).ravel(), as_numpy(labels_pred).ravel()
    same_length(y, c)
    return float(adjusted_rand_score(y, c))
