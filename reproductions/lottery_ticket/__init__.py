"""The Lottery Ticket Hypothesis (Frankle & Carbin, ICLR 2019): iterative magnitude pruning with
reset to the original init, against the random-reinit and random-mask controls (spec §2-§4).

Per-layer pruning utilities that other compression papers can reuse live in :mod:`.pruning`;
the IMP loop in :mod:`.method`; the datasets in :mod:`.data`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable

from torch import nn

from reproductions.lottery_ticket import pruning
from reproductions.lottery_ticket.data import DATASETS, Data, load
from reproductions.lottery_ticket.method import (IMPResult, IMPSettings, Trial, Variant, initialise,
                                                iterative_magnitude_pruning)
from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError, UnknownNameError
from suite.models import conv2, conv4, conv6, lenet_300_100
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources, curve_metrics
from suite.train import TrainConfig

# Paper Fig. 2 (approximate, spec §3): optimiser lr, training iterations, conv prune rate.
ARCH_DEFAULTS: dict[str, dict[str, float | int]] = {
    "lenet300": {"lr": 1.2e-3, "iterations": 50_000, "conv_rate": 0.0},
    "conv2": {"lr": 2e-4, "iterations": 20_000, "conv_rate": 0.10},
    "conv4": {"lr": 3e-4, "iterations": 25_000, "conv_rate": 0.10},
    "conv6": {"lr": 3e-4, "iterations": 30_000, "conv_rate": 0.15},
}
DENSITY_21 = (0.18, 0.24)  # "P_m ~ 21%" (round 7 at 20%/round)
DENSITY_MID = (0.20, 0.52)  # spec §6 A3: "tickets at 21-51%"
DENSITY_SPARSE = 0.06  # spec §6 A2: "at P_m <= 6%"


@dataclass
class LotteryConfig:
    """One IMP experiment. ``None`` hyper-parameters take the architecture's paper default (ARCH_DEFAULTS).

    ``control_rounds``: rounds that also train the random-reinit / random-mask controls (empty = all).
    ``variant`` is TEST-ONLY (teeth, see method.VARIANTS); keep ``paper``.
    """

    dataset: str = "digits"
    arch: str = "lenet300"
    rounds: Annotated[int, Range(0)] = 20
    iterations: Annotated[int | None, Range(1)] = None
    batch_size: Annotated[int, Range(1)] = 60
    lr: Annotated[float | None, Range(0, open_lo=True)] = None
    optimizer: str = "adam"
    eval_every: Annotated[int, Range(0)] = 100
    fc_rate: Annotated[float, Range(0, 1)] = 0.2
    conv_rate: Annotated[float | None, Range(0, 1)] = None
    output_rate: Annotated[float | None, Range(0, 1)] = None
    global_rate: Annotated[float | None, Range(0, 1)] = None
    rewind_step: Annotated[int, Range(0)] = 0
    init: str = "glorot_normal"
    control_rounds: tuple[Annotated[int, Range(1)], ...] = ()
    oneshot: bool = True
    val_size: Annotated[int, Range(1)] = 5000
    split_seed: Annotated[int, Range(0)] = 0
    checkpoint_every: Annotated[int, Range(0)] = 0
    log_every: Annotated[int, Range(0)] = 1000
    variant: Variant = "paper"


def build_fn(cfg: LotteryConfig, data: Data) -> Callable[[], nn.Module]:
    """Constructor of the network: LeNet-300-100 (MLP in-300-100-10) or Conv-2/4/6 (paper Fig. 2)."""
    shape = data.in_shape
    if cfg.arch == "lenet300":
        return lambda: lenet_300_100(in_dim=math.prod(shape), num_classes=10)
    if cfg.arch in ("conv2", "conv4", "conv6"):
        if len(shape) != 3:
            raise ConfigError(f"arch {cfg.arch} needs images (C, H, W), dataset {cfg.dataset} gives {shape}; "
                              f"use dataset=cifar10")
        fn = {"conv2": conv2, "conv4": conv4, "conv6": conv6}[cfg.arch]
        return lambda: fn(num_classes=10, in_channels=shape[0], image_size=shape[1])
    raise UnknownNameError(f"unknown arch {cfg.arch!r}; use one of {sorted(ARCH_DEFAULTS)}")


def settings(cfg: LotteryConfig) -> IMPSettings:
    if cfg.arch not in ARCH_DEFAULTS:
        raise UnknownNameError(f"unknown arch {cfg.arch!r}; use one of {sorted(ARCH_DEFAULTS)}")
    d = ARCH_DEFAULTS[cfg.arch]
    train = TrainConfig(steps=int(cfg.iterations if cfg.iterations is not None else d["iterations"]),
                        batch_size=cfg.batch_size, lr=float(cfg.lr if cfg.lr is not None else d["lr"]),
                        optimizer=cfg.optimizer, eval_every=cfg.eval_every, log_every=cfg.log_every,
                        checkpoint_every=cfg.checkpoint_every)
    return IMPSettings(rounds=cfg.rounds, train=train, fc_rate=cfg.fc_rate,
                       conv_rate=cfg.conv_rate if cfg.conv_rate is not None else float(d["conv_rate"]) or None,
                       output_rate=cfg.output_rate, global_rate=cfg.global_rate, rewind_step=cfg.rewind_step,
                       init=cfg.init, control_rounds=tuple(cfg.control_rounds), oneshot=cfg.oneshot,
                       variant=cfg.variant)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarise(res: IMPResult) -> dict[str, float]:
    """The run's metrics: curves vs P_m, the §6 assertion quantities, and the mechanics checks."""
    by = {k: [t for t in res.trials if t.kind == k] for k in ("dense", "ticket", "reinit", "random", "oneshot")}
    dense = by["dense"][0]
    tickets = [dense] + by["ticket"]  # the unpruned net is the ticket at P_m = 100%
    m: dict[str, float] = {"dense_test_acc": dense.test_acc, "dense_early_stop_iter": float(dense.early_stop_iter),
                           "final_density": tickets[-1].density}
    pct = lambda t: f"{100 * t.density:.3g}"  # noqa: E731
    for kind, ts in (("ticket", tickets), ("reinit", by["reinit"]), ("random", by["random"])):
        m.update(curve_metrics(f"{kind}_test_acc", "density_pct", [pct(t) for t in ts], [t.test_acc for t in ts]))
        m.update(curve_metrics(f"{kind}_early_stop_iter", "density_pct", [pct(t) for t in ts],
                               [t.early_stop_iter for t in ts]))

    def pick(ts: list[Trial], lo: float, hi: float) -> list[Trial]:
        return [t for t in ts if lo <= t.density <= hi]

    near21 = pick(by["ticket"], *DENSITY_21)
    t21 = min(near21, key=lambda t: abs(t.density - 0.21)) if near21 else None
    m["ticket_density_21"] = t21.density if t21 else float("nan")
    m["ticket_test_acc_21"] = t21.test_acc if t21 else float("nan")
    m["ticket_minus_dense_acc_21"] = m["ticket_test_acc_21"] - dense.test_acc
    # A2 / C3: mean over the levels at P_m <= 6% that trained the controls
    sparse_rounds = {t.round for t in by["reinit"] + by["random"] if t.density <= DENSITY_SPARSE + 1e-9}
    for ctrl in ("reinit", "random"):
        pairs = [(res.get("ticket", r), res.get(ctrl, r)) for r in sorted(sparse_rounds)]
        diffs = [a.test_acc - b.test_acc for a, b in pairs if a is not None and b is not None]
        m[f"ticket_minus_{ctrl}_acc_sparse"] = _mean(diffs)
        m[f"{ctrl}_test_acc_sparse"] = _mean([b.test_acc for _, b in pairs if b is not None])
        # C3 "learns slower": ratio of the control's early-stop iteration to the ticket's, same levels
        its = [(a.early_stop_iter, b.early_stop_iter) for a, b in pairs if a is not None and b is not None]
        m[f"{ctrl}_over_ticket_early_stop_sparse"] = (_mean([float(b) for _, b in its]) /
                                                      _mean([float(a) for a, _ in its])) if its else float("nan")
    m["ticket_test_acc_sparse"] = _mean([t.test_acc for t in by["ticket"] if t.round in sparse_rounds])
    # A3 / C2: early-stop iteration of tickets at 21-51% vs the dense net, and the speed-up ratio
    mid = pick(by["ticket"], *DENSITY_MID)
    m["ticket_early_stop_iter_mid"] = _mean([float(t.early_stop_iter) for t in mid])
    m["ticket_test_acc_mid"] = _mean([t.test_acc for t in mid])
    m["early_stop_speedup_mid"] = dense.early_stop_iter / m["ticket_early_stop_iter_mid"] if mid else float("nan")
    mid_re = pick(by["reinit"], *DENSITY_MID)
    m["reinit_early_stop_iter_mid"] = _mean([float(t.early_stop_iter) for t in mid_re])
    # C4: iterative vs one-shot pruning at the final sparsity
    if by["oneshot"]:
        last = by["ticket"][-1]
        m["oneshot_test_acc"] = by["oneshot"][0].test_acc
        m["iterative_minus_oneshot_acc"] = last.test_acc - by["oneshot"][0].test_acc
    else:
        m["oneshot_test_acc"] = m["iterative_minus_oneshot_acc"] = float("nan")
    m.update({k: float(v) for k, v in res.checks.items()})
    return m


CLAIMS = [
    # mechanics (spec §6 smoke); measured inside every run
    Claim(id="mask-exact", kind="check", text="pruned weights are exactly 0 after training (gradient masking + re-masking)",
          metric="masked_weight_max_abs", op="<=", ref=0.0),
    Claim(id="reset-to-init", kind="check", text="each ticket's surviving weights equal θ0 bitwise (reset, §2 step 4)",
          metric="reset_max_abs_diff", op="<=", ref=0.0),
    Claim(id="layerwise-counts", kind="check", text="each round prunes p of the remaining weights per layer, output at p/2",
          metric="prune_count_max_dev", op="<=", ref=0.0),
    Claim(id="reinit-same-mask", kind="check", text="the random-reinit control uses the identical mask",
          metric="reinit_mask_mismatch", op="<=", ref=0.0),
    Claim(id="reinit-fresh-init", kind="check", text="the random-reinit control starts from a different init than θ0",
          metric="reinit_equal_init_frac", op="<=", ref=0.001),
    Claim(id="random-mask-counts", kind="check", text="the random-mask control has the ticket's per-layer counts",
          metric="random_mask_count_dev", op="<=", ref=0.0),
    # the paper's claims (spec §2 C1-C3, §6 A1-A3); thresholds calibrated at small scale (README)
    Claim(id="ticket-21-matches-dense", kind="paper", teeth="prune_largest", text="A1/C1: the winning ticket at P_m ~ 21% reaches the dense "
          "test accuracy within 1 point", metric="ticket_test_acc_21", op=">=", ref="dense_test_acc", tol=0.01,
          scales=("small", "full")),
    Claim(id="ticket-beats-reinit-sparse", kind="paper", teeth="reset_fresh", text="A2/C3: at P_m <= 6% the winning ticket beats the same mask "
          "randomly re-initialised by >= 1 point (calibrated on seeds 100-102, README)", metric="ticket_minus_reinit_acc_sparse",
          op=">=", ref=0.01,
          scales=("small", "full")),
    Claim(id="ticket-beats-random-mask-sparse", kind="paper", teeth="prune_largest", text="C3: at P_m <= 6% the winning ticket beats a random mask "
          "of the same per-layer sparsity by >= 2 points (calibrated on seeds 100-102, README)",
          metric="ticket_minus_random_acc_sparse", op=">=", ref=0.02, scales=("small", "full")),
    Claim(id="reinit-learns-slower-sparse", kind="paper", teeth="reset_fresh", text="C3: at P_m <= 6% the same mask randomly re-initialised "
          "early-stops >= 1.6x later than the winning ticket (calibrated on seeds 100-102, README)",
          metric="reinit_over_ticket_early_stop_sparse", op=">=", ref=1.6, scales=("small", "full")),
    Claim(id="ticket-learns-faster", kind="paper", teeth="prune_largest", text="A3/C2: tickets at P_m 21-51% early-stop no later than the dense net",
          metric="ticket_early_stop_iter_mid", op="<=", ref="dense_early_stop_iter", scales=("small", "full")),
    Claim(id="iterative-beats-oneshot", kind="paper", no_teeth="a full-scale claim (spec §6 small does not test C4) and teeth run at small scale only; its broken variant would be prune_largest (IMP removes the largest weights, one-shot is untouched), not run at full", text="C4: iterative pruning beats one-shot pruning at the final sparsity",
          metric="iterative_minus_oneshot_acc", op=">=", ref=0.0, scales=("full",)),
]

SMOKE = {"dataset": "digits", "rounds": 3, "iterations": 300, "eval_every": 25, "control_rounds": (3,),
         "val_size": 287}
SMALL = {"dataset": "mnist-subset", "rounds": 14, "iterations": 2000, "eval_every": 50, "val_size": 1000,
         "control_rounds": (7, 13, 14)}
FULL = {"dataset": "mnist", "arch": "lenet300", "rounds": 20, "eval_every": 100, "val_size": 5000,
        "checkpoint_every": 5000}


@reproduction(
    track="compression",
    paper=Paper(title="The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
                authors="Jonathan Frankle, Michael Carbin", year=2019, venue="ICLR",
                url="https://arxiv.org/abs/1803.03635",
                code="https://github.com/google-research/lottery-ticket-hypothesis"),
    config=LotteryConfig,
    scales={"smoke": SMOKE, "small": SMALL, "full": FULL},
    claims=CLAIMS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=32, time_min=24 * 60)},
    plots=(Plot(name="test_acc_vs_density", x="density_pct", ys=("ticket_test_acc", "reinit_test_acc",
                "random_test_acc"), title="test accuracy at early stop vs % weights remaining", logx=True,
                ylabel="test accuracy"),
           Plot(name="early_stop_vs_density", x="density_pct", ys=("ticket_early_stop_iter",
                "reinit_early_stop_iter", "random_early_stop_iter"), title="early-stop iteration vs % weights "
                "remaining", logx=True, ylabel="iteration")),
)
def run(cfg: LotteryConfig, ctx: RunContext) -> Outcome:
    if cfg.dataset not in DATASETS:
        raise UnknownNameError(f"unknown dataset {cfg.dataset!r}; use one of {DATASETS}")
    s = settings(cfg)
    data = load(cfg.dataset, ctx, cfg.val_size, cfg.split_seed).to(ctx.device)
    build = build_fn(cfg, data)
    ctx.log("lottery_ticket: %s on %s (%s), %d rounds x %d iterations, train/val/test %d/%d/%d", cfg.arch,
            data.ref.name, data.ref.provenance, s.rounds, s.train.steps, len(data.y_train), len(data.y_val),
            len(data.y_test))
    if ctx.dry_run:  # build the pipeline: model, init, masks, one pruning step, no training
        model = initialise(build(), ctx.generator(10), s.init).to(ctx.device)
        params = pruning.prunable_params(model)
        rates = pruning.layer_rates(model, s.fc_rate, s.conv_rate, s.output_rate)
        masks = pruning.magnitude_prune(params, pruning.ones_masks(params), rates)
        with pruning.MaskedTraining(model, masks):
            model(data.x_train[:2])
        return Outcome(metrics={"dry_run_density": pruning.density(masks)}, dataset=data.ref)
    res = iterative_magnitude_pruning(build, data, s, ctx)
    return Outcome(metrics=summarise(res), dataset=data.ref,
                   notes={"trials": [t.__dict__ for t in res.trials]})
