"""The SWS protocol at CPU scale (spec §6): teacher -> Aux-Net by distillation -> descendants of several depths,
against scratch, no-stage (one shared layer repeated) and ancestor layers (normally trained net, evenly spaced)."""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from suite.data.augment import mixup_cutmix, random_erasing
from suite.models.convnet import ConvNet
from suite.models.resnet import ResNet
from suite.spec import curve_metrics
from suite.train import TrainConfig, fit

from .distill import distill_loss
from .method import expand, make_vit, n_params, share_stages, stage_mapping


@torch.no_grad()
def accuracy(model: torch.nn.Module, test: Any, dev: torch.device | None = None) -> float:
    """Top-1 on ``test``: a (x, y) tensor pair, or an iterable of (x, y) batches (full scale, a DataLoader)."""
    model.eval()
    batches = [test] if isinstance(test, tuple) else test
    hit = torch.zeros((), device=dev)
    tot = 0
    for x, y in batches:
        x, y = x.to(dev) if dev is not None else x, y.to(dev) if dev is not None else y
        hit = hit + (model(x).argmax(-1) == y).sum()
        tot += len(y)
    model.train()
    return hit.item() / max(tot, 1)


def build_vit(cfg: Any, depth: int, shape: tuple[int, int, int], classes: int, aux: bool = False):
    """A descendant-shaped ViT; ``aux``: an ancestor (Aux-Net, no-stage, ancestor layers), with ``aux_heads``."""
    c, h, _ = shape
    heads = (cfg.aux_heads or cfg.heads) if aux else cfg.heads
    return make_vit(h, cfg.patch, c, classes, cfg.dim, depth, heads, cfg.mlp_ratio, descendant=not aux,
                    drop_path=cfg.drop_path)


def _tc(cfg: Any, epochs: int, lr: float, wd: float, warmup_steps: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, optimizer="adamw", weight_decay=wd,
                       schedule="cosine", min_lr_ratio=cfg.min_lr_ratio, warmup_steps=warmup_steps)


def augmenter(cfg: Any, classes: int):
    """DeiT's batch-level recipe of the official main.py (full preset), None when every rate is 0: random erasing
    (in DeiT's per-image transform, so before mixing), then mixup / CutMix (switch prob 0.5, 'batch' mode) with
    label-smoothed soft targets. Returns ``(x, y) -> (x', targets)``."""
    mixing = cfg.mixup > 0 or cfg.cutmix > 0 or cfg.label_smoothing > 0
    if not mixing and cfg.reprob <= 0:
        return None

    def aug(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if cfg.reprob > 0:
            x = random_erasing(x, cfg.reprob)
        if mixing:
            return mixup_cutmix(x, y, classes, cfg.mixup, cfg.cutmix, label_smoothing=cfg.label_smoothing)
        return x, y

    return aug


def online_kd(student: torch.nn.Module, teacher: torch.nn.Module, batch: Any, aug: Any, alpha: float,
              temperature: float) -> torch.Tensor:
    """Distillation on one batch with the teacher run on the student's input after augmentation (DeiT's
    ``DistillationLoss``: ``teacher_model(inputs)`` on the mixed samples); ``aug``: None or ``augmenter(...)``."""
    x, y = aug(batch[0], batch[1]) if aug is not None else (batch[0], batch[1])
    with torch.no_grad():
        zt = teacher(x)
    return distill_loss(student(x), zt, y, alpha, temperature)


def build_teacher(shape: tuple[int, int, int], classes: int) -> torch.nn.Module:
    """spec §6: a small CNN trained in-run (LeViT-384 at the paper's scale, see README deviations)."""
    if shape[1] >= 64:   # full scale: a ResNet-18-sized CNN
        return ResNet((2, 2, 2, 2), num_classes=classes, in_channels=shape[0])
    return ConvNet(shape[0], classes, ((32, 32), (64, 64)), fc=(128,), image_size=shape[1])


def run_protocol(cfg: Any, ctx: Any, train: Any, test: Any, shape: tuple[int, int, int], classes: int,
                 n: int) -> dict[str, float]:
    """``train``/``test``: (x, y) tensors (CPU scales) or iterables of (x, y) batches (full scale)."""
    dev = torch.device(ctx.device)
    tensors = isinstance(train, tuple)
    if tensors:
        train, test = tuple(t.to(dev) for t in train), tuple(t.to(dev) for t in test)
    stages = tuple(cfg.stages)
    m: dict[str, float] = {}
    ce = lambda mod, b: F.cross_entropy(mod(b[0]), b[1])  # noqa: E731
    aug = augmenter(cfg, classes)
    if aug is None:
        student_ce = ce
    else:
        def student_ce(mod, b):   # soft targets: F.cross_entropy on class probabilities = SoftTargetCrossEntropy
            x, t = aug(b[0], b[1])
            return F.cross_entropy(mod(x), t)
    # Aux-S warmup (official: 5 epochs, per epoch from 1e-6; here per step, linear from lr / warmup_steps)
    per_epoch = len(train) if not tensors else -(-len(train[1]) // cfg.batch_size)
    aux_warmup = cfg.warmup_epochs * per_epoch

    # --- teacher (spec §6: a small CNN trained in-run; LeViT-384 at full scale)
    torch.manual_seed(ctx.seed)
    teacher = build_teacher(shape, classes)
    fit(teacher, ce, train, _tc(cfg, cfg.teacher_epochs, 1e-3, 0.0), ctx=ctx, name="teacher")
    m["teacher_acc"] = accuracy(teacher, test, dev)
    teacher.eval()
    if tensors and aug is None:   # teacher logits once (eval mode: the same numbers the online teacher would give)
        with torch.no_grad():
            kd_data = (train[0], train[1], teacher(train[0]))
        kd = lambda mod, b: distill_loss(mod(b[0]), b[2], b[1], cfg.alpha, cfg.temperature)  # noqa: E731
    else:         # streamed or augmented data: teacher logits per batch, on the student's (augmented) input
        kd_data = train
        kd = lambda mod, b: online_kd(mod, teacher, b, aug, cfg.alpha, cfg.temperature)  # noqa: E731

    def pretrain(model, name):   # Stage 1: distillation from the teacher, same budget for every ancestor
        key = {"aux": "sws"}.get(name, name)
        if cfg.variant == "untrained-aux" and name == "aux":
            m[f"table/{key}/pre_steps"], m[f"table/{key}/pre_s"] = 0.0, 0.0
            return model, 0.0, 0
        t0 = time.perf_counter()
        r = fit(model, kd, kd_data, _tc(cfg, cfg.aux_epochs, cfg.aux_lr, cfg.weight_decay, aux_warmup), ctx=ctx,
                name=name)
        m[f"table/{key}/pre_steps"], m[f"table/{key}/pre_s"] = float(r.step), time.perf_counter() - t0
        return model, time.perf_counter() - t0, r.step

    # --- ancestors: SWS Aux-Net (stages), no-stage Aux-Net (one shared layer), normally trained ancestor
    torch.manual_seed(ctx.seed + 1)
    aux, aux_s, aux_steps = pretrain(share_stages(build_vit(cfg, sum(stages), shape, classes, aux=True), stages), "aux")
    m.update(aux_acc=accuracy(aux, test, dev), aux_train_s=aux_s, aux_steps=aux_steps)
    torch.manual_seed(ctx.seed + 2)
    one = (sum(stages),)
    nostage, _, _ = pretrain(share_stages(build_vit(cfg, sum(stages), shape, classes, aux=True), one), "nostage")
    torch.manual_seed(ctx.seed + 3)
    anc, _, _ = pretrain(build_vit(cfg, sum(stages), shape, classes, aux=True), "ancestor")
    m["ancestor_acc"] = accuracy(anc, test, dev)
    unit = (1,) * sum(stages)   # every ancestor layer is its own "stage"; pick evenly spaced ones

    # parameters stored to initialise all descendants (C2): learngene layers + embeddings/head, vs each size
    m["params_stored_sws"] = float(n_params(aux))
    m["params_stored_ptft"] = float(sum(n_params(build_vit(cfg, d, shape, classes)) for d in cfg.depths))
    m["params_ratio_ptft_over_sws"] = m["params_stored_ptft"] / m["params_stored_sws"]

    # --- Stage 2: expand + short fine-tune (no distillation), each depth, each init
    inits = ("sws", "scratch", "nostage", "ancestor")
    accs: dict[str, list[float]] = {k: [] for k in inits + ("scratch_long",)}
    for d in cfg.depths:
        for init in inits + ("scratch_long",):
            torch.manual_seed(ctx.seed + 10 + d)
            des = build_vit(cfg, d, shape, classes).to(dev)
            if init == "sws":
                mp = stage_mapping(d, len(stages))
                if cfg.variant == "shuffled-stages":
                    mp = tuple(len(stages) - 1 - s for s in mp)   # TEETH: learngene layers in reversed stage order
                des = expand(aux, stages, d, des, mp)
            elif init == "nostage":
                des = expand(nostage, one, d, des, (0,) * d)
            elif init == "ancestor":
                idx = torch.linspace(0, sum(stages) - 1, d).round().long().tolist()
                des = expand(anc, unit, d, des, tuple(idx))
            long = init == "scratch_long"
            ep = cfg.scratch_long_epochs if long else cfg.des_epochs
            lr = cfg.scratch_lr if init in ("scratch", "scratch_long") else cfg.des_lr
            t0 = time.perf_counter()
            r = fit(des, student_ce, train, _tc(cfg, ep, lr, cfg.weight_decay), ctx=ctx, name=f"{init}-{d}")
            m[f"train_s/{init}/{d}"] = time.perf_counter() - t0
            m[f"steps/{init}/{d}"] = float(r.step)
            accs[init].append(accuracy(des, test, dev))
            m[f"table/{init}/acc@{d}"] = accs[init][-1]
    for init in inits + ("scratch_long",):   # leaderboard table: tuning cost summed over the depths
        m[f"table/{init}/tune_steps"] = sum(m[f"steps/{init}/{d}"] for d in cfg.depths)
        m[f"table/{init}/tune_s"] = sum(m[f"train_s/{init}/{d}"] for d in cfg.depths)
        m.setdefault(f"table/{init}/pre_steps", 0.0)
        m.setdefault(f"table/{init}/pre_s", 0.0)
    for k, v in accs.items():
        m.update(curve_metrics(f"acc_{k}", "depth", cfg.depths, v))
        m[f"acc_{k}_mean"] = sum(v) / len(v)
    gap = [a - b for a, b in zip(accs["sws"], accs["scratch"])]
    m["sws_minus_scratch_min"] = min(gap)
    m["sws_minus_nostage_mean"] = m["acc_sws_mean"] - m["acc_nostage_mean"]
    m["sws_minus_ancestor_mean"] = m["acc_sws_mean"] - m["acc_ancestor_mean"]
    m["sws_minus_scratch_long_mean"] = m["acc_sws_mean"] - m["acc_scratch_long_mean"]
    # training cost (C1): Aux-Net once (amortised over the depths) + short tuning vs long scratch of every depth,
    # in sample-passes x model-parameters (epochs x size, spec §4)
    p = {d: n_params(build_vit(cfg, d, shape, classes)) for d in cfg.depths}
    p_aux = n_params(build_vit(cfg, sum(stages), shape, classes, aux=True))   # compute runs every (shared) layer
    sws_cost = cfg.aux_epochs * p_aux * (0 if cfg.variant == "untrained-aux" else 1) + sum(
        cfg.des_epochs * p[d] for d in cfg.depths)
    m["cost_ratio_scratch_long_over_sws"] = sum(cfg.scratch_long_epochs * p[d] for d in cfg.depths) / max(sws_cost, 1)
    m["n_train"] = float(n)
    return m
