"""Bonsai (Zhang, Lopez-Paz & Bottou, ICML 2022, "Rich Feature Construction", Alg. 1 / spec §3).

1. discovery round 0: ERM on the pooled data; record which examples it gets right;
2. discovery round k >= 1: a fresh network minimises the max over the groups {i: c_j(i) = v}
   for every earlier round j and v in {right, wrong} (robust objective, :mod:`suite.ood.dro`);
3. pseudo-labels p_k = hard prediction of round k's model;
4. synthesis: a fresh network with K heads distils all p_k on a balanced resample of the examples
   where every round agrees on correctness (all right or all wrong) and the others;
5. the featurizer + averaged head initialise any OoD method (fine-tuned, or frozen = "cf").
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, get_args

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError
from suite.ood.dro import group_losses, robust_loss
from suite.ood.net import Classifier, averaged_head
from suite.ood.objective import l2_term
from suite.train import TrainConfig, fit

Variant = Literal["paper", "true-labels", "no-resample", "no-dro", "dro-mean"]
VARIANTS = get_args(Variant)


@dataclass
class BonsaiConfig:
    """Steps per episode and optimiser (spec §3: 51 ERM / 501 DRO / 501 synthesis steps, Adam 5e-4,
    rho = 0.0011). ``batch_size`` None = full batch (ColoredMNIST); Camelyon17 uses minibatches of
    SGD. ``variant`` is for ablations / tests: "true-labels" distils y instead of the pseudo-labels,
    "no-resample" skips the balanced agree/disagree resample, "no-dro" trains every round with ERM, "dro-mean" (broken, for tests) averages the groups instead
    of taking their max."""

    rounds: int = 2
    erm_steps: int = 51
    dro_steps: int = 501
    synth_steps: int = 501
    lr: float = 5e-4
    rho: float = 0.0011
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    synth_weight_decay: float = 0.0
    batch_size: int | None = None
    variant: str = "paper"
    checkpoint_every: int = 0  # steps between fit's checkpoints (0: none); Camelyon17 saves every epoch

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"bonsai: rounds must be >= 1, got {self.rounds}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"bonsai: variant {self.variant!r} unknown; use one of {VARIANTS}")

    def train_config(self, steps: int, weight_decay: float | None = None) -> TrainConfig:
        return TrainConfig(steps=steps, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
                           weight_decay=self.weight_decay if weight_decay is None else weight_decay,
                           log_every=max(1, steps), bf16=False, checkpoint_every=self.checkpoint_every)


@dataclass
class BonsaiResult:
    """``correct`` (K, N) bool: round k's model right on example i; ``pseudo`` (K, N) float labels;
    ``models``: the K discovery models; ``synth``: the K-head distilled network."""

    correct: torch.Tensor
    pseudo: torch.Tensor
    models: list[nn.Module]
    synth: Classifier | None = None
    sample_idx: torch.Tensor | None = None
    targets: torch.Tensor | None = None  # (K, N) labels the synthesis distilled
    notes: dict[str, float] = field(default_factory=dict)
    kept: list[dict[str, "Kept"]] = field(default_factory=list)  # per round, with EpochSelect: score -> Kept


@dataclass
class Kept:
    """A round's network at the evaluation where ``score`` was best: after ``step`` updates."""

    model: nn.Module
    step: int
    score: float


@dataclass
class EpochSelect:
    """Which epoch of a discovery round is kept (the official Camelyon17 code: src/analysis_earlystop.py takes, per
    validation split, ``np.argmax`` over the epochs of its accuracy, the first maximum, and the later stages read
    the model of that epoch, ``--pred_epochs`` / ``--eval_epoch``). Every ``every`` steps (an epoch) and at the
    end, each of ``scores`` (name -> score(model), higher is better) is evaluated and the weights of its best
    evaluation so far are kept; the round continues with those of the first score."""

    every: int
    scores: Mapping[str, Callable[[nn.Module], float]]

    def train(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor], draw: Callable[[int], Any],
              tcfg: TrainConfig, **fit_kw: Any) -> dict[str, Kept]:
        """``fit`` with the per-epoch evaluations; loads the first score's best weights into ``model`` and returns
        every score's :class:`Kept` (copies). The best so far travels in fit's checkpoint (``stateful``), so a
        round resumed mid-way still knows the epochs before the interruption."""
        best = _BestSoFar()
        step = [0]

        def count(state: Any) -> None:
            step[0] = state.step

        def evaluate(m: nn.Module) -> dict[str, float]:
            got = {k: float(f(m)) for k, f in self.scores.items()}
            for k, v in got.items():
                best.offer(k, v, step[0], m)
            return got

        stateful = {**fit_kw.pop("stateful", {}), "epoch_select": best}
        fit(model, loss_fn, draw, dataclasses.replace(tcfg, eval_every=max(1, self.every)), eval_fn=evaluate,
            on_step=count, stateful=stateful, **fit_kw)
        kept = {}
        for k, (v, at, state) in best.best.items():
            copy_ = copy.deepcopy(model)
            copy_.load_state_dict(state)
            kept[k] = Kept(copy_, at, v)
        model.load_state_dict(best.best[next(iter(self.scores))][2])
        return kept


class _BestSoFar:
    """Per score: (best value, its step, a copy of the weights then); a ``fit`` stateful object."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, int, dict[str, torch.Tensor]]] = {}

    def offer(self, key: str, value: float, step: int, model: nn.Module) -> None:
        if key not in self.best or value > self.best[key][0]:  # strictly better: the first maximum, as np.argmax
            self.best[key] = (value, step, {n: t.detach().clone() for n, t in model.state_dict().items()})

    def state_dict(self) -> dict[str, Any]:
        return {k: {"value": v, "step": at, "weights": w} for k, (v, at, w) in self.best.items()}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.best = {k: (float(d["value"]), int(d["step"]), dict(d["weights"])) for k, d in st.items()}


def train_round(model: nn.Module, loss_fn: Callable[..., torch.Tensor], draw: Callable[[int], Any],
                tcfg: TrainConfig, select: EpochSelect | None = None, **fit_kw: Any) -> dict[str, Kept]:
    """One discovery round: ``fit`` to the last step, or with ``select`` kept at its best epoch (what
    :meth:`EpochSelect.train` returns; {} without ``select``)."""
    if select is None:
        fit(model, loss_fn, draw, tcfg, **fit_kw)
        return {}
    return select.train(model, loss_fn, draw, tcfg, **fit_kw)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Logits (N, out) in eval mode, in chunks."""
    was = model.training
    model.eval()
    dev = _device(model)
    out = torch.cat([model(x[i:i + batch].to(dev)).reshape(min(batch, len(x) - i), -1)
                     for i in range(0, len(x), batch)])
    model.train(was)
    return out


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def correctness(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """c(i) = 1[thresholded logit == y_i] (bool, (N,))."""
    return (predict_logits(model, x)[:, 0] > 0).float().to(y.device) == y


def pseudo_labels(y: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """p_k(i) = y_i if round k was right on i else 1 - y_i, i.e. model k's hard prediction (§3 step 3)."""
    return torch.where(correct, y, 1 - y)


def split_groups(correct: torch.Tensor) -> torch.Tensor:
    """Groups of a discovery round k >= 1: for every earlier round j the examples it got right and
    those it got wrong, as masks (2 * rounds, N) (§3 step 2)."""
    return torch.cat([correct, ~correct], 0) if correct.dim() == 2 else torch.stack([correct, ~correct])


def balanced_resample(correct: torch.Tensor, gen: torch.Generator, n: int | None = None) -> torch.Tensor:
    """n/2 indices drawn with replacement from A (all rounds agree: all right or all wrong) and n/2
    from B (the rest); from A alone when B is empty (§3 step 4, §7)."""
    n = correct.shape[1] if n is None else n
    agree = correct.all(0) | (~correct).all(0)
    a, b = torch.nonzero(agree).flatten().cpu(), torch.nonzero(~agree).flatten().cpu()
    if len(b) == 0:
        return a[torch.randint(len(a), (n,), generator=gen)]
    if len(a) == 0:
        return b[torch.randint(len(b), (n,), generator=gen)]
    half = n // 2
    return torch.cat([a[torch.randint(len(a), (half,), generator=gen)],
                      b[torch.randint(len(b), (n - half,), generator=gen)]])


def robust_objective(cfg: BonsaiConfig) -> Callable[..., torch.Tensor]:
    """The discovery objective of rounds k >= 1 (the max-over-groups loss; "dro-mean" is a broken variant)."""
    if cfg.variant != "dro-mean":
        return robust_loss

    def mean_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, rho: float) -> torch.Tensor:
        g = group_losses(m, x, y, masks)
        return g[masks.any(1)].mean() + rho * l2_term(p for p in m.parameters() if p.requires_grad)

    return mean_loss


def _stream(n: int, batch_size: int | None, gen: torch.Generator) -> Callable[[int], torch.Tensor | None]:
    if batch_size is None:
        return lambda step: None  # full batch
    return lambda step: torch.randint(n, (batch_size,), generator=gen)


MakeModel = Callable[[int, int], Classifier]  # (number of outputs, stream offset) -> fresh network


def discover(make_model: MakeModel, x: torch.Tensor, y: torch.Tensor, cfg: BonsaiConfig,
             *, ctx: Any = None, gen: torch.Generator | None = None, prefix: str = "bonsai",
             select: EpochSelect | None = None) -> BonsaiResult:
    """Discovery episodes (§3 steps 1-2). ``make_model(1, k)`` builds round k's fresh network. ``select``: keep
    each round's best epoch (:class:`EpochSelect`; None = the last step, as on ColoredMNIST)."""
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    corrects: list[torch.Tensor] = []
    models: list[nn.Module] = []
    kept: list[dict[str, Kept]] = []
    dev = torch.device(ctx.device) if ctx is not None else y.device

    def train(model: nn.Module, loss_fn: Callable[..., torch.Tensor], draw: Callable[[int], Any], steps: int,
              name: str) -> None:  # the draws' generator travels in the checkpoint (fit's generator=)
        got = train_round(model, loss_fn, draw, cfg.train_config(steps), select, ctx=ctx, name=name, generator=gen)
        if select is not None:
            kept.append(got)

    for k in range(cfg.rounds):
        model = make_model(1, k)
        if k == 0 or cfg.variant == "no-dro":
            draw = _stream(len(y), cfg.batch_size, gen)

            def loss_fn(m: nn.Module, idx: torch.Tensor | None) -> torch.Tensor:
                xb, yb = (x, y) if idx is None else (x[idx.to(x.device)].to(dev), y[idx.to(y.device)].to(dev))
                logits = m(xb).reshape(len(yb))
                return F.binary_cross_entropy_with_logits(logits, yb) + cfg.rho * l2_term(
                    p for p in m.parameters() if p.requires_grad)

            train(model, loss_fn, draw, cfg.erm_steps, f"{prefix}-round{k}")
        else:
            masks = split_groups(torch.stack(corrects))  # (2k, N)
            draw = _stream(len(y), cfg.batch_size, gen)

            def loss_fn(m: nn.Module, idx: torch.Tensor | None, masks: torch.Tensor = masks) -> torch.Tensor:
                obj = robust_objective(cfg)
                if idx is None:
                    return obj(m, x, y, masks, cfg.rho)
                i = idx.to(y.device)
                return obj(m, x[idx.to(x.device)].to(dev), y[i].to(dev), masks[:, i].to(dev), cfg.rho)

            train(model, loss_fn, draw, cfg.dro_steps, f"{prefix}-round{k}")
        corrects.append(correctness(model, x, y))
        models.append(model)
    correct = torch.stack(corrects)
    return BonsaiResult(correct, pseudo_labels(y[None], correct), models, kept=kept)


def synthesize(make_model: MakeModel, x: torch.Tensor, y: torch.Tensor, found: BonsaiResult,
               cfg: BonsaiConfig, *, ctx: Any = None, gen: torch.Generator | None = None,
               prefix: str = "bonsai") -> BonsaiResult:
    """Synthesis episode (§3 step 4): multi-head BCE distillation of every round's pseudo-labels on the
    balanced agree/disagree resample. ``make_model(K, 100)`` builds a fresh network with K heads."""
    gen = gen if gen is not None else torch.Generator().manual_seed(1)
    K = found.correct.shape[0]
    targets = found.pseudo if cfg.variant != "true-labels" else y[None].expand(K, -1)
    if cfg.variant == "no-resample":
        idx = torch.arange(len(y))
    else:
        idx = balanced_resample(found.correct, gen)
    net = make_model(K, 100)
    draw = _stream(len(idx), cfg.batch_size, gen)
    t_all = targets.t().contiguous()  # (N, K)

    def loss_fn(m: nn.Module, j: torch.Tensor | None) -> torch.Tensor:
        sel = idx if j is None else idx[j.to(idx.device)]  # fit puts the drawn positions on the device
        logits = m(x[sel.to(x.device)].to(_device(m)))  # (B, K)
        bce = F.binary_cross_entropy_with_logits(logits, t_all[sel.to(t_all.device)].to(logits.device))  # mean over heads and examples
        return bce + cfg.rho * l2_term(p for p in m.parameters() if p.requires_grad)

    fit(net, loss_fn, draw, cfg.train_config(cfg.synth_steps, cfg.synth_weight_decay), ctx=ctx,
        name=f"{prefix}-synthesis", generator=gen)
    agree = found.correct.all(0) | (~found.correct).all(0)
    found.synth, found.sample_idx, found.targets = net, idx, targets
    found.notes.update({"agree_frac": float(agree.float().mean()), "n_disagree": float((~agree).sum())})
    return found


def run_bonsai(make_model: MakeModel, x: torch.Tensor, y: torch.Tensor, cfg: BonsaiConfig,
               *, ctx: Any = None, gen: torch.Generator | None = None, prefix: str = "bonsai") -> BonsaiResult:
    """Discovery + synthesis; ``make_model(out, offset)`` builds a fresh network with ``out`` outputs."""
    found = discover(make_model, x, y, cfg, ctx=ctx, gen=gen, prefix=prefix)
    return synthesize(make_model, x, y, found, cfg, ctx=ctx, gen=gen, prefix=prefix)


def downstream_init(synth: Classifier, freeze: bool = False) -> Classifier:
    """The synthesized featurizer with a one-output head = mean of the K heads (§3 step 5);
    ``freeze`` gives the "cf" (frozen featurizer) variant."""
    import copy

    model = Classifier(copy.deepcopy(synth.featurizer), averaged_head(synth.head))
    return model.freeze_featurizer() if freeze else model
