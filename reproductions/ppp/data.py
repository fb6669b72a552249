"""The datasets of the PPP protocol (spec §5-§6), as float64 feature matrices with ground-truth labels.

CPU protocol: scikit-learn's ``make_blobs`` (equal and unequal), and its bundled iris, wine,
breast_cancer and digits (PCA to 10-d), all standardised where the spec says so. Full protocol:
MNIST 70k from the IDX files (784-d and 50-d PCA) and large synthetic Gaussian mixtures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite.data import mnist
from suite.data.cache import cached
from suite.errors import DataNotFoundError, UnknownNameError

CPU_DATASETS = ("blobs", "blobs_unequal", "iris", "wine", "breast_cancer", "digits")
FULL_DATASETS = ("mnist784", "mnist_pca50", "gmm_k5", "gmm_k20", "gmm_k50")


@dataclass
class Data:
    name: str
    x: np.ndarray  # (n, d) float64
    y: np.ndarray  # (n,) int64 ground truth
    provenance: str  # "stand-in" (generated / bundled) or "paper-subset"/"paper" (read from disk)

    @property
    def k_true(self) -> int:
        return int(len(np.unique(self.y)))


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def blobs(n: int, k: int = 5, dim: int = 10, unequal: bool = False, seed: int = 0) -> Data:
    """``make_blobs`` with centres in a ±10 box, std 1 (spec §6); ``unequal``: sizes 1:2:..:k, stds 0.5..1.5."""
    from sklearn.datasets import make_blobs

    if unequal:
        w = np.arange(1, k + 1, dtype=np.float64)
        sizes = np.floor(n * w / w.sum()).astype(int)
        sizes[-1] += n - sizes.sum()
        stds = np.linspace(0.5, 1.5, k)
        rng = np.random.default_rng(seed)
        centers = rng.uniform(-10, 10, (k, dim))
        x, y = make_blobs(n_samples=sizes.tolist(), centers=centers, cluster_std=stds, random_state=seed)
    else:
        x, y = make_blobs(n_samples=n, centers=k, n_features=dim, cluster_std=1.0, center_box=(-10, 10),
                          random_state=seed)
    return Data("blobs_unequal" if unequal else "blobs", x.astype(np.float64), y.astype(np.int64), "stand-in")


def gaussian_mixture(n: int, k: int, dim: int, seed: int = 0) -> Data:
    """Full-scale synthetic mixture (spec §5): k isotropic unit-std Gaussians, centres in a ±10 box (cached)."""

    def build() -> tuple[np.ndarray, np.ndarray]:
        b = blobs(n, k, dim, seed=seed)
        return b.x.astype(np.float32), b.y

    x, y = cached("ppp-gmm", {"n": n, "k": k, "dim": dim, "seed": seed}, build)
    return Data(f"gmm_k{k}", np.asarray(x, dtype=np.float64), y, "stand-in")


def sklearn_real(name: str) -> Data:
    """iris / wine / breast_cancer (standardised) and digits (PCA to 10-d), bundled with scikit-learn."""
    from sklearn import datasets
    from sklearn.decomposition import PCA

    loaders = {"iris": datasets.load_iris, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits}
    d = loaders[name]()
    x = d.data.astype(np.float64)
    x = PCA(10, svd_solver="full").fit_transform(x) if name == "digits" else _standardise(x)
    return Data(name, x, d.target.astype(np.int64), "stand-in")


def mnist70k(root: Path, pca: int | None) -> Data:
    """MNIST train+test (70k) from the IDX files, pixels/255, optionally PCA-reduced (spec §5)."""
    splits = mnist.load(root)
    x = np.concatenate([splits[s].x.reshape(len(splits[s]), -1).numpy() for s in ("train", "test")]) / 255.0
    y = np.concatenate([splits[s].y.numpy() for s in ("train", "test")])
    if pca:
        from sklearn.decomposition import PCA

        x = PCA(pca, svd_solver="randomized", random_state=0).fit_transform(x)
    # the paper's own datasets are unknown (abstract only): MNIST is the spec's scale-study data, a stand-in
    return Data("mnist" + (f"_pca{pca}" if pca else "784"), x.astype(np.float64), y.astype(np.int64), "stand-in")


def load(name: str, *, n_blobs: int, gmm_n: int, gmm_dim: int, mnist_root: Path | None) -> Data:
    """One dataset of the protocol by name (CPU_DATASETS or FULL_DATASETS)."""
    if name in ("blobs", "blobs_unequal"):
        return blobs(n_blobs, unequal=name == "blobs_unequal")
    if name in ("iris", "wine", "breast_cancer", "digits"):
        return sklearn_real(name)
    if name.startswith("gmm_k") and name[5:].isdigit():
        return gaussian_mixture(gmm_n, int(name[5:]), gmm_dim)
    if name in ("mnist784", "mnist_pca50"):
        if mnist_root is None:
            raise DataNotFoundError(f"dataset {name} reads MNIST IDX files from <data root>/mnist; pass --data-root "
                                    "or set $SUITE_DATA")
        return mnist70k(mnist_root, 50 if name == "mnist_pca50" else None)
    raise UnknownNameError(f"unknown ppp dataset {name!r}; use one of {CPU_DATASETS + FULL_DATASETS}")
