"""Classification metrics: accuracy, per-group and worst-group accuracy (Sagawa et al. 2020)."""
from __future__ import annotations

from typing import Any

import numpy as np

from suite.metrics._arrays import as_numpy, labels_of, same_length


def accuracy(pred: Any, labels: Any) -> float:
    """Fraction of correct predictions; ``pred`` is labels (N,) or scores/logits (N, K)."""
    p, y = labels_of(pred), as_numpy(labels)
    same_length(p, y)
    return float((p == y).mean())


def group_accuracies(pred: Any, labels: Any, groups: Any) -> dict[int, float]:
    """Accuracy within each group id present in ``groups``."""
    p, y, g = labels_of(pred), as_numpy(labels), as_numpy(groups).astype(np.int64)
    same_length(p, y, g)
    ids, inv = np.unique(g, return_inverse=True)
    correct = np.bincount(inv, weights=(p == y).astype(np.float64), minlength=len(ids))
    count = np.bincount(inv, minlength=len(ids))
    return {int(i): float(c / n) for i, c, n in zip(ids, correct, count)}


def worst_group_accuracy(pred: Any, labels: Any, groups: Any) -> float:
    """Minimum over groups of the within-group accuracy."""
    return min(group_accuracies(pred, labels, groups).values())
