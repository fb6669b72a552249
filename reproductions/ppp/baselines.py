"""Baselines of spec §4, run on the same features in the same job.

- k-means with the true K (k-means++, 10 restarts): the "given K" reference;
- k-means with K chosen by the silhouette score, GMM with K chosen by BIC: K-selection baselines;
- spectral clustering with the true K (scikit-learn, k-NN affinity), fit on at most ``max_n`` points,
  the rest assigned to the nearest cluster mean;
- k-means with the true K, one random init (``init="random", n_init=1``): the init-sensitive
  baseline whose repeatability over outer seeds is compared with PPP's (C1).
G-means and X-means (also in spec §4) are not run (see README).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture

from reproductions.ppp.method import canonical_labels


def _subsample(n: int, max_n: int, seed: int) -> np.ndarray:
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_n, replace=False))


def _nearest_mean(x: np.ndarray, idx: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Labels for all of ``x`` from labels of the subset ``idx``: nearest cluster mean."""
    k = int(lab.max()) + 1
    means = np.stack([x[idx][lab == c].mean(0) for c in range(k)])
    d2 = (x ** 2).sum(1)[:, None] - 2 * x @ means.T + (means ** 2).sum(1)[None]
    out = d2.argmin(1)
    out[idx] = lab
    return out


def kmeans_true_k(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    return canonical_labels(KMeans(k, n_init=10, random_state=seed).fit_predict(x))


def kmeans_random_init(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """One random-init k-means run (init sensitive; spec §4 'plain k-means with the true K')."""
    return canonical_labels(KMeans(k, n_init=1, init="random", random_state=seed).fit_predict(x))


def kmeans_silhouette(x: np.ndarray, k_max: int, seed: int, max_n: int = 5000) -> np.ndarray:
    """k-means (K = 2..k_max) with the K of highest silhouette (scored on at most ``max_n`` points)."""
    idx = _subsample(len(x), max_n, seed)
    best, best_s = None, -np.inf
    for k in range(2, k_max + 1):
        lab = KMeans(k, n_init=5, random_state=seed).fit_predict(x)
        if len(np.unique(lab[idx])) < 2:
            continue
        s = silhouette_score(x[idx], lab[idx])
        if s > best_s:
            best, best_s = lab, s
    return canonical_labels(best if best is not None else np.zeros(len(x), dtype=np.int64))


def gmm_bic(x: np.ndarray, k_max: int, seed: int, max_n: int = 20000) -> np.ndarray:
    """Full-covariance GMM (K = 1..k_max, fit on at most ``max_n`` points) with the lowest BIC."""
    idx = _subsample(len(x), max_n, seed)
    best, best_b = None, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(1, k_max + 1):
            g = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=seed).fit(x[idx])
            b = g.bic(x[idx])
            if b < best_b:
                best, best_b = g, b
    return canonical_labels(best.predict(x))


def spectral(x: np.ndarray, k: int, seed: int, max_n: int = 3000, n_neighbors: int = 10) -> np.ndarray:
    """Spectral clustering with the true K on a k-NN graph (scikit-learn)."""
    idx = _subsample(len(x), max_n, seed)
    sc = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=min(n_neighbors, len(idx) - 1),
                            assign_labels="kmeans", random_state=seed)
    lab = sc.fit_predict(x[idx])
    return canonical_labels(_nearest_mean(x, idx, lab))
