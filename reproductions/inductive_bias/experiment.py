"""One run of the protocol: sample hypotheses, fit the tail, read off I(ε) in bits, and check the
estimator (self-consistency, fit diagnostic, fallback branch, approximation-error bound on a known case).

Procedural tasks of intrinsic dimension k (spec §6) with the kernel (GP) class; image tasks with the
kernel class and the neural-network class(es) (spec §5/§6). Metric names are documented in README.md.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from suite.models import ConvNet
from suite.spec import DatasetRef

from . import estimator as E
from .sampling import BatchedMLP, Ensemble, gp_errors, gp_posterior, nn_errors
from .tasks import Task, image_task, intrinsic_dim_task


def kernel_errors(task: Task, cfg: Any, n_samples: int, gen: torch.Generator) -> tuple[np.ndarray, float]:
    """Test errors of ``n_samples`` GP hypotheses (spec §3 Algorithm 1); ``variant=prior`` samples the
    GP prior instead (a class that ignores the training set)."""
    kind = "prior" if cfg.variant == "prior" else "posterior"
    post = gp_posterior(task.x_train, task.y_train, task.x_test, task.out_dim, cfg.sigma, cfg.jitter, kind)
    return gp_errors(post, task.y_test, n_samples, gen).numpy(), post.train_fit_err


def estimate(errors: np.ndarray, eps: float, cfg: Any, bound: bool = True) -> dict[str, float]:
    """Fit, I(ε) in bits, the fit's facts (spec §7: store (k, λ, s) and the fraction below ε), the
    diagnostic and the approximation-error bound."""
    est = cfg.variant if cfg.variant in ("wrong-tail", "ignore-threshold", "naive-mle") else "paper"
    fit = E.fit_ncx2(errors, cfg.sc_tol_bits, "naive-mle" if est == "naive-mle" else "paper", cfg.sc_alphas)
    read = est if est in ("wrong-tail", "ignore-threshold") else "paper"
    sc = E.self_consistency_bits(errors, fit, cfg.sc_alphas, read)
    diag = E.diagnose(errors, fit, cfg.delta, cfg.sc_tol_bits, cfg.sc_alphas)
    out = {
        "ib_bits": float(E.ib_bits(eps, fit, read, ref=float(np.mean(errors)))[0]),
        # the same fitted ncχ² read without underflow (log-space series): what the fallback approximates
        "ib_exact_tail_bits": float(E.nats_to_bits(E.exact_ib_nats(eps, fit))[0]),
        "ib_empirical_bits": E.empirical_ib_bits(errors, eps),
        "frac_below_eps": float(np.mean(errors <= eps)),
        "mean_err": float(np.mean(errors)), "sd_err": float(np.std(errors)),
        "fit_df": fit.df, "fit_nc": fit.nc, "fit_scale": fit.scale, "fit_is_mle": float(fit.kind == "mle"),
        "sc_max_bits": float(np.max(np.abs(sc))), "ks": diag.ks, "ks_eta": diag.eta,
        "flagged": float(diag.flagged),
    }
    for a, v in zip(cfg.sc_alphas, sc):
        out[f"sc_bits@alpha={a}"] = float(v)
    if bound:
        out["ib_bound_bits"] = E.ib_interval(errors, fit, eps, cfg.delta)[0]
    out["_fit"] = fit  # type: ignore[assignment]
    return out


def _put(metrics: dict[str, float], res: dict[str, Any], suffix: str) -> None:
    for k, v in res.items():
        if not k.startswith("_"):
            metrics[f"{k}@{suffix}"] = float(v)


def concordance(xs: list[float], ys: list[float]) -> float:
    """Fraction of pairs (i < j in the given order of increasing dimension) with y_i < y_j."""
    pairs = [(i, j) for i in range(len(ys)) for j in range(i + 1, len(ys))]
    if not pairs:
        return float("nan")
    return float(np.mean([ys[i] < ys[j] for i, j in pairs]))


# --------------------------------------------------------------------------- procedural tasks (spec §6)

def procedural(cfg: Any, ctx: Any) -> tuple[dict[str, float], dict[str, Any], DatasetRef]:
    metrics: dict[str, float] = {}
    fits: dict[str, Any] = {}
    ibs, means, scs, flags_bad, flags_naive, flags_prod = [], [], [], [], [], []
    refs = []
    for k in cfg.dims:
        task = intrinsic_dim_task(k, cfg.n_train, cfg.n_test, cfg.ambient, ctx.seed)
        refs.append(task.ref)
        errs, fit_err = kernel_errors(task, cfg, cfg.n_samples, ctx.generator(100 + k))
        res = estimate(errs, cfg.eps, cfg)
        fits[f"k={k}"] = res.pop("_fit").as_dict()
        _put(metrics, res, f"k={k}")
        metrics[f"gp_train_fit_err@k={k}"] = fit_err
        ibs.append(res["ib_bits"])
        means.append(res["mean_err"])
        scs.append(res["sc_max_bits"])
        flags_prod.append(res["flagged"])
        flags_bad.append(float(E.diagnose(errs, E.bad_fit(errs, cfg.bad_var_factor), cfg.delta,
                                          cfg.sc_tol_bits, cfg.sc_alphas).flagged))
        if cfg.diagnose_naive:
            flags_naive.append(float(E.diagnose(errs, E.naive_fit(errs), cfg.delta, cfg.sc_tol_bits,
                                                cfg.sc_alphas).flagged))
        if k == max(cfg.dims):
            top_errs, top_fit = errs, fits[f"k={k}"]
            metrics["gp_train_fit_err_top"] = fit_err
    metrics["sc_max_abs_bits"] = float(max(scs))
    metrics["diag_flags_bad_fit"] = float(min(flags_bad))
    metrics["diag_flags_production_frac"] = float(np.mean(flags_prod))
    if flags_naive:
        metrics["diag_flags_naive_fit_frac"] = float(np.mean(flags_naive))
    metrics["ib_dim_concordance_procedural"] = concordance(list(cfg.dims), ibs)
    metrics["mean_err_dim_concordance"] = concordance(list(cfg.dims), means)
    metrics["ib_dim_spearman"] = float(stats.spearmanr(cfg.dims, ibs)[0]) if len(cfg.dims) > 2 else float("nan")
    # I(ε) vs n_train (reported, spec §6) on the highest-dimensional task
    kmax = max(cfg.dims)
    for n in cfg.n_train_sweep:
        task = intrinsic_dim_task(kmax, n, cfg.n_test, cfg.ambient, ctx.seed)
        errs, _ = kernel_errors(task, cfg, cfg.n_samples, ctx.generator(300 + n))
        res = estimate(errs, cfg.eps, cfg, bound=False)
        metrics[f"ib_bits_ntrain@n_train={n}"] = res["ib_bits"]
        metrics[f"mean_err_ntrain@n_train={n}"] = res["mean_err"]
    # stability vs the number of samples S (spec §4, C1's bound), highest-dimensional task
    for frac in (4, 2, 1):
        s = len(top_errs) // frac
        res = estimate(top_errs[:s], cfg.eps, cfg)
        metrics[f"ib_bits_S@S={s}"] = res["ib_bits"]
        metrics[f"ib_bound_bits_S@S={s}"] = res["ib_bound_bits"]
    metrics.update(mechanics(cfg, E.NcxFit(top_fit["df"], top_fit["nc"], top_fit["scale"])))
    metrics.update(known_answer(cfg, E.NcxFit(top_fit["df"], top_fit["nc"], top_fit["scale"], kind="given"),
                                np.random.default_rng(ctx.seed + 7)))
    return metrics, fits, DatasetRef.combine(*refs, name=f"intrinsic-dim-k{'-'.join(map(str, cfg.dims))}")


def mechanics(cfg: Any, fit: E.NcxFit) -> dict[str, float]:
    """Spec §6 smoke checks on a fitted ncχ²: how far the cube-root normal fallback is from the exact
    logcdf where scipy's is finite (I ≥ 5 nats) and from the log-space series where it underflows
    (reported), that I(ε) is finite wherever logcdf underflows, and that I(ε) never increases with ε on a
    grid from deep in the tail (ε = 10⁻⁴ × mean: the fallback branch for wide fits) to above the mean."""
    lo, hi = fit.mean * 1e-4, fit.mean * 1.5
    grid = np.geomspace(lo, hi, 400)
    exact = -stats.ncx2.logcdf(grid, fit.df, fit.nc, loc=0.0, scale=fit.scale)
    approx = E.wilson_hilferty_nats(grid, fit.df, fit.nc, fit.scale)
    both = np.isfinite(exact) & (exact >= 5.0)
    rel = float(np.max(np.abs(approx[both] - exact[both]) / exact[both])) if both.any() else float("nan")
    under = ~np.isfinite(exact)
    ib = E.ib_nats(grid, fit)
    if cfg.variant == "wrong-tail":
        ib = E.ib_nats(grid, fit, "wrong-tail")
    rises = np.diff(ib) / np.maximum(np.abs(ib[:-1]), 1e-12)
    same = under[:-1] == under[1:]  # consecutive grid points on the same branch (scipy / fallback)
    ser = E.exact_ib_nats(grid, fit)
    deep = float(np.max(np.abs(approx[under] - ser[under]) / ser[under])) if under.any() else float("nan")
    return {"fallback_rel_err": rel, "fallback_rel_err_deep": deep,
            "series_vs_scipy_rel_err": float(np.max(np.abs(ser[np.isfinite(exact)] - exact[np.isfinite(exact)])
                                                    / np.maximum(exact[np.isfinite(exact)], 1e-3))),
            "fallback_finite_frac": float(np.isfinite(ib[under]).mean()) if under.any()
            else 1.0, "fallback_points": float(under.sum()),
            "ib_max_rel_rise_branchwise": float(max(rises[same].max(), 0.0)),
            # the paper's switch to the fallback where logcdf underflows: I drops there (negative result)
            "ib_max_rel_rise": float(max(rises.max(), 0.0))}


def known_answer(cfg: Any, true: E.NcxFit, rng: np.random.Generator) -> dict[str, float]:
    """The approximation-error bound on a case with a known answer: S errors drawn from a known ncχ²
    (the fit of the highest-dimensional task), fitted as in production, R times; at ε* where the true
    I(ε*) is ``known_bits`` (beyond the log₂ S bits that direct counting can reach), the fraction of
    repetitions whose |Î − I| is within the bound (nominal 1 − δ)."""
    out: dict[str, float] = {}
    covered, errs = [], []
    for bits in cfg.known_bits:
        eps = optimize.brentq(lambda x: float(E.ib_bits(x, true)[0]) - bits, true.mean * 1e-9, true.mean)
        for _ in range(cfg.known_reps):
            e = true.scale * (rng.noncentral_chisquare(true.df, true.nc, cfg.n_samples) if true.nc > 0
                              else rng.chisquare(true.df, cfg.n_samples))
            res = estimate(e, eps, cfg)
            err = abs(res["ib_bits"] - bits)
            covered.append(err <= res["ib_bound_bits"])
            errs.append(err)
        out[f"known_abs_err_bits@bits={bits:g}"] = float(np.mean(errs[-cfg.known_reps:]))
    out["bound_coverage"] = float(np.mean(covered))
    return out


# --------------------------------------------------------------------------- image tasks (spec §5/§6)

def _maker(arch: str, task: Task, cfg: Any):  # noqa: ANN202
    d = task.x_train.shape[1]
    if arch == "mlp":
        return lambda s: BatchedMLP(s, d, tuple(cfg.nn_hidden), task.out_dim)
    if arch == "cnn":
        c = 1 if d in (64, 784) else 3
        side = int(round(math.sqrt(d // c)))

        def one() -> nn.Module:
            return nn.Sequential(nn.Unflatten(1, (c, side, side)),
                                 ConvNet(c, task.out_dim, [(w,) for w in cfg.cnn_widths], tuple(cfg.nn_hidden), side))

        return lambda s: Ensemble(one, s)
    raise ValueError(f"nn architecture {arch!r} unknown; use mlp or cnn")


def images(cfg: Any, ctx: Any) -> tuple[dict[str, float], dict[str, Any], list[DatasetRef]]:
    """Kernel vs neural-network hypotheses on image tasks at ε = the ``eps_quantile`` of the first NN
    class's sampled errors (spec §6: 10th percentile), the same ε for every class of a task."""
    metrics: dict[str, float] = {}
    fits: dict[str, Any] = {}
    refs = []
    kernel_ib = []
    for i, name in enumerate(cfg.image_datasets):
        task = image_task(ctx, name, cfg.img_n_train, cfg.img_n_test, ctx.seed)
        refs.append(task.ref)
        if ctx.dry_run:
            for arch in cfg.nn_archs:  # build each class's batched model on the real shapes
                _maker(arch, task, cfg)(2)(task.x_train[:2].float().unsqueeze(0).expand(2, 2, -1))
            continue
        nn_res = {}
        for arch in cfg.nn_archs:
            r = nn_errors(_maker(arch, task, cfg), task.x_train, task.y_train, task.x_test, task.y_test,
                          task.out_dim, cfg.nn_models, cfg.nn_epochs, cfg.nn_batch, cfg.nn_lr,
                          seed=ctx.seed * 1000 + i, ctx=ctx, name=f"{name}-{arch}")
            nn_res[arch] = r
            metrics[f"nn_test_acc_{arch}@{name}"] = float(r.test_acc.mean())
            metrics[f"nn_train_err_{arch}@{name}"] = float(r.train_errors.mean())
        eps = float(np.quantile(nn_res[cfg.nn_archs[0]].errors.numpy(), cfg.eps_quantile))
        metrics[f"eps@{name}"] = eps
        for arch, r in nn_res.items():
            res = estimate(r.errors.numpy(), eps, cfg, bound=False)
            fits[f"{name}/nn_{arch}"] = res.pop("_fit").as_dict()
            _put(metrics, res, f"{name}/nn_{arch}")
        kerrs, fit_err = kernel_errors(task, cfg, cfg.n_samples, ctx.generator(500 + i))
        res = estimate(kerrs, eps, cfg, bound=False)
        fits[f"{name}/kernel"] = res.pop("_fit").as_dict()
        _put(metrics, res, f"{name}/kernel")
        metrics[f"gp_train_fit_err@{name}"] = fit_err
        kernel_ib.append(res["ib_bits"])
        diff = res["ib_bits"] - metrics[f"ib_bits@{name}/nn_{cfg.nn_archs[0]}"]
        metrics[f"ib_kernel_minus_nn_bits@{name}"] = diff
        if "mlp" in nn_res and "cnn" in nn_res:
            metrics[f"ib_mlp_minus_cnn_bits@{name}"] = (metrics[f"ib_bits@{name}/nn_mlp"]
                                                        - metrics[f"ib_bits@{name}/nn_cnn"])
    if kernel_ib:
        metrics["ib_kernel_minus_nn_bits"] = float(min(metrics[f"ib_kernel_minus_nn_bits@{n}"]
                                                       for n in cfg.image_datasets))
        metrics["ib_dim_concordance_images"] = concordance(list(range(len(kernel_ib))), kernel_ib)
        metrics["gp_train_fit_err_images"] = float(max(metrics[f"gp_train_fit_err@{n}"] for n in cfg.image_datasets))
    return metrics, fits, refs
