"""Shared metrics: classification (accuracy, worst-group), clustering (Hungarian ACC, NMI, ARI),
calibration (ECE, MCE, PCE, NLL, Brier), GSM8K answer matching and unbiased pass@k."""
from __future__ import annotations

from suite.metrics.calibration import brier, confidence_bins, ece, mce, nll, partitioned_calibration_error
from suite.metrics.classification import accuracy, group_accuracies, worst_group_accuracy
from suite.metrics.clustering import ari, clustering_accuracy, hungarian_map, nmi
from suite.metrics.passk import mean_pass_at_k, pass_at_k
from suite.metrics.text import exact_match, gsm8k_accuracy, gsm8k_extract, normalize_number

__all__ = ["accuracy", "group_accuracies", "worst_group_accuracy", "clustering_accuracy", "hungarian_map", "nmi",
           "ari", "ece", "mce", "nll", "brier", "confidence_bins", "partitioned_calibration_error",
           "gsm8k_extract", "normalize_number", "exact_match", "gsm8k_accuracy", "pass_at_k", "mean_pass_at_k"]
