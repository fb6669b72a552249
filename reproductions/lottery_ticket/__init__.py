"""The Lottery Ticket Hypothesis (Frankle & Carbin, ICLR 2019): iterative magnitude pruning with
reset to the original init, against the random-reinit and random-mask controls (spec §2-§4).

Per-layer pruning utilities that other compression papers can reuse live in :mod:`.pruning`;
the IMP loop in :mod:`.method`; the datasets in :mod:`.data`; the deep CIFAR-10 networks of §4
(VGG-19, Resnet-18) in :mod:`.models`. With ``arch=vgg19`` or ``arch=resnet18`` one run trains IMP
under the three training regimes of §4 / Figs. 7-8 (lr 0.1 with and without warmup, lr 0.01) from
the same θ0 and checks C5 (deep nets need lr warmup to find winning tickets at a high lr).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, get_args

from torch import nn

from reproductions.lottery_ticket import pruning
from reproductions.lottery_ticket.data import DATASETS, Data, load
from reproductions.lottery_ticket.method import (IMPResult, IMPSettings, Trial, Variant, initialise,
                                                iterative_magnitude_pruning, prune_step)
from reproductions.lottery_ticket.models import DEEP_ARCHS, resnet18_paper, unpruned, vgg19
from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError, UnknownNameError
from suite.models import conv2, conv4, conv6, lenet_300_100
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources, curve_metrics
from suite.train import TrainConfig

# The small networks (paper Fig. 2, approximate, spec §3): Adam, constant lr, batch 60, layer-wise
# pruning, early stopping every 100 iterations, one training regime, both controls at every level.
_SHALLOW: dict[str, Any] = {"batch_size": 60, "optimizer": "adam", "rounds": 20, "eval_every": 100,
                               "control_rounds": (), "weight_decay": 0.0, "milestones": (), "warmup": 0,
                               "warmup_lr": None, "low_lr": None, "global_rate": None, "augment": False,
                               "regimes": ("no_warmup",), "controls": ("reinit", "random"), "c5_round": None}
# The deep CIFAR-10 networks of §4 (Fig. 2 table, Figs. 7-8): SGD momentum 0.9, weight decay 1e-4,
# lr 0.1 dropped 10x at 80/120 of 160 epochs (VGG-19: 112,480 iterations at batch 64 on 45k images) or
# at 20k/25k of 30k iterations (Resnet-18, batch 128); global pruning of 20% of the conv weights per
# round, output layer (and ResNet shortcuts) unpruned; flips + 4-pixel translations. Warmup regime: linear
# from 0 over k iterations to the lr of §4 (VGG-19: k=10k at 0.1; Resnet-18: k=20k at 0.03, the rate at
# which §4 found tickets with warmup). c5_round: the sparsest level §4 reports tickets at with warmup
# (VGG-19 P_m = 1.5% = round 19; Resnet-18 P_m = 11.8% = round 10; P_m counts the unpruned layers).
_DEEP: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "low_lr": 0.01, "global_rate": 0.2,
                            "conv_rate": 0.0, "augment": True, "regimes": ("warmup", "no_warmup", "low_lr"),
                            "controls": ("reinit",)}
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet300": {**_SHALLOW, "lr": 1.2e-3, "iterations": 50_000, "conv_rate": 0.0},
    "conv2": {**_SHALLOW, "lr": 2e-4, "iterations": 20_000, "conv_rate": 0.10},
    "conv4": {**_SHALLOW, "lr": 3e-4, "iterations": 25_000, "conv_rate": 0.10},
    "conv6": {**_SHALLOW, "lr": 3e-4, "iterations": 30_000, "conv_rate": 0.15},
    "vgg19": {**_DEEP, "iterations": 112_480, "batch_size": 64, "milestones": (0.5, 0.75), "warmup": 10_000,
              "warmup_lr": 0.1, "rounds": 19, "control_rounds": (4, 8, 12, 15, 19), "eval_every": 1000,
              "c5_round": 19},
    "resnet18": {**_DEEP, "iterations": 30_000, "batch_size": 128, "milestones": (2 / 3, 5 / 6), "warmup": 20_000,
                 "warmup_lr": 0.03, "rounds": 16, "control_rounds": (), "eval_every": 500, "c5_round": 10},
}
Regime = Literal["no_warmup", "warmup", "low_lr"]
REGIMES = get_args(Regime)
Control = Literal["reinit", "random"]
DENSITY_21 = (0.18, 0.24)  # "P_m ~ 21%" (round 7 at 20%/round)
DENSITY_MID = (0.20, 0.52)  # spec §6 A3: "tickets at 21-51%"
DENSITY_SPARSE = 0.06  # spec §6 A2: "at P_m <= 6%"


@dataclass
class LotteryConfig:
    """One IMP experiment. ``None`` hyper-parameters take the architecture's paper default (ARCH_DEFAULTS).

    ``control_rounds``: rounds that also train the controls ``controls`` (empty = all).
    ``regimes``: the training regimes of one run, all from the same θ0 (§4, Figs. 7-8): ``no_warmup``
    (``lr``), ``warmup`` (``warmup_lr`` reached linearly over ``warmup`` iterations), ``low_lr``
    (``low_lr``); the first one's metrics are the run's unprefixed ones. ``milestones``: fractions of
    the iterations where the lr drops 10x. ``c5_round``: the level the C5 claims compare the regimes at.
    ``variant`` is TEST-ONLY (teeth, see method.VARIANTS); keep ``paper``.
    """

    dataset: str = "digits"
    arch: str = "lenet300"
    rounds: Annotated[int | None, Range(0)] = None
    iterations: Annotated[int | None, Range(1)] = None
    batch_size: Annotated[int | None, Range(1)] = None
    lr: Annotated[float | None, Range(0, open_lo=True)] = None
    optimizer: str | None = None
    momentum: Annotated[float, Range(0, 1)] = 0.9
    weight_decay: Annotated[float | None, Range(0)] = None
    milestones: tuple[Annotated[float, Range(0, 1)], ...] | None = None
    regimes: tuple[Regime, ...] | None = None
    warmup: Annotated[int | None, Range(0)] = None
    warmup_lr: Annotated[float | None, Range(0, open_lo=True)] = None
    low_lr: Annotated[float | None, Range(0, open_lo=True)] = None
    augment: bool | None = None
    eval_every: Annotated[int | None, Range(0)] = None
    fc_rate: Annotated[float, Range(0, 1)] = 0.2
    conv_rate: Annotated[float | None, Range(0, 1)] = None
    output_rate: Annotated[float | None, Range(0, 1)] = None
    global_rate: Annotated[float | None, Range(0, 1)] = None
    rewind_step: Annotated[int, Range(0)] = 0
    init: str = "glorot_normal"
    control_rounds: tuple[Annotated[int, Range(1)], ...] | None = None
    controls: tuple[Control, ...] | None = None
    c5_round: Annotated[int | None, Range(1)] = None
    oneshot: bool = True
    val_size: Annotated[int, Range(1)] = 5000
    split_seed: Annotated[int, Range(0)] = 0
    checkpoint_every: Annotated[int, Range(0)] = 0
    log_every: Annotated[int, Range(0)] = 1000
    variant: Variant = "paper"

    def validate(self) -> None:
        regime_settings(self)  # unknown arch, missing warmup, c5_round past the last round: one line


def build_fn(cfg: LotteryConfig, data: Data) -> Callable[[], nn.Module]:
    """Constructor of the network: LeNet-300-100 (MLP in-300-100-10), Conv-2/4/6 (paper Fig. 2) or
    VGG-19 / Resnet-18 (§4, :mod:`.models`)."""
    shape = data.in_shape
    if cfg.arch == "lenet300":
        return lambda: lenet_300_100(in_dim=math.prod(shape), num_classes=10)
    if cfg.arch in DEEP_ARCHS:
        if len(shape) != 3 or shape[1] != 32 or shape[2] != 32:
            raise ConfigError(f"arch {cfg.arch} needs 32x32 images (C, 32, 32), dataset {cfg.dataset} gives "
                              f"{shape}; use dataset=cifar10")
        fn = {"vgg19": vgg19, "resnet18": resnet18_paper}[cfg.arch]
        return lambda: fn(num_classes=10, in_channels=shape[0])
    if cfg.arch in ("conv2", "conv4", "conv6"):
        if len(shape) != 3:
            raise ConfigError(f"arch {cfg.arch} needs images (C, H, W), dataset {cfg.dataset} gives {shape}; "
                              f"use dataset=cifar10")
        fn = {"conv2": conv2, "conv4": conv4, "conv6": conv6}[cfg.arch]
        return lambda: fn(num_classes=10, in_channels=shape[0], image_size=shape[1])
    raise UnknownNameError(f"unknown arch {cfg.arch!r}; use one of {sorted(ARCH_DEFAULTS)}")


def _pick(cfg: LotteryConfig, key: str) -> Any:
    """``cfg.<key>``, or the architecture's paper default where it is None (ARCH_DEFAULTS)."""
    val = getattr(cfg, key)
    return ARCH_DEFAULTS[cfg.arch][key] if val is None else val


def regime_settings(cfg: LotteryConfig) -> dict[str, IMPSettings]:
    """One IMPSettings per training regime of the run (§4 / Figs. 7-8), in ``regimes`` order."""
    if cfg.arch not in ARCH_DEFAULTS:
        raise UnknownNameError(f"unknown arch {cfg.arch!r}; use one of {sorted(ARCH_DEFAULTS)}")
    if cfg.arch in DEEP_ARCHS and cfg.dataset != "cifar10":
        raise ConfigError(f"arch {cfg.arch} is a CIFAR-10 network (§4); use dataset=cifar10 (got {cfg.dataset})")
    d = ARCH_DEFAULTS[cfg.arch]
    regimes = tuple(_pick(cfg, "regimes"))
    if not regimes or len(set(regimes)) != len(regimes):
        raise ConfigError(f"regimes must name distinct regimes of {REGIMES}, got {regimes}")
    rounds = int(_pick(cfg, "rounds"))
    c5 = _pick(cfg, "c5_round")
    if c5 is not None and int(c5) > rounds:
        raise ConfigError(f"c5_round {c5} is past the last round {rounds}; set c5_round <= rounds")
    ctrl_rounds = tuple(_pick(cfg, "control_rounds"))
    if c5 is not None and ctrl_rounds and c5 not in ctrl_rounds:
        raise ConfigError(f"c5_round {c5} trains no controls (control_rounds={ctrl_rounds}); add it to control_rounds")
    warmup = int(_pick(cfg, "warmup"))
    base_lr = float(_pick(cfg, "lr"))
    lrs = {"no_warmup": base_lr, "warmup": _pick(cfg, "warmup_lr"), "low_lr": _pick(cfg, "low_lr")}
    for r in regimes:
        if lrs[r] is None:
            raise ConfigError(f"regime {r} needs {r if r == 'low_lr' else 'warmup_lr'}=<lr> "
                              f"(arch {cfg.arch} has none)")
    if "warmup" in regimes and warmup <= 0:
        raise ConfigError(f"regime warmup needs warmup=<iterations> > 0 (arch {cfg.arch} has none)")
    milestones = tuple(_pick(cfg, "milestones"))
    controls = tuple(_pick(cfg, "controls"))
    keep_dense = unpruned(cfg.arch)
    out = {}
    for r in regimes:
        # §4: SGD + momentum, lr dropped 10x at the milestones; warmup: linear from 0 over k iterations
        train = TrainConfig(steps=int(cfg.iterations if cfg.iterations is not None else d["iterations"]),
                            batch_size=int(_pick(cfg, "batch_size")), lr=float(lrs[r]),
                            optimizer=str(_pick(cfg, "optimizer")), momentum=cfg.momentum,
                            weight_decay=float(_pick(cfg, "weight_decay")),
                            schedule="step" if milestones else "constant", milestones=milestones, gamma=0.1,
                            warmup_steps=warmup if r == "warmup" else 0, eval_every=int(_pick(cfg, "eval_every")),
                            log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every)
        conv_rate = cfg.conv_rate if cfg.conv_rate is not None else float(d["conv_rate"]) or None
        out[r] = IMPSettings(rounds=rounds, train=train, fc_rate=cfg.fc_rate, conv_rate=conv_rate,
                             output_rate=cfg.output_rate, global_rate=_pick(cfg, "global_rate"),
                             rewind_step=cfg.rewind_step, init=cfg.init,
                             control_rounds=ctrl_rounds,
                             controls=controls, oneshot=cfg.oneshot, variant=cfg.variant,
                             keep_dense=keep_dense, augment=bool(_pick(cfg, "augment")),
                             tag=f"{r}-" if len(regimes) > 1 else "")
    return out


def settings(cfg: LotteryConfig) -> IMPSettings:
    """The settings of the run's first (primary) regime."""
    return next(iter(regime_settings(cfg).values()))


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


def summarise_regimes(results: dict[str, IMPResult], c5_round: int | None) -> dict[str, float]:
    """§4 / Figs. 7-8 metrics of a run with several training regimes: the test accuracy at the END of
    training (what §4 reports for VGG-19 and Resnet-18) of the dense net, the tickets and the reinit
    controls of each regime vs P_m, and the C5 comparisons at level ``c5_round`` (NaN where missing)."""
    nan = float("nan")
    m: dict[str, float] = {}
    pct = lambda t: f"{100 * t.density:.3g}"  # noqa: E731
    for regime, res in results.items():
        dense = res.get("dense", 0)
        m[f"{regime}_dense_final_acc"] = dense.final_test_acc if dense else nan
        for kind in ("ticket", "reinit"):
            ts = ([dense] if kind == "ticket" and dense else []) + [t for t in res.trials if t.kind == kind]
            m.update(curve_metrics(f"{regime}_{kind}_final_acc", "density_pct", [pct(t) for t in ts],
                                   [t.final_test_acc for t in ts]))
        t = res.get("ticket", c5_round) if c5_round else None
        r = res.get("reinit", c5_round) if c5_round else None
        m[f"c5_{regime}_ticket_acc"] = t.final_test_acc if t else nan
        m[f"c5_{regime}_reinit_acc"] = r.final_test_acc if r else nan
        m[f"c5_{regime}_ticket_minus_reinit"] = t.final_test_acc - r.final_test_acc if t and r else nan
        if t:
            m["c5_density"] = t.density
    m.setdefault("c5_density", nan)
    dense_best = [m[f"{r}_dense_final_acc"] for r in ("warmup", "no_warmup") if r in results]
    # the better unpruned network of the two lr-0.1 regimes (§4: warmup improves VGG-19's by ~1 point)
    m["c5_dense_best_acc"] = max(dense_best) if len(dense_best) == 2 else nan
    m["c5_warmup_minus_no_warmup_ticket"] = (m["c5_warmup_ticket_acc"] - m["c5_no_warmup_ticket_acc"]
                                             if "warmup" in results and "no_warmup" in results else nan)
    return m


# C5 (§4): one a-priori rule for the full-only claims, not calibrated (no full run on this machine):
# "beats" = strictly higher final test accuracy at the level; "matches"/"no better" = within 1 point,
# the tolerance A1 uses for "reaches the dense accuracy".
_C5_NO_TEETH = ("full scale only: the warmup effect needs VGG-19 / Resnet-18 trained 30k-112k iterations on "
                "CIFAR-10 under three lr regimes, and teeth run at small scale (LeNet on MNIST) where these "
                "metrics do not exist; its broken variant would be {v}, not run at full")
# The §4 networks are separate full jobs (suite `jobs`): each one's records decide its own C5 claims.
JOBS = {"vgg19": ("arch=vgg19", "dataset=cifar10"), "resnet18": ("arch=resnet18", "dataset=cifar10")}
_C5_LEVEL = {"vgg19": "VGG-19 at P_m 1.5%", "resnet18": "Resnet-18 at P_m 11.8%"}
_C5_WARMUP_LR = {"vgg19": "lr 0.1", "resnet18": "lr 0.03"}


def _c5_claims(job: str) -> list[Claim]:
    """The C5 claims of one §4 network, read from that job's records (``c5-<job>-...``)."""
    level, lr = _C5_LEVEL[job], _C5_WARMUP_LR[job]
    return [
        Claim(id=f"c5-{job}-warmup-ticket-matches-dense", kind="paper", job=job, no_teeth=_C5_NO_TEETH.format(
                  v="reset_fresh (the warmup ticket loses θ0 and falls to reinit accuracy)"),
              text=f"C5 (§4): with lr warmup, IMP finds winning tickets at the sparsest level §4 reports ({level}): "
                   "final test accuracy within 1 point of the better unpruned network (with or without warmup)",
              metric="c5_warmup_ticket_acc", op=">=", ref="c5_dense_best_acc", tol=0.01, scales=("full",)),
        Claim(id=f"c5-{job}-warmup-ticket-beats-reinit", kind="paper", job=job, no_teeth=_C5_NO_TEETH.format(
                  v="reset_fresh (ticket and reinit then start from equally random inits)"),
              text=f"C5 (§4, Figs. 7-8): with warmup, the winning ticket beats the same mask randomly re-initialised "
                   f"({level})", metric="c5_warmup_ticket_minus_reinit", op=">", ref=0.0, scales=("full",)),
        Claim(id=f"c5-{job}-no-warmup-ticket-no-better-than-reinit", kind="paper", job=job,
              no_teeth=_C5_NO_TEETH.format(v="one that lets the no-warmup ticket train with warmup"),
              text=f"C5 (§4): at lr 0.1 without warmup IMP finds no winning tickets: the ticket is no better than "
                   f"the random reinit, within 1 point ({level})", metric="c5_no_warmup_ticket_minus_reinit",
              op="<=", ref=0.01, scales=("full",)),
        Claim(id=f"c5-{job}-warmup-ticket-beats-no-warmup-ticket", kind="paper", job=job,
              no_teeth=_C5_NO_TEETH.format(v="warmup=0 inside the warmup regime (both regimes then train alike)"),
              text=f"C5 (§4): warmup is what finds the ticket: the warmup ticket ({lr}) beats the lr-0.1 ticket "
                   f"without warmup ({level})", metric="c5_warmup_minus_no_warmup_ticket", op=">", ref=0.0,
              scales=("full",)),
        Claim(id=f"c5-{job}-low-lr-ticket-beats-reinit", kind="paper", job=job,
              no_teeth=_C5_NO_TEETH.format(v="reset_fresh"),
              text=f"§4 (Figs. 7-8): at the lower lr 0.01 without warmup the ticket still beats the random reinit "
                   f"({level})", metric="c5_low_lr_ticket_minus_reinit", op=">", ref=0.0, scales=("full",)),
    ]


C5_CLAIMS = [c for job in JOBS for c in _c5_claims(job)]

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
    *C5_CLAIMS,
]

SMOKE = {"dataset": "digits", "rounds": 3, "iterations": 300, "eval_every": 25, "control_rounds": (3,),
         "val_size": 287}
SMALL = {"dataset": "mnist-subset", "rounds": 14, "iterations": 2000, "eval_every": 50, "val_size": 1000,
         "control_rounds": (7, 13, 14)}
# rounds / eval_every / batch size / optimiser come from ARCH_DEFAULTS (LeNet: 20 rounds, eval every 100,
# batch 60, Adam, as before), so `--set arch=vgg19 --set dataset=cifar10` gets §4's values
FULL = {"dataset": "mnist", "arch": "lenet300", "val_size": 5000, "checkpoint_every": 5000}


@reproduction(
    track="compression",
    paper=Paper(title="The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
                authors="Jonathan Frankle, Michael Carbin", year=2019, venue="ICLR",
                url="https://arxiv.org/abs/1803.03635",
                code="https://github.com/google-research/lottery-ticket-hypothesis"),
    config=LotteryConfig,
    scales={"smoke": SMOKE, "small": SMALL, "full": FULL},
    claims=CLAIMS,
    jobs=JOBS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=32, time_min=24 * 60)},
    plots=(Plot(name="test_acc_vs_density", x="density_pct", ys=("ticket_test_acc", "reinit_test_acc",
                "random_test_acc"), title="test accuracy at early stop vs % weights remaining", logx=True,
                ylabel="test accuracy"),
           Plot(name="early_stop_vs_density", x="density_pct", ys=("ticket_early_stop_iter",
                "reinit_early_stop_iter", "random_early_stop_iter"), title="early-stop iteration vs % weights "
                "remaining", logx=True, ylabel="iteration"),
           Plot(name="c5_final_acc_vs_density", x="density_pct",
                ys=tuple(f"{r}_{k}_final_acc" for r in ("warmup", "no_warmup", "low_lr") for k in ("ticket", "reinit")),
                title="VGG-19 / Resnet-18 (§4, Figs. 7-8): final test accuracy vs % weights remaining", logx=True,
                ylabel="test accuracy")),
)
def run(cfg: LotteryConfig, ctx: RunContext) -> Outcome:
    if cfg.dataset not in DATASETS:
        raise UnknownNameError(f"unknown dataset {cfg.dataset!r}; use one of {DATASETS}")
    regimes = regime_settings(cfg)
    s = next(iter(regimes.values()))
    data = load(cfg.dataset, ctx, cfg.val_size, cfg.split_seed).to(ctx.device)
    build = build_fn(cfg, data)
    ctx.log("lottery_ticket: %s on %s (%s), %d rounds x %d iterations, regimes %s, train/val/test %d/%d/%d", cfg.arch,
            data.ref.name, data.ref.provenance, s.rounds, s.train.steps, ",".join(regimes), len(data.y_train),
            len(data.y_val), len(data.y_test))
    if ctx.dry_run:  # build the pipeline: model, init, masks, one pruning step, no training
        model = initialise(build(), ctx.generator(10), s.init).to(ctx.device)
        params = pruning.prunable_params(model)
        masks = prune_step(model, model, pruning.ones_masks(params), s)
        with pruning.MaskedTraining(model, masks):
            model.eval()
            model(data.x_train[:2])
        return Outcome(metrics={"dry_run_density": pruning.density(masks)}, dataset=data.ref)
    results = {r: iterative_magnitude_pruning(build, data, rs, ctx) for r, rs in regimes.items()}
    primary = results[next(iter(results))]
    metrics = summarise(primary)
    for res in results.values():  # mechanics checks: the worst over all regimes
        for k, v in res.checks.items():
            metrics[k] = max(metrics[k], float(v))
    if len(results) > 1:
        metrics.update(summarise_regimes(results, _pick(cfg, "c5_round")))
    notes = {"trials": [t.__dict__ for t in primary.trials]}
    if len(results) > 1:
        notes["trials_by_regime"] = {r: [t.__dict__ for t in res.trials] for r, res in results.items()}
    return Outcome(metrics=metrics, dataset=data.ref, notes=notes)
