"""BiBench: Benchmarking and Analyzing Network Binarization (Qin et al., ICML 2023).

The eight operator-level binarization algorithms as drop-in binarized Conv2d/Linear (:mod:`.layers`,
surrogates in :mod:`.quantizers`), the benchmark's tracks (:mod:`.experiment`: learning-task and
architecture accuracy, corruption robustness, training consumption; :mod:`.complexity`: theoretical
FLOPs/parameter compression; :mod:`.hardware`: a bit-packed XNOR-popcount micro-benchmark, report only)
and the exact operator checks (:mod:`.checks`) that every run measures.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from reproductions.bibench.checks import complexity_checks, fda_checks, forward_checks, gradient_checks
from reproductions.bibench.experiment import (Bench, accuracy_tracks, complexity_track, dry_run, hardware_track,
                                              load, _check_cfg)
from reproductions.bibench.layers import ALGO_NAMES, BinaryOptions, Variant
from suite.config import Range
from suite.context import RunContext
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources, Table

ALGO_LEGEND = "0=FP 1=BNN 2=XNOR 3=DoReFa 4=Bi-Real 5=XNOR++ 6=ReActNet 7=ReCU 8=FDA"


@dataclass
class BiBenchConfig:
    """One benchmark run. ``archs[0]`` is the main architecture (task, robustness and training tracks).

    ``setting``/``fp_setting``: ``<optimizer>_<lr>_<schedule>`` of the binarized / FP training.
    ``fp_arch_settings``: ``"<arch>:<setting>"`` entries replacing ``fp_setting`` for that architecture's FP
    model (BiBench's ``acc_cifar10/reactnet_fp32.py`` trains with Adam); an Adam setting there runs without
    weight decay (BiBench's Adam schedules set none), an SGD one with ``fp_weight_decay``.
    ``hyper_weight_decay``: weight decay of the SGD hyper-sensitivity runs, FP and binarized (BiBench's
    Adam schedules have none). ``gap_floor``, ``std_floor``: floors of the robustness gaps and
    hyper-parameter stds in the OM ratios (a zero gap would divide by zero; README). ``variant`` is
    TEST-ONLY: the broken variants of ``layers.Variant`` that the claims name as their teeth.
    """

    dataset: str = "digits"
    archs: tuple[str, ...] = ("digits_cnn", "digits_mlp")
    algorithms: tuple[str, ...] = ALGO_NAMES
    fp_epochs: Annotated[int, Range(1)] = 20
    bin_epochs: Annotated[int, Range(1)] = 15
    batch_size: Annotated[int, Range(1)] = 128
    setting: str = "adam_1e-3_cosine"
    fp_setting: str = "adam_1e-3_cosine"
    fp_arch_settings: tuple[str, ...] = ()
    weight_decay: Annotated[float, Range(0)] = 0.0
    fp_weight_decay: Annotated[float, Range(0)] = 0.0
    augment: bool = False
    eval_batch: Annotated[int, Range(1)] = 1000
    checkpoint_every: Annotated[int, Range(0)] = 0
    split_seed: Annotated[int, Range(0)] = 0
    corruptions: tuple[str, ...] = ("gaussian_noise", "salt_pepper", "blur", "contrast")
    severities: Annotated[int, Range(1, 5)] = 3
    gap_floor: Annotated[float, Range(0, open_lo=True)] = 0.005
    hyper_settings: tuple[str, ...] = ("adam_1e-3_cosine", "adam_1e-4_cosine", "sgd_1e-1_cosine", "sgd_1e-2_cosine")
    hyper_epochs: Annotated[int, Range(1)] = 4
    hyper_weight_decay: Annotated[float, Range(0)] = 0.0
    std_floor: Annotated[float, Range(0, open_lo=True)] = 0.002
    complexity_archs: tuple[str, ...] = ("resnet18_imagenet", "resnet18", "resnet20", "vgg_small", "digits_cnn",
                                         "digits_mlp")
    binarize_downsample: bool = False
    bench_m: Annotated[int, Range(1)] = 256
    bench_k: Annotated[int, Range(1)] = 4096
    bench_repeats: Annotated[int, Range(1)] = 3
    xnor_act_scale: str = "position"
    dorefa_scale: str = "channel"
    fda_clip: bool = True
    variant: Variant = "paper"


RN18 = "resnet18_imagenet"
CLAIMS = [
    # exact operator mechanics (spec §6 smoke), measured by every run
    Claim(id="act-grad-surrogates", kind="check", text="each algorithm's activation backward equals its surrogate: clip-STE "
          "1[|x|<=1] (BNN, XNOR, DoReFa, XNOR++), ApproxSign (2-2|x|)+ (Bi-Real, ReAct, ReCU), FDA Fourier (n=9)",
          metric="act_grad_err_max", op="<=", ref=1e-9),
    Claim(id="weight-grad-surrogates", kind="check", text="each algorithm's weight backward equals alpha x its surrogate "
          "(clip-STE; FDA Fourier)", metric="weight_grad_err_max", op="<=", ref=1e-9),
    Claim(id="recu-weight-ste", kind="check", text="ReCU weights pass the identity STE through sign", metric="recu_weight_ste_err",
          op="<=", ref=1e-12),
    Claim(id="fda-symmetric", kind="check", text="FDA surrogate gradient is symmetric", metric="fda_grad_asym", op="<=", ref=1e-12),
    Claim(id="fda-peaked", kind="check", text="FDA surrogate gradient peaks at 0 (g(0) > g(x) for 0.5<=|x|<=1)",
          metric="fda_peak_margin", op=">", ref=0.0),
    Claim(id="fda-approaches-sign", kind="check", text="integrating the FDA surrogate gives the Fourier sign, closer to sign(x) "
          "with 18 terms than with 9 (error ratio < 1)", metric="fda_sign_err_ratio", op="<", ref=1.0),
    Claim(id="weights-two-valued", kind="check", text="deployed weights take exactly two values +-alpha per output channel "
          "(all 8 algorithms)", metric="weight_two_level_violations", op="<=", ref=0.0),
    Claim(id="acts-two-valued", kind="check", text="binarized activations are exactly +-1, sign(0)=+1 (all 8 algorithms)",
          metric="act_level_violations", op="<=", ref=0.0),
    Claim(id="xnor-alpha", kind="check", text="XNOR alpha equals mean|W| per output channel", metric="xnor_alpha_err", op="<=",
          ref=1e-12),
    Claim(id="toy-compression", kind="check", text="r_c of the counted toy model equals the hand-computed value",
          metric="toy_rc_err", op="<=", ref=1e-12),
    Claim(id="toy-speedup", kind="check", text="r_s (BNN, XNOR) of the counted toy model equals the hand-computed values",
          metric="toy_rs_err", op="<=", ref=1e-12),
    Claim(id="resnet18-compression-low", kind="paper", teeth="fp_binary_count", text="C4: ResNet-18 (FP first conv + FC) parameter compression >= 10x",
          metric=f"rc/{RN18}", op=">=", ref=10.0, paper_note="spec §6: ~10-14x; paper Table values unverified"),
    Claim(id="resnet18-compression-high", kind="paper", teeth="binarize_first_last", text="C4: ResNet-18 parameter compression <= 14x", metric=f"rc/{RN18}",
          op="<=", ref=14.0),
    Claim(id="resnet18-speedup-low", kind="paper", teeth="fp_binary_count", text="C4: ResNet-18 BNN FLOPs speedup >= 10x", metric=f"rs/{RN18}/bnn",
          op=">=", ref=10.0, paper_note="spec §6: ~10-14x; paper Table values unverified"),
    Claim(id="resnet18-speedup-high", kind="paper", teeth="binarize_first_last", text="C4: ResNet-18 BNN FLOPs speedup <= 14x", metric=f"rs/{RN18}/bnn",
          op="<=", ref=14.0),
    # the extra ops are always added to r_s's denominator, so these two cannot fail: checks of the count
    Claim(id="xnor-extras-cost", kind="check", text="C4: XNOR's runtime activation scale lowers the speedup below BNN's",
          metric=f"rs/{RN18}/xnor", op="<", ref=f"rs/{RN18}/bnn"),
    Claim(id="xnorpp-extras-cost", kind="check", text="C4: XNOR++'s spatial scale map lowers the speedup below BNN's",
          metric=f"rs/{RN18}/xnorpp", op="<", ref=f"rs/{RN18}/bnn"),
    Claim(id="bitpack-exact", kind="check", text="bit-packed XNOR-popcount matmul equals the float +-1 matmul",
          metric="xnor_popcount_max_err", op="<=", ref=0.0),
    # trained accuracy (spec §6 small assertions)
    Claim(id="binary-below-fp", kind="paper", teeth="no_sign", text="every binarized model is less accurate than the FP model (main arch)",
          metric="acc_bi_max", op="<=", ref="acc/fp", scales=("small", "full")),
    # compared with chance (10%): a sanity check, not a result of the paper
    Claim(id="binary-above-half", kind="check", text="every binarized model reaches > 50% accuracy (chance 10%)",
          metric="acc_bi_min", op=">", ref=0.5, scales=("small", "full")),
    Claim(id="soft-group-beats-bnn", kind="paper", teeth="flipped_soft_grad", text="C5: mean accuracy of the soft-gradient, scaled group (Bi-Real, "
          "ReAct, ReCU, FDA) >= plain BNN", metric="acc_soft_group_mean", op=">=", ref="acc/bnn",
          scales=("small", "full")),
]

SMOKE = {"algorithms": ("bnn", "react"), "fp_epochs": 3, "bin_epochs": 2, "severities": 1,
         "hyper_settings": ("adam_1e-3_cosine", "sgd_1e-1_cosine"), "hyper_epochs": 1,
         "complexity_archs": (RN18, "digits_cnn"), "bench_m": 64, "bench_k": 512, "bench_repeats": 1}
SMALL = {"fp_epochs": 20, "bin_epochs": 15, "severities": 3, "hyper_epochs": 4}
# BiBench configs/acc_cifar10/: ResNet-18, ResNet-20, ResNet-34, Bi-Real-18, ReActNet (+ our VGG-small, README)
FULL_ARCHS = ("resnet18", "resnet20", "resnet34", "bireal18", "reactnet", "vgg_small")
FULL = {"dataset": "cifar-10", "archs": FULL_ARCHS, "fp_epochs": 200,
        "fp_setting": "sgd_1e-1_cosine", "fp_arch_settings": ("reactnet:adam_1e-3_cosine",),
        "fp_weight_decay": 1e-4, "bin_epochs": 400, "setting": "adam_1e-3_cosine",
        "batch_size": 128, "augment": True, "severities": 5, "checkpoint_every": 2000,
        "hyper_settings": tuple(f"{o}_{s}" for o in ("sgd_1e-1", "sgd_1e-2", "adam_1e-3", "adam_1e-4")
                                for s in ("cosine", "step")), "hyper_epochs": 200, "hyper_weight_decay": 1e-4,
        "complexity_archs": (RN18, *FULL_ARCHS), "bench_m": 1024, "bench_k": 4096}


@reproduction(
    track="compression",
    paper=Paper(title="BiBench: Benchmarking and Analyzing Network Binarization",
                authors="Haotong Qin, Mingyuan Zhang, Yifu Ding, Aoyu Li, Zhongang Cai, Ziwei Liu, Fisher Yu, "
                        "Xianglong Liu", year=2023, venue="ICML", url="https://arxiv.org/abs/2301.11233",
                code="https://github.com/htqin/BiBench"),
    config=BiBenchConfig,
    scales={"smoke": SMOKE, "small": SMALL, "full": FULL},
    claims=CLAIMS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=2, mem_gb=4, time_min=15),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=7 * 24 * 60)},
    tables=(Table(name="tracks", metric="{row}/{col}", rows=("acc", "om_task", "om_robust", "om_train"),
                  cols=("fp",) + ALGO_NAMES, title="BiBench tracks per algorithm (acc: main architecture's test "
                  "accuracy; om_*: the paper's overall metrics per track)", row_label="track"),),
    plots=(Plot(name="accuracy_per_algorithm", x="algo", ys=("acc_main", "acc_digits_mlp", "acc_resnet20",
                "acc_resnet34", "acc_bireal18", "acc_reactnet", "acc_vgg_small"),
                title=f"test accuracy per algorithm ({ALGO_LEGEND})", ylabel="test accuracy"),
           Plot(name="overall_metrics_per_algorithm", x="algo", ys=("om_task", "om_arch", "om_robust", "om_train"),
                title=f"BiBench overall metrics per algorithm ({ALGO_LEGEND})", ylabel="OM (FP = 1)"),
           Plot(name="speedup_per_algorithm", x="algo", ys=("rs", "om_comp"),
                title=f"ResNet-18 (ImageNet) FLOPs speedup r_s and OM_comp ({ALGO_LEGEND})", ylabel="x FP")),
)
def run(cfg: BiBenchConfig, ctx: RunContext) -> Outcome:
    _check_cfg(cfg)
    opts = BinaryOptions(cfg.xnor_act_scale, cfg.dorefa_scale, cfg.fda_clip, variant=cfg.variant)
    m: dict[str, float] = {}
    m.update(gradient_checks(opts))
    m.update(forward_checks(opts))
    m.update(fda_checks())
    divisor, param_divisor = (1.0, 1.0) if cfg.variant == "fp_binary_count" else (64.0, 32.0)
    m.update(complexity_checks(divisor, param_divisor))
    m.update(complexity_track(cfg, divisor, param_divisor))
    # a dry run checks the kernel on small matrices instead of timing the full-size benchmark
    m.update(hardware_track(replace(cfg, bench_m=min(cfg.bench_m, 64), bench_k=min(cfg.bench_k, 512),
                                    bench_repeats=1) if ctx.dry_run else cfg, ctx.seed))
    data = load(cfg.dataset, ctx, cfg.split_seed)
    bench = Bench(cfg, ctx, data, opts)
    ctx.log("bibench: %s (%s) train/test %d/%d, archs %s, algorithms %s", data.ref.name, data.ref.provenance,
            len(data.y_train), len(data.y_test), cfg.archs, cfg.algorithms)
    if ctx.dry_run:
        m.update(dry_run(bench, cfg))
        return Outcome(metrics=m, dataset=data.ref)
    m.update(accuracy_tracks(bench, cfg, ctx))
    return Outcome(metrics=m, dataset=data.ref)
