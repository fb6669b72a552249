"""Probabilistic Partitive Partitioning (Sultan 2020), RECONSTRUCTED from the abstract (spec §3).

The abstract says: k-means does the heavy partitioning, a Gaussian mixture model validates it, the
number of clusters is not given, and the result does not depend on initial conditions. The full
text could not be read, so the rules below (stable two-way k-means, BIC + agreement + crispness
check of each split, PCA for the GMM) are the spec's reconstruction; every threshold is a field of
:class:`PPPParams` and every split decision is logged.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

Variant = Literal["divisive", "flat", "no_validation", "unstable"]


@dataclass
class PPPParams:
    """Thresholds of the reconstruction (spec §3); all UNVERIFIED against the paper's PDF.

    ``variant``: ``divisive`` (primary), ``flat`` (secondary), and two test-only broken variants:
    ``no_validation`` (every split is accepted: the GMM check is skipped) and ``unstable``
    (one random-init k-means per split whose seed follows the outer seed: no fixed internal seeds).
    """

    variant: str = "divisive"
    n_init: int = 20  # k-means restarts (k-means++ seeds 0..n_init-1, fixed)
    min_size: int = 20  # leaves below max(min_size, 2 * gmm_dims) are not split
    gmm_dims: int = 10  # the GMM sees the top-p PCA components of the node (p = min(10, dim))
    reg_covar: float = 1e-6
    agreement: float = 0.95  # GMM MAP labels vs k-means labels
    crisp_posterior: float = 0.9  # a point is "crisp" if its max posterior >= this ...
    crisp_fraction: float = 0.9  # ... and a split is crisp if this fraction of points is
    k_max: int = 12  # flat variant: K = 1..k_max
    flat_score: float = 0.9  # flat variant: largest K with ARI(km, GMM) * mean max posterior >= this


@dataclass
class Split:
    """One split decision (logged for comparison with the paper once it can be read)."""

    node: int
    size: int
    accepted: bool
    bic1: float
    bic2: float
    agreement: float
    crisp: float
    mean_posterior: float
    reason: str


@dataclass
class PPPResult:
    labels: np.ndarray  # canonical leaf labels: cluster ids ordered by their smallest member index
    splits: list[Split] = field(default_factory=list)
    separability: dict[int, float] = field(default_factory=dict)  # leaf -> mean max posterior of its split

    @property
    def k(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def most_separable(self) -> Split | None:
        """C5: the accepted split with the highest mean max-posterior."""
        acc = [s for s in self.splits if s.accepted]
        return max(acc, key=lambda s: s.mean_posterior) if acc else None


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel so that cluster ids follow the order of each cluster's first (smallest-index) point."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty(len(first), dtype=np.int64)
    remap[order] = np.arange(len(first))
    return remap[np.unique(labels, return_inverse=True)[1]]


def stable_kmeans(x: np.ndarray, k: int, n_init: int, seed: int) -> tuple[np.ndarray, KMeans]:
    """k-means with ``n_init`` k-means++ restarts from a fixed seed, lowest inertia kept (spec §3)."""
    # tol=0: Lloyd iterations run until no label changes, so the result is a true fixed point
    # (sklearn's default tolerance stops early at data-order-dependent near-converged states)
    km = KMeans(n_clusters=k, n_init=n_init, init="k-means++", random_state=seed, tol=0.0, max_iter=1000).fit(x)
    return canonical_labels(km.labels_), km


def _gmm_space(x: np.ndarray, p: int) -> np.ndarray:
    """Top-p PCA components of a node (spec §3 'high-dimensional data'); k-means stays in full space."""
    if x.shape[1] <= p:
        return x - x.mean(0)
    return PCA(n_components=p, svd_solver="full").fit_transform(x)


def _valid_precisions(prec: np.ndarray) -> bool:
    """What GaussianMixture's ``precisions_init`` check demands: every matrix symmetric and positive-definite."""
    return all(np.allclose(p, p.T) and np.linalg.eigvalsh(p).min() > 0 for p in prec)


def _clipped_precisions(covs: np.ndarray, floor: float) -> np.ndarray:
    """Inverses of the symmetrised covariances with eigenvalues floored at ``floor``.

    Used only when the plain inverse is not symmetric positive-definite in floating point: a k-means
    side with fewer points than GMM dimensions has a rank-deficient covariance (e.g. a node of 21 points
    split 2 / 19 in 10 PCA dimensions), and ``reg_covar`` alone leaves it too ill-conditioned to invert.
    """
    w, v = np.linalg.eigh((covs + covs.transpose(0, 2, 1)) / 2)
    prec = (v / np.maximum(w, max(floor, 1e-12))[:, None, :]) @ v.transpose(0, 2, 1)
    return (prec + prec.transpose(0, 2, 1)) / 2


def validate_split(z: np.ndarray, labels: np.ndarray, prm: PPPParams) -> tuple[bool, dict[str, float], np.ndarray]:
    """GMM check of a two-way k-means split (spec §3 ``validate_split``).

    Accept iff BIC_2 < BIC_1, the 2-component GMM (initialised from the k-means means, covariances
    and weights) agrees with k-means on >= ``agreement`` of the points, and >= ``crisp_fraction``
    of the points have max posterior >= ``crisp_posterior``. Returns (accept, stats, max posteriors).
    """
    n, d = z.shape
    g1 = GaussianMixture(1, covariance_type="full", reg_covar=prm.reg_covar, random_state=0).fit(z)
    means = np.stack([z[labels == c].mean(0) for c in (0, 1)])
    covs = np.stack([np.cov(z[labels == c], rowvar=False).reshape(d, d) + prm.reg_covar * np.eye(d) for c in (0, 1)])
    weights = np.array([(labels == c).mean() for c in (0, 1)])
    try:
        prec = np.linalg.inv(covs)
    except np.linalg.LinAlgError:
        prec = np.linalg.pinv(covs)
    if not _valid_precisions(prec):
        prec = _clipped_precisions(covs, prm.reg_covar)
    g2 = GaussianMixture(2, covariance_type="full", reg_covar=prm.reg_covar, random_state=0, means_init=means,
                         weights_init=weights, precisions_init=prec).fit(z)
    post = g2.predict_proba(z)
    agree = float((post.argmax(1) == labels).mean())
    agree = max(agree, 1.0 - agree)  # the GMM may swap its two components
    maxp = post.max(1)
    stats = {"bic1": float(g1.bic(z)), "bic2": float(g2.bic(z)), "agreement": agree,
             "crisp": float((maxp >= prm.crisp_posterior).mean()), "mean_posterior": float(maxp.mean())}
    ok = stats["bic2"] < stats["bic1"] and agree >= prm.agreement and stats["crisp"] >= prm.crisp_fraction
    return ok, stats, maxp


def ppp_divisive(x: np.ndarray, prm: PPPParams, seed_offset: int = 0,
                 log: Callable[[str], None] | None = None) -> PPPResult:
    """Recursive two-way k-means with a GMM check of each split (spec §3, variant "divisive").

    ``seed_offset`` only matters for the test-only ``unstable`` variant: the paper's pipeline fixes
    its internal seeds, so different outer seeds must give the same partition (claim C1).
    """
    n, dim = x.shape
    p = min(prm.gmm_dims, dim)
    min_size = max(prm.min_size, 2 * p)
    leaves: list[tuple[np.ndarray, float]] = []
    splits: list[Split] = []
    queue: list[tuple[np.ndarray, float]] = [(np.arange(n), 1.0)]
    node = 0
    while queue:
        idx, sep = queue.pop()
        if len(idx) < min_size:
            leaves.append((idx, sep))
            continue
        xs = x[idx]
        if prm.variant == "unstable":  # broken: a single random init seeded by the outer seed
            km = KMeans(2, n_init=1, init="random", random_state=seed_offset * 7919 + node).fit(xs)
            lab = canonical_labels(km.labels_)
        else:
            lab, _ = stable_kmeans(xs, 2, prm.n_init, seed=0)
        if min(np.bincount(lab, minlength=2)) < 2:
            leaves.append((idx, sep))
            continue
        if prm.variant == "no_validation":  # broken: every split accepted, the GMM check is skipped
            ok, st = True, dict.fromkeys(("bic1", "bic2", "agreement", "crisp", "mean_posterior"), float("nan"))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ok, st, _ = validate_split(_gmm_space(xs, p), lab, prm)
        reason = "accepted" if ok else ("bic" if st["bic2"] >= st["bic1"] else
                                        "agreement" if st["agreement"] < prm.agreement else "not-crisp")
        splits.append(Split(node, len(idx), ok, st["bic1"], st["bic2"], st["agreement"], st["crisp"],
                            st["mean_posterior"], reason))
        if log is not None:
            log(f"ppp split node={node} n={len(idx)} {reason} bic1={st['bic1']:.1f} bic2={st['bic2']:.1f} "
                f"agree={st['agreement']:.3f} crisp={st['crisp']:.3f}")
        node += 1
        if ok:
            queue += [(idx[lab == 0], st["mean_posterior"]), (idx[lab == 1], st["mean_posterior"])]
        else:
            leaves.append((idx, sep))
    raw = np.empty(n, dtype=np.int64)
    for i, (idx, _) in enumerate(leaves):
        raw[idx] = i
    labels = canonical_labels(raw)
    sep_by_leaf = {int(labels[idx[0]]): s for idx, s in leaves if len(idx)}
    return PPPResult(labels, splits, sep_by_leaf)


def ppp_flat(x: np.ndarray, prm: PPPParams, log: Callable[[str], None] | None = None) -> PPPResult:
    """Variant "flat" (spec §3): the largest K whose k-means/GMM agreement x crispness >= flat_score."""
    from sklearn.metrics import adjusted_rand_score

    z = _gmm_space(x, min(prm.gmm_dims, x.shape[1]))
    best = np.zeros(len(x), dtype=np.int64)
    splits: list[Split] = []
    for k in range(2, prm.k_max + 1):
        lab, km = stable_kmeans(x, k, prm.n_init, seed=0)
        means = np.stack([z[lab == c].mean(0) for c in range(k)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            g = GaussianMixture(k, covariance_type="full", reg_covar=prm.reg_covar, random_state=0,
                                means_init=means).fit(z)
        post = g.predict_proba(z)
        score = adjusted_rand_score(lab, post.argmax(1)) * float(post.max(1).mean())
        ok = score >= prm.flat_score
        splits.append(Split(k, len(x), ok, float("nan"), float("nan"), score, float("nan"),
                            float(post.max(1).mean()), "accepted" if ok else "low-score"))
        if log is not None:
            log(f"ppp flat K={k} score={score:.3f} {'ok' if ok else 'rejected'}")
        if ok:
            best = lab
    return PPPResult(canonical_labels(best), splits, {})


def ppp(x: np.ndarray, prm: PPPParams, seed_offset: int = 0, log: Callable[[str], None] | None = None) -> PPPResult:
    """Run the configured variant on data ``x`` (n, d)."""
    if prm.variant == "flat":
        return ppp_flat(np.asarray(x, dtype=np.float64), prm, log)
    return ppp_divisive(np.asarray(x, dtype=np.float64), prm, seed_offset, log)


def compactness(x: np.ndarray, labels: np.ndarray) -> float:
    """Within-cluster sum of squares / total sum of squares (C3; lower = more compact)."""
    x = np.asarray(x, dtype=np.float64)
    tss = float(((x - x.mean(0)) ** 2).sum())
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    wss = float((x ** 2).sum() - ((sums ** 2).sum(1) / np.maximum(counts, 1)).sum())
    return wss / tss if tss > 0 else 0.0
