"""The Camelyon17 protocol of the RFC paper (spec §2 C2, §5): DenseNet-121 from scratch on the WILDS
hospital splits (train = hospitals 0, 3, 4 as environments), 2-round Bonsai with minibatch SGD, then
ERM / IRMv1 / vREx / CLOvE on frozen Bonsai features ("cf") and ERM / vREx fine-tuned from Bonsai, plus
ERM and ERM-init IRMv1 / vREx; the penalty weight is selected on IID validation (``id_val``) and on
OOD validation (hospital 1), and test accuracy (hospital 2) is reported for both.

Metrics ``camelyon17/test_acc/<method>/<init>/<selection>`` with init in {rand (ERM only), erm,
bonsai, bonsai_cf} and selection in {iid_val, ood_val}; the selected hyper-parameters are
``camelyon17/lam/...`` and, for the ERM-init runs, ``camelyon17/anneal/...`` (penalty-free steps); the ERM
baseline (round 0) is read at its best epoch on each validation split (``camelyon17/epochs/erm/rand/...``).

At full scale the protocol runs as three jobs (parts of the ``datasets`` split, see the package's
``CAMELYON_PARTS``): the Bonsai pipeline (``pipeline=True``: the rounds, whose round 0 gives the ERM rows, the
synthesis, the frozen-feature heads and the fine-tunings) and the ERM-init grid of each method (``erm_init``).
They share no state: each ERM-init run draws its minibatches from a fresh stream of its own
(:data:`ERM_INIT_STREAM`), so the parts' metrics are those of one job running them all.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from suite.errors import ConfigError
from suite.ood import EnvData
from suite.ood import bonsai as B
from suite.ood.dro import GroupWeights, group_losses
from suite.ood.net import Classifier, LinearOnFeatures, xavier_init_
from suite.ood.training import OodTrainConfig, train_ood
from suite.spec import DatasetRef

from . import camelyon_stream as S
from .densenet import densenet121_features

SPLITS = ("train", "id_val", "val", "test")
EVAL_BATCH = 256
# the official Camelyon17 DRO round is WILDS' groupDRO (src/algorithms/groupDRO.py, src/configs/algorithm.py)
GROUP_DRO_STEP_SIZE = 0.01
SELECTIONS = (("iid_val", "id_val"), ("ood_val", "val"))  # model selection: name, validation split
ERM_INIT_METHODS = ("irm", "vrex")  # the official ERM-init baselines (camelyon17_irm.sh, camelyon17_vrex.sh)
# ctx.generator stream of the ERM-init runs' minibatches: every (lambda, anneal) run starts it afresh, as every
# official run of one seed is its own process seeded alike (src/run_expt.py set_seed), and shares no draws
# with the pipeline (stream 29) or the other method's part
ERM_INIT_STREAM = 31


def group_uniform_draw(groups: torch.Tensor, batch: int, gen: torch.Generator):
    """``step -> indices``: ``batch`` examples drawn with replacement, uniformly over the non-empty groups
    (WILDS' standard loader with uniform_over_groups=True: WeightedRandomSampler with weights 1/|group|)."""
    members = [torch.nonzero(groups == g).flatten().cpu() for g in torch.unique(groups).tolist()]

    def draw(step: int) -> torch.Tensor:
        which = torch.randint(len(members), (batch,), generator=gen)
        return torch.cat([members[g][torch.randint(len(members[g]), (int((which == g).sum()),), generator=gen)]
                          for g in range(len(members))])
    return draw


def group_dro_round(make: Any, x: Any, y: torch.Tensor, correct: torch.Tensor, bcfg: B.BonsaiConfig, *,
                    ctx: Any, gen: torch.Generator, prefix: str, select: B.EpochSelect | None = None) -> nn.Module:
    """Bonsai discovery round 1 on Camelyon17 as the official code runs it: a fresh network trained by online
    group DRO over the groups {round 0 right, round 0 wrong} (src/generate_groups.py: group = pred XOR y),
    minibatches uniform over the groups. Variant "dro-mean" (broken on purpose) keeps q uniform (step 0).
    ``select``: keep the epoch of the best validation score (official camelyon17_rfc_r0r1_syn.sh --pred_epochs)."""
    model = make(1, 1)
    masks = B.split_groups(correct)  # (2, N): right, wrong
    weights = GroupWeights(masks.shape[0], 0.0 if bcfg.variant == "dro-mean" else GROUP_DRO_STEP_SIZE)
    draw = group_uniform_draw((~correct).long(), bcfg.batch_size or len(y), gen)
    dev = torch.device(ctx.device)

    def loss_fn(m: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        i = idx.cpu()
        xb, yb = x[i].to(dev), y[i].to(dev)
        return weights.objective(group_losses(m, xb, yb, masks[:, i].to(dev)))

    B.train_round(model, loss_fn, draw, bcfg.train_config(bcfg.dro_steps), select, ctx=ctx, name=f"{prefix}-round1",
                  generator=gen, stateful={"group_weights": weights})
    return model


def bonsai(make: Any, train: EnvData, bcfg: B.BonsaiConfig, *, ctx: Any, gen: torch.Generator,
           prefix: str = "cam-bonsai", select: B.EpochSelect | None = None) -> B.BonsaiResult:
    """2-round Bonsai on Camelyon17: ERM round 0 (suite.ood.bonsai), the online group-DRO round 1
    (:func:`group_dro_round`), then the shared synthesis. Variant "no-dro" runs both rounds as ERM. ``select``:
    each round is kept at the epoch of its first score's best (the official scripts: IID validation,
    ``final_mode=iid``); round 0 also keeps every other score's best epoch (``found.kept[0]``, the ERM rows)."""
    x, y = train.x, train.y
    if bcfg.variant == "no-dro":
        found = B.discover(make, x, y, bcfg, ctx=ctx, gen=gen, prefix=prefix, select=select)
        return B.synthesize(make, x, y, found, bcfg, ctx=ctx, gen=gen, prefix=prefix)
    r0 = B.discover(make, x, y, dataclasses.replace(bcfg, rounds=1), ctx=ctx, gen=gen, prefix=prefix, select=select)
    first = None if select is None else B.EpochSelect(select.every, dict([next(iter(select.scores.items()))]))
    m1 = group_dro_round(make, x, y, r0.correct[0], bcfg, ctx=ctx, gen=gen, prefix=prefix, select=first)
    correct = torch.stack([r0.correct[0], B.correctness(m1, x, y)])
    found = B.BonsaiResult(correct, B.pseudo_labels(y[None], correct), r0.models + [m1], kept=r0.kept)
    return B.synthesize(make, x, y, found, bcfg, ctx=ctx, gen=gen, prefix=prefix)


def _make(seed: int):
    def make(out: int, offset: int) -> Classifier:
        with torch.random.fork_rng():
            torch.manual_seed(seed * 7919 + offset)
            feats = densenet121_features()
            return Classifier(feats, xavier_init_(torch.nn.Linear(feats.out_dim, out)))
    return make


def _acc(model: torch.nn.Module, batches: Any, y: torch.Tensor) -> float:
    """Accuracy of the thresholded logit over ``batches`` (a split's DataLoader, or in-memory features)."""
    logits = S.predict(model, batches)[:, 0]
    return float(((logits > 0).float() == y.cpu()).float().mean())


def downstream_config(cfg: Any, method: str, lam: float, wd: float, steps: int,
                      checkpoint_every: int = 0) -> OodTrainConfig:
    """A downstream / ERM-init stage as the official WILDS IRM / VREX / CLOvE runs train it (ERM rows are their
    lambda = 0 runs): SGD, minibatches from the group loader (src/configs/algorithm.py train_loader 'group',
    uniform_over_groups, distinct_groups; src/configs/datasets.py n_groups_per_batch 2): ``cam_groups_per_batch``
    distinct hospitals, ``cam_batch // cam_groups_per_batch`` patches each; the objective averages over the
    hospitals in the batch. CLOvE's kernel width is ``cam_clove_width`` (official --kernel_scale 0.1); IRMv1's
    penalty has the form ``cam_irm_form`` (official src/algorithms/IRM.py ``irm_penalty``: "split_half", the
    product of the gradients of the even- and odd-indexed halves of each hospital, see suite.ood.irm)."""
    if cfg.cam_batch % cfg.cam_groups_per_batch:  # WILDS GroupSampler raises the same
        raise ConfigError(f"cam_batch={cfg.cam_batch} must be divisible by cam_groups_per_batch="
                          f"{cfg.cam_groups_per_batch}")
    kwargs = ({"width": cfg.cam_clove_width} if method == "clove" else
              {"form": cfg.cam_irm_form} if method == "irm" else {})
    return OodTrainConfig(steps=steps, lam=lam, lr=cfg.cam_lr, rho=0.0, optimizer="sgd", weight_decay=wd,
                          batch_per_env=cfg.cam_batch // cfg.cam_groups_per_batch, draw="groups",
                          groups_per_batch=cfg.cam_groups_per_batch, penalty_kwargs=kwargs,
                          checkpoint_every=checkpoint_every)


def erm_init_config(cfg: Any, method: str, lam: float, anneal: int, steps: int,
                    checkpoint_every: int = 0) -> OodTrainConfig:
    """An official ERM-init IRMv1 / vREx run (scripts/camelyon17/camelyon17_{irm,vrex}.sh, src/algorithms/IRM.py,
    VREX.py): a downstream stage (:func:`downstream_config`, weight decay ``cam_weight_decay``) of ``steps`` updates
    in all, whose first ``anneal`` (``--irm_penalty_anneal_iters``) have penalty weight 0 (``penalty_weight = 0``
    while ``update_count < irm_penalty_anneal_iters``), the optimizer re-created when they end, ``lam`` after."""
    return dataclasses.replace(downstream_config(cfg, method, lam, cfg.cam_weight_decay, steps, checkpoint_every),
                               anneal_steps=anneal, anneal_lam=0.0, anneal_reset=True)


def run_camelyon(cfg: Any, ctx: Any, *, pipeline: bool = True,
                 erm_init: tuple[str, ...] = ERM_INIT_METHODS) -> tuple[DatasetRef, dict[str, float]]:
    """The Camelyon17 protocol, or the parts of it named: ``pipeline`` (Bonsai, the ERM rows, the heads on frozen
    Bonsai features, the fine-tunings) and the ERM-init grid of each method in ``erm_init``."""
    bad = [m for m in erm_init if m not in ERM_INIT_METHODS]
    if bad or not (pipeline or erm_init):
        raise ConfigError(f"run_camelyon: pipeline={pipeline}, erm_init={erm_init!r}: run the pipeline and/or "
                          f"ERM-init methods of {ERM_INIT_METHODS}")
    # every split stays on disk (memory-mapped uint8 patches): training draws read their rows per step
    # (S.Rows), every full pass (featurising, evaluation) reads batches through a DataLoader (S.loader)
    splits = S.load_splits(ctx, SPLITS, max_per_split=cfg.cam_max_per_split)
    data = {s: S.env_data(splits[s]) for s in SPLITS}
    ref = splits["train"].ref
    train = data["train"]
    steps = max(1, cfg.cam_epochs * len(train) // cfg.cam_batch)
    synth_steps = max(1, cfg.cam_synth_epochs * len(train) // cfg.cam_batch)  # official: --n_epochs 20
    # every training checkpoints once an epoch (the draws' generator and, for the rounds, the best epoch so far
    # travel with it), so a requeued job resumes its part where it stopped instead of starting it over
    per_epoch = max(1, len(train) // cfg.cam_batch)
    bcfg = B.BonsaiConfig(rounds=2, erm_steps=steps, dro_steps=steps, synth_steps=synth_steps, lr=cfg.cam_lr, rho=0.0,
                          optimizer="sgd", momentum=0.9, weight_decay=cfg.cam_weight_decay,
                          synth_weight_decay=cfg.cam_synth_weight_decay, batch_size=cfg.cam_batch,
                          variant=cfg.variant if cfg.variant in B.VARIANTS else "paper", checkpoint_every=per_epoch)
    make = _make(ctx.seed)
    ood = lambda method, lam, wd: downstream_config(cfg, method, lam, wd, steps, per_epoch)  # noqa: E731
    ood("erm", 0.0, 0.0)  # a cam_batch the group loader cannot split fails before any training (and in dry runs)
    if ctx.dry_run:  # build the networks and the optimiser stage on fixture-sized data, no training
        net = make(1, 0).to(ctx.device)
        xb = next(iter(S.loader(splits["train"], 2, ctx.device)))[0]
        with torch.no_grad():
            net.eval()
            net(xb.to(ctx.device))
        ctx.log("camelyon17: %d train patches, %d steps/stage, DenseNet-121 %d features (dry run)",
                len(train), steps, net.featurizer.out_dim)
        return ref, {}

    loaders = {s: S.loader(splits[s], EVAL_BATCH, ctx.device) for s in SPLITS}  # one per split, reused
    runs: dict[tuple[str, str], list[tuple[dict[str, float], dict[str, float]]]] = {}
    eval_splits = ("id_val", "val", "test")

    def record(method: str, init: str, lam: float, model: torch.nn.Module, feats: dict[str, EnvData] | None,
               **more: float) -> None:
        if feats is None:  # the whole network: images streamed from disk
            accs = {s: _acc(model, loaders[s], data[s].y) for s in eval_splits}
        else:  # a head on precomputed (in-memory) features
            accs = {s: _acc(model, [(f,) for f in feats[s].x.split(EVAL_BATCH)], feats[s].y) for s in eval_splits}
        runs.setdefault((method, init), []).append(({"lam": lam, **more}, accs))

    metrics: dict[str, float] = {}
    if pipeline:
        gen = ctx.generator(29)
        # the ERM and DRO rounds are kept at their best epoch on the validation split (src/analysis_earlystop.py):
        # the pipeline at the IID-val best (the official scripts' final_mode=iid), the ERM rows at each split's best
        select = B.EpochSelect(per_epoch, {sel: functools.partial(lambda m, s: _acc(m, loaders[s], data[s].y), s=split)
                                           for sel, split in SELECTIONS})
        found = bonsai(make, train, bcfg, ctx=ctx, gen=gen, prefix="cam-bonsai", select=select)
        # round 0 = ERM for cam_epochs: the ERM baseline, at its best IID-val and best OOD-val epoch (each selection
        # below picks the one of its split: the other has no better score there)
        erm_kept = found.kept[0] if found.kept else {"last": B.Kept(found.models[0], steps, float("nan"))}
        for kept in erm_kept.values():
            record("erm", "rand", 0.0, kept.model, None, epochs=kept.step / per_epoch)
        # frozen Bonsai features (cf): features once (1024 floats per patch, on the host), then the head only
        base = B.downstream_init(found.synth, freeze=True)
        fx = {s: d.with_x(S.predict(base.featurizer, loaders[s])) for s, d in data.items()}
        lams = lambda m: (0.0,) if m == "erm" else cfg.cam_clove_lams if m == "clove" else cfg.cam_lams  # noqa: E731
        for method in cfg.cam_methods:
            for lam in lams(method):
                head = LinearOnFeatures(copy.deepcopy(base.head))
                train_ood(head, fx["train"], method, ood(method, lam, cfg.cam_weight_decay), ctx=ctx, gen=gen,
                          name=f"cam-{method}-bonsai_cf-{lam:g}")
                record(method, "bonsai_cf", lam, head, fx)
        for method in cfg.cam_finetune_methods:  # fine-tune everything from the Bonsai init (official: wd 1e-6)
            for lam in lams(method):
                model = B.downstream_init(found.synth)
                train_ood(model, train, method, ood(method, lam, cfg.cam_finetune_weight_decay), ctx=ctx, gen=gen,
                          name=f"cam-{method}-bonsai-{lam:g}")
                record(method, "bonsai", lam, model, None)
        metrics["camelyon17/bonsai/agree_frac"] = float((found.correct.all(0) | (~found.correct).all(0)).float().mean())
    # ERM-init baselines as the official camelyon17_{irm,vrex}.sh run them: every (lambda, anneal) point is one run
    # from scratch (the same initial weights as round 0, as the official runs of one seed share theirs; the same
    # minibatch stream, ERM_INIT_STREAM) of cam_epochs, penalty-free for its first `anneal` steps, the optimizer
    # re-created, then lambda (erm_init_config)
    for method in erm_init:
        for anneal in cfg.cam_erm_init_anneal_steps:
            for lam in cfg.cam_erm_init_lams:
                model = make(1, 0)
                train_ood(model, train, method, erm_init_config(cfg, method, lam, anneal, steps, per_epoch),
                          ctx=ctx, gen=ctx.generator(ERM_INIT_STREAM), name=f"cam-{method}-erm-{lam:g}-anneal{anneal}")
                record(method, "erm", lam, model, None, anneal=anneal)

    for (method, init), rs in runs.items():
        for sel, key in SELECTIONS:
            hp, accs = max(rs, key=lambda r: r[1][key])  # model selection on the validation split (whole grid)
            metrics[f"camelyon17/test_acc/{method}/{init}/{sel}"] = accs["test"]
            for name, value in hp.items():
                metrics[f"camelyon17/{name}/{method}/{init}/{sel}"] = float(value)
    return ref, metrics
