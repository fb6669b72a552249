"""Data loading and the measurement protocol of the FasterPAM reproduction (spec §4–§6)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist, squareform

from suite.errors import ConfigError
from suite.spec import DatasetRef, curve_metrics

from . import method as M


def euclidean_matrix(X: np.ndarray) -> np.ndarray:
    """Dense symmetric float64 Euclidean dissimilarity matrix (spec §7: float64, symmetric)."""
    return squareform(pdist(np.asarray(X, dtype=np.float64)))


def load_stand_in(n: int, rng: np.random.Generator) -> tuple[np.ndarray, DatasetRef]:
    """A seeded subsample of scikit-learn's digits (1,797 × 64, a subset of UCI optdigits; spec §6)."""
    from suite.data import digits

    x, _ = digits.load_digits_arrays()
    X = x.reshape(len(x), -1).numpy().astype(np.float64)
    if n > len(X):
        raise ConfigError(f"n={n} exceeds the 1797 digits of the stand-in; use n<=1797 or scale=full")
    idx = np.sort(rng.choice(len(X), n, replace=False))
    return X[idx], digits.load()["train"].ref       # the ref its loader sets (stand-in)


def load_full_data(cfg: Any, ctx: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, DatasetRef]:
    """MNIST train images (IDX, 784-d pixels) subsampled to n, from ``<data root>/mnist`` (spec §5)."""
    from suite.data.catalog import load_dataset

    # The data root's mnist/ folder; a dry run without it builds on a tiny IDX fixture.
    splits = load_dataset(ctx, "mnist")
    X = splits["train"].x.reshape(len(splits["train"]), -1).numpy().astype(np.float64)
    if n > len(X):
        if not ctx.dry_run:
            raise ConfigError(f"n={n} exceeds the {len(X)} MNIST training images found; lower n")
        n = len(X)  # dry run on a fixture: build the pipeline on what is there
    idx = np.sort(rng.choice(len(X), n, replace=False))
    # The paper subsamples MNIST's 60,000 training images; provenance is the loader's (a dry-run
    # fixture comes back as "mnist-fixture" / stand-in).
    return X[idx], splits["train"].ref


KMEDOIDS_MISSING = ("the Rust reference is not installed: metrics fasterpam_vs_kmedoids_td_rel and "
                    "kmedoids_swap_s are absent (claim R-same-as-kmedoids: missing); "
                    "install it with `pip install kmedoids`")


def have_kmedoids() -> bool:
    """Whether the Rust reference (``kmedoids`` package, an optional extra) can be imported."""
    try:
        import kmedoids  # noqa: F401
    except ImportError:
        return False
    return True


def _kmedoids_fasterpam(D: np.ndarray, init: np.ndarray, max_iter: int) -> tuple[float, float]:
    """The Rust reference (``kmedoids`` package), single-threaded, same initial medoids."""
    import kmedoids

    t0 = time.perf_counter()
    res = kmedoids.fasterpam(D, init.astype(np.int64).copy(), max_iter=max_iter, n_cpu=1)
    return float(res.loss), time.perf_counter() - t0


def measure(D: np.ndarray, cfg: Any, rng: np.random.Generator, ctx: Any,
            with_pam: bool = True, suffix: str = "", with_kmedoids: bool | None = None) -> dict[str, float]:
    """All algorithms for every k in ``cfg.ks`` on one matrix; metrics as curves over k.

    The Rust reference is compared only when ``cfg.compare_kmedoids`` and the package imports
    (``with_kmedoids`` overrides the import check); otherwise its metrics are left out."""
    ks = list(cfg.ks)
    if with_kmedoids is None:
        with_kmedoids = bool(cfg.compare_kmedoids) and have_kmedoids()
    n = D.shape[0]
    cols: dict[str, list[float]] = {}

    def put(name: str, v: float) -> None:
        cols.setdefault(name, []).append(float(v))

    summary: dict[str, float] = {}
    mismatch = 0
    for k in ctx.progress(ks, desc=f"k (n={n})"):
        if k >= n:
            raise ConfigError(f"k={k} must be < n={n}; lower ks or raise n")
        build = M.build_init(D, k)
        put("build_s", build.seconds)
        put("build_td", build.td)
        fr = M.fasterpam_swap(D, build.medoids, cfg.max_iter, variant=cfg.variant)
        fp1 = M.fastpam1_swap(D, build.medoids, cfg.max_iter, variant=cfg.variant)
        for name, r in (("fasterpam", fr), ("fastpam1", fp1)):
            put(f"{name}_td", r.td)
            put(f"{name}_swap_s", r.seconds)
            put(f"{name}_evals", r.evals)
            put(f"{name}_swaps", r.swaps)
            put(f"{name}_iters", r.iters)
        if with_pam:
            pam = M.pam_swap(D, build.medoids, cfg.max_iter)
            put("pam_td", pam.td)
            put("pam_swap_s", pam.seconds)
            put("pam_evals", pam.evals)
            put("pam_swaps", pam.swaps)
            put("pam_iters", pam.iters)
            mismatch += int(set(pam.medoids.tolist()) != set(fp1.medoids.tolist()))
            put("fastpam1_td_minus_pam_td_abs", abs(fp1.td - pam.td))
            put("fasterpam_td_over_pam_td", fr.td / pam.td)
            put("swap_speedup_s", pam.seconds / fr.seconds)
            put("swap_speedup_evals", pam.evals / fr.evals)
            put("fastpam1_speedup_s", pam.seconds / fp1.seconds)
            put("fastpam1_speedup_evals", pam.evals / fp1.evals)
        if with_kmedoids:
            km_td, km_s = _kmedoids_fasterpam(D, build.medoids, cfg.max_iter)
            put("kmedoids_swap_s", km_s)
            put("fasterpam_over_kmedoids_s", fr.seconds / km_s)
            put("fasterpam_vs_kmedoids_td_rel", abs(fr.td - km_td) / km_td)
        # random initialisation (spec §2 C3): FasterPAM and the alternating baseline
        tds, secs, alts = [], [], []
        for _ in range(cfg.random_inits):
            init = M.random_init(n, k, rng)
            r = M.fasterpam_swap(D, init, cfg.max_iter, variant=cfg.variant)
            tds.append(r.td)
            secs.append(r.seconds)
            alts.append(M.alternating(D, init, cfg.max_iter).td)
        put("fasterpam_rand_td", float(np.mean(tds)))
        put("fasterpam_rand_swap_s", float(np.mean(secs)))
        put("alternating_rand_td", float(np.mean(alts)))
        if with_pam:
            put("fasterpam_rand_td_over_pam_td", float(np.mean(tds)) / cols["pam_td"][-1])
        if cfg.clara:
            cl = M.clara(D, k, rng, max_iter=cfg.max_iter)
            fcl = M.fastclara(D, k, rng, max_iter=cfg.max_iter)
            put("clara_td", cl.td)
            put("clara_s", cl.seconds)
            put("fastclara_td", fcl.td)
            put("fastclara_s", fcl.seconds)
        ctx.log("n=%d k=%d fasterpam td=%.4f %.3fs fastpam1 td=%.4f %.3fs%s", n, k, fr.td, fr.seconds,
                fp1.td, fp1.seconds, f" pam td={cols['pam_td'][-1]:.4f} {cols['pam_swap_s'][-1]:.3f}s"
                if with_pam else "")

    out: dict[str, float] = {}
    for name, ys in cols.items():
        out.update(curve_metrics(name + suffix, "k", ks, ys))
    if with_pam and not suffix:
        kmin, kmax = ks[0], ks[-1]
        kr = kmax / kmin
        c = cols
        summary["fastpam1_td_minus_pam_td_abs"] = max(c["fastpam1_td_minus_pam_td_abs"])
        summary["fastpam1_medoid_mismatch"] = float(mismatch)
        summary["fasterpam_td_over_pam_td"] = max(c["fasterpam_td_over_pam_td"])
        summary["fasterpam_rand_td_over_pam_td"] = max(c["fasterpam_rand_td_over_pam_td"])
        # O(k): PAM / FastPAM1 distance evaluations per SWAP run, divided by k (spec §6 small)
        summary["fastpam1_evals_speedup_over_k"] = min(
            s / k for s, k in zip(c["fastpam1_speedup_evals"], ks))
        summary["k_max_over_k_min"] = kr
        summary["speedup_growth_evals_rel"] = c["swap_speedup_evals"][-1] / c["swap_speedup_evals"][0] / kr
        summary["speedup_growth_s_rel"] = c["swap_speedup_s"][-1] / c["swap_speedup_s"][0] / kr
        summary["fastpam1_speedup_growth_s_rel"] = (
            c["fastpam1_speedup_s"][-1] / c["fastpam1_speedup_s"][0] / kr)
        summary["swap_speedup_s_kmax"] = c["swap_speedup_s"][-1]
        summary["swap_speedup_evals_kmax"] = c["swap_speedup_evals"][-1]
        if with_kmedoids:
            summary["fasterpam_vs_kmedoids_td_rel"] = max(c["fasterpam_vs_kmedoids_td_rel"])
            summary["fasterpam_over_kmedoids_s_kmax"] = c["fasterpam_over_kmedoids_s"][-1]
    out.update(summary)
    return out
