"""Iterative magnitude pruning with reset to the original initialisation (Frankle & Carbin 2019, §2).

The algorithm box of §2 ("identifying winning tickets"), with its controls:

1. randomly initialise f(x; θ0) (Gaussian Glorot, Fig. 2), mask m = 1;
2. train f(x; θ0 ⊙ m) for T iterations (pruned weights stay exactly 0), early stopping on val loss;
3. prune p_l of the *remaining* weights of each layer l by |θ_T| (output layer at p/2), giving m';
4. reset the survivors to θ0: the winning ticket f(x; θ0 ⊙ m'); repeat from 2.

At every level the same mask is also trained from a fresh random init ("random reinit", §2 /
Fig. 3) and a random mask with the same per-layer counts is trained from θ0 ("random pruning");
after the last round, one-shot pruning of the dense trained net to the same per-layer counts (§2,
Fig. 4; under global pruning, to the same total count). The early-stopping iteration (minimum
validation loss) and the test accuracy there are the paper's metrics (§2 Fig. 3-4).
``rewind_step > 0`` resets to the dense run's weights at that iteration instead of θ0 (Frankle et
al. 2020; spec §7).

The deep networks of §4 (VGG-19, Resnet-18) use the same loop with global pruning over the conv
layers (``global_rate``; ``keep_dense`` names the layers left unpruned: the output layer, the ResNet's
downsampling shortcuts), BatchNorm (weights 1, biases 0 at init), SGD with a step schedule, optional
linear lr warmup (``train.warmup_steps``) and flip + 4-pixel-translation augmentation (``augment``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.lottery_ticket import pruning as P
from reproductions.lottery_ticket.data import Data
from suite.context import RunContext
from suite.data.augment import flip_crop
from suite.errors import ConfigError
from suite.train import TrainConfig, TrainState, fit

Variant = Literal["paper", "reset_fresh", "reset_trained", "no_mask", "prune_largest"]
VARIANTS = get_args(Variant)
"""``variant`` is TEST-ONLY (teeth): ``reset_fresh`` resets the ticket to a NEW random init each round
instead of θ0, ``reset_trained`` keeps the trained weights instead of resetting, ``no_mask`` trains
without gradient masking / re-masking (Adam revives pruned weights, spec §7), ``prune_largest`` swaps
the sign of IMP's criterion (each round removes the LARGEST trained magnitudes; one-shot is untouched)."""

State = dict[str, torch.Tensor]
NORM_KINDS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


@dataclass
class IMPSettings:
    """What the IMP loop needs (built from the reproduction config)."""

    rounds: int
    train: TrainConfig
    fc_rate: float = 0.2
    conv_rate: float | None = None
    output_rate: float | None = None  # None: fc_rate / 2 (§2)
    global_rate: float | None = None  # set: global pruning over all layers (§4, VGG/ResNet)
    rewind_step: int = 0
    init: str = "glorot_normal"
    control_rounds: tuple[int, ...] = ()  # rounds that also train the controls; () = every round
    controls: tuple[str, ...] = ("reinit", "random")
    oneshot: bool = True
    variant: str = "paper"
    eval_batch: int = 2000
    keep_dense: tuple[str, ...] = ()  # weights never pruned (§4: output layer, ResNet shortcuts)
    augment: bool = False  # §4 VGG/ResNet: random flips and translations of up to 4 pixels
    tag: str = ""  # prefix of the fit names (one per training regime of a run)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; use one of {VARIANTS}")
        if self.rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {self.rounds}")
        if self.init not in ("glorot_normal", "torch_default"):
            raise ConfigError(f"unknown init {self.init!r}; use glorot_normal or torch_default")
        bad = [c for c in self.controls if c not in ("reinit", "random")]
        if bad:
            raise ConfigError(f"unknown controls {bad}; use reinit and/or random")


@dataclass
class Trial:
    """One trained (sub)network: which one, its sparsity, and its early-stopping metrics."""

    kind: str  # dense | ticket | reinit | random | oneshot
    round: int
    density: float
    early_stop_iter: int
    test_acc: float  # test accuracy at the early-stopping iteration
    val_loss: float  # minimum validation loss
    final_test_acc: float
    masked_max_abs: float  # max |w| over pruned positions after training (0 = mask respected)


@dataclass
class IMPResult:
    trials: list[Trial]
    masks: list[P.Masks]  # mask of each round (round 0: all ones)
    checks: dict[str, float] = field(default_factory=dict)

    def get(self, kind: str, rnd: int) -> Trial | None:
        return next((t for t in self.trials if t.kind == kind and t.round == rnd), None)


# --------------------------------------------------------------------------- init and training

def initialise(model: nn.Module, generator: torch.Generator, init: str = "glorot_normal") -> nn.Module:
    """Paper Fig. 2: Gaussian Glorot weights and zero biases, drawn from ``generator``; the
    normalisation layers of the §4 networks start as the identity (BatchNorm weight 1, bias 0)
    (``torch_default``: each module's own ``reset_parameters`` under a seed drawn from it)."""
    with torch.no_grad():
        if init == "torch_default":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for mod in model.modules():
                    if hasattr(mod, "reset_parameters"):
                        mod.reset_parameters()
            return model
        norm_weights = {id(m.weight) for m in model.modules()
                        if isinstance(m, NORM_KINDS) and getattr(m, "weight", None) is not None}
        for p in model.parameters():
            if p.ndim > 1:
                nn.init.xavier_normal_(p, generator=generator)
            elif id(p) in norm_weights:
                p.fill_(1.0)
            else:
                p.zero_()
    return model


def clone_state(model: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def _evaluate(model: nn.Module, data: Data, batch: int) -> dict[str, float]:
    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])

    lv = run(data.x_val)
    lt = run(data.x_test)
    return {"val_loss": float(F.cross_entropy(lv, data.y_val)),
            "val_acc": float((lv.argmax(1) == data.y_val).float().mean()),
            "test_acc": float((lt.argmax(1) == data.y_test).float().mean())}


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _augmented_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """§4 (VGG/ResNet): each training batch randomly flipped and translated by up to 4 pixels
    (zero padding of the standardised image; drawn from torch's global RNG, which checkpoints carry)."""
    return F.cross_entropy(model(flip_crop(batch[0], 4)), batch[1])


def train_subnetwork(build: Callable[[], nn.Module], start: State, masks: P.Masks, data: Data, s: IMPSettings,
                     ctx: RunContext, kind: str, rnd: int,
                     on_step: Callable[[TrainState], None] | None = None) -> tuple[Trial, nn.Module]:
    """Train f(x; start ⊙ m) with the mask enforced (§2 step 2); early stopping on val loss."""
    model = build().to(ctx.device)
    P.reset_to(model, start, masks)
    masked = s.variant != "no_mask"
    with P.MaskedTraining(model, masks, mask_grads=masked, remask=masked) as mt:
        res = fit(model, _augmented_loss if s.augment else _loss, (data.x_train, data.y_train), s.train, ctx=ctx,
                  eval_fn=lambda m: _evaluate(m, data, s.eval_batch), on_step=P.chain(mt.on_step, on_step),
                  name=f"{s.tag}r{rnd:02d}-{kind}")
    best = min(res.evals, key=lambda e: (e["val_loss"], e["step"]))  # §2: iteration of minimum val loss
    trial = Trial(kind=kind, round=rnd, density=P.density(masks), early_stop_iter=int(best["step"]),
                  test_acc=best["test_acc"], val_loss=best["val_loss"], final_test_acc=res.evals[-1]["test_acc"],
                  masked_max_abs=P.masked_max_abs(P.prunable_params(model), masks))
    ctx.log("%sround %d %s: P_m=%.4f early-stop it %d test acc %.4f (final %.4f)", s.tag, rnd, kind, trial.density,
            trial.early_stop_iter, trial.test_acc, trial.final_test_acc)
    return trial, model


# --------------------------------------------------------------------------- the IMP loop

def prune_step(model: nn.Module, trained: nn.Module, masks: P.Masks, s: IMPSettings) -> P.Masks:
    """§2 step 3: prune by the magnitudes of the TRAINED weights (layer-wise, or global §4)."""
    weights = {k: v.detach() for k, v in P.prunable_params(trained).items()}
    if s.variant == "prune_largest":  # TEST-ONLY teeth: rank by 1/|w|, so the largest weights go
        weights = {k: 1.0 / (v.abs() + 1e-12) for k, v in weights.items()}
    if s.global_rate is not None:
        # §4: rank the remaining weights of all pruned layers together; keep_dense layers stay whole
        group = {k: w for k, w in weights.items() if k not in s.keep_dense}
        out = P.global_magnitude_prune(group, {k: masks[k] for k in group}, s.global_rate)
        return {k: out[k] if k in out else masks[k] for k in masks}
    return P.magnitude_prune(weights, masks, P.layer_rates(model, s.fc_rate, s.conv_rate, s.output_rate))


def iterative_magnitude_pruning(build: Callable[[], nn.Module], data: Data, s: IMPSettings,
                                ctx: RunContext) -> IMPResult:
    """Rounds 0..R of IMP with reset, plus the controls and one-shot pruning; see the module doc."""
    proto = initialise(build(), ctx.generator(10), s.init)
    theta0 = clone_state(proto)
    params0 = P.prunable_params(proto)
    sizes = {k: p.numel() for k, p in params0.items()}
    unknown = [k for k in s.keep_dense if k not in sizes]
    if unknown:
        raise ConfigError(f"keep_dense names weights the model lacks: {unknown[:3]}; use names of "
                          f"pruning.prunable_params, e.g. {list(sizes)[-1]!r}")
    rates = P.layer_rates(proto, s.fc_rate, s.conv_rate, s.output_rate)
    masks = {k: m.to(ctx.device) for k, m in P.ones_masks(params0).items()}
    checks = {"masked_weight_max_abs": 0.0, "reset_max_abs_diff": 0.0, "prune_count_max_dev": 0.0,
              "reinit_mask_mismatch": 0.0, "reinit_equal_init_frac": 0.0, "random_mask_count_dev": 0.0}

    rewind: State = theta0
    captured: dict[str, State] = {}

    def capture(st: TrainState) -> None:  # weights at iteration k of the dense run (spec §7 rewinding)
        if st.step == s.rewind_step:
            captured["w"] = clone_state(st.model)

    trials, all_masks = [], [masks]
    start = theta0
    dense_trained: nn.Module | None = None
    for rnd in range(s.rounds + 1):
        trial, trained = train_subnetwork(build, start, masks, data, s, ctx, "dense" if rnd == 0 else "ticket", rnd,
                                          capture if rnd == 0 and s.rewind_step > 0 else None)
        trials.append(trial)
        checks["masked_weight_max_abs"] = max(checks["masked_weight_max_abs"], trial.masked_max_abs)
        if rnd == 0:
            dense_trained = trained
            if s.rewind_step > 0:
                if "w" not in captured:
                    raise ConfigError(f"rewind_step {s.rewind_step} exceeds the {s.train.steps} training steps")
                rewind = captured["w"]
        if rnd > 0 and (not s.control_rounds or rnd in s.control_rounds):
            trials += _controls(build, masks, rewind, data, s, ctx, rnd, checks)
        if rnd == s.rounds:
            break
        # §2 step 3: prune p% of the remaining weights of each layer by trained magnitude
        before = P.counts(masks)
        masks = prune_step(proto, trained, masks, s)
        all_masks.append(masks)
        if s.global_rate is None:
            want = P.expected_counts(sizes, rates, rnd + 1)
            dev = max(abs(c - want[k]) for k, c in P.counts(masks).items())
        else:  # §4: p of the remaining pruned-group weights in total; keep_dense layers untouched
            after = P.counts(masks)
            left = sum(c for k, c in before.items() if k not in s.keep_dense)
            removed = left - sum(c for k, c in after.items() if k not in s.keep_dense)
            dev = abs(removed - P.n_to_prune(left, s.global_rate)) + sum(sizes[k] - after[k] for k in s.keep_dense)
        checks["prune_count_max_dev"] = max(checks["prune_count_max_dev"], float(dev))
        # §2 step 4: reset the survivors to θ0 (the variants are test-only broken resets)
        start = _reset_source(s, rewind, trained, build, ctx, rnd)
        probe = build().to(ctx.device)
        P.reset_to(probe, start, masks)
        pp = P.prunable_params(probe)
        diff = max(float((pp[k].detach() - rewind[k].to(ctx.device))[m].abs().max()) if m.any() else 0.0
                   for k, m in masks.items())
        checks["reset_max_abs_diff"] = max(checks["reset_max_abs_diff"], diff)

    if s.oneshot and s.rounds > 0 and dense_trained is not None:
        # §2 / Fig. 4: one-shot pruning of the dense trained net to the final per-layer counts
        # (global pruning §4: to the final total count of the pruned group, ranked globally)
        dense_w = {k: v.detach() for k, v in P.prunable_params(dense_trained).items()}
        if s.global_rate is None:
            os_masks = P.prune_to_counts(dense_w, P.counts(masks))
        else:
            group = [k for k in dense_w if k not in s.keep_dense]
            keep = sum(int(masks[k].sum()) for k in group)
            os_masks = {**P.global_prune_to_count({k: dense_w[k] for k in group}, keep),
                        **{k: masks[k] for k in s.keep_dense}}
            os_masks = {k: os_masks[k] for k in masks}
        trial, _ = train_subnetwork(build, rewind, os_masks, data, s, ctx, "oneshot", s.rounds)
        trials.append(trial)
    return IMPResult(trials, all_masks, checks)


def _reset_source(s: IMPSettings, rewind: State, trained: nn.Module, build: Callable[[], nn.Module],
                  ctx: RunContext, rnd: int) -> State:
    if s.variant == "reset_fresh":
        return clone_state(initialise(build(), ctx.generator(3000 + rnd), s.init))
    if s.variant == "reset_trained":
        return clone_state(trained)
    return rewind


def _controls(build: Callable[[], nn.Module], masks: P.Masks, rewind: State, data: Data, s: IMPSettings,
              ctx: RunContext, rnd: int, checks: dict[str, float]) -> list[Trial]:
    """§2 controls at this level: the SAME mask from a fresh init; a random mask of the same
    per-layer counts from the original init."""
    out = []
    if "reinit" in s.controls:
        fresh = clone_state(initialise(build(), ctx.generator(1000 + rnd), s.init))
        probe = build().to(ctx.device)
        P.reset_to(probe, fresh, masks)
        pp = P.prunable_params(probe)
        # identical mask: the zero pattern of the reinit start is exactly the ticket's mask (a fresh
        # Gaussian draw is exactly 0 about once in 3e7 entries, e.g. in VGG-19: such entries count as kept)
        mismatch = sum(int(((pp[k] != 0) != (m & (fresh[k].to(ctx.device) != 0))).sum()) for k, m in masks.items())
        same = sum(int((pp[k] == rewind[k].to(ctx.device))[m].sum()) for k, m in masks.items())
        checks["reinit_mask_mismatch"] = max(checks["reinit_mask_mismatch"], float(mismatch))
        checks["reinit_equal_init_frac"] = max(checks["reinit_equal_init_frac"],
                                               same / max(1, sum(int(m.sum()) for m in masks.values())))
        trial, _ = train_subnetwork(build, fresh, masks, data, s, ctx, "reinit", rnd)
        out.append(trial)
    if "random" in s.controls:
        rmask = P.random_masks(masks, ctx.generator(2000 + rnd))
        dev = max(abs(a - b) for a, b in zip(P.counts(rmask).values(), P.counts(masks).values()))
        checks["random_mask_count_dev"] = max(checks["random_mask_count_dev"], float(dev))
        trial, _ = train_subnetwork(build, rewind, rmask, data, s, ctx, "random", rnd)
        out.append(trial)
    return out
