"""dam_vp: Diversity-Aware Meta Visual Prompting (Huang et al., CVPR 2023).

One run (spec §6 CPU protocol, or §5 with --scale full): a frozen backbone (trained in the job on clean
digits, or ViT-B/16 IN-1k from disk); the downstream set's un-prompted features are clustered (agglomerative,
average linkage, distance threshold) into M clusters, one pad prompt each, routed by nearest prototype;
compared in the same job with no prompt, head tuning (linear probe on frozen features), a single generic
prompt (VP), DAM-VP from random init, and DAM-VP from a Reptile meta-prompt learned on source tasks (§6's
digit domains, or at full the paper's six source datasets, unless a meta-prompt file is given).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reproductions.dam_vp import images
from reproductions.dam_vp.data import Split, diverse_digits
from reproductions.dam_vp.images import FileImages, InputTransform
from reproductions.dam_vp.method import (Frozen, PadPrompts, Prompted, Variant, active_neurons, cluster_threshold,
                                         diversity_clusters, prompt_vector, reptile_update, route,
                                         logit_dims, set_prompt_vector)
from suite.config import Range
from suite.data.external import locate
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources, curve_metrics
from suite.train import TrainConfig, fit

Norm = Literal["none", "imagenet", "half"]
MetaRecipe = Literal["spec", "official"]


@dataclass
class Config:
    data: str = "digits"  # "digits" (DiverseDigits, §6) | a downstream set of the paper (images.TARGETS, §5)
    backbone: str = "cnn"  # "cnn" (trained in the job) | "vit_b16" (weights from the data root, §5)
    weights: str = "weights/vit_b16_in1k.pt"  # under the data root; suite ViT state_dict (full scale)
    # under the data root; "" = meta-train with Reptile on the source tasks (§6's digit domains, or meta_sources)
    meta_prompt_file: str = ""
    # full: the paper's meta-training sets (images.SOURCES: SUN397, STL-10, Fru92, Veg200, Pets, EuroSAT)
    meta_sources: tuple[str, ...] = ()
    image_size: Annotated[int, Range(1)] = 16
    # > 0: shorter side resized to this, then centre crop image_size (official Resize(256) + CenterCrop(224));
    # 0: resized straight to image_size
    resize: Annotated[int, Range(0)] = 0
    # input normalisation before the prompt (official transforms.py: "imagenet" mean/std for IN-1k backbones)
    norm: Norm = "none"
    pad: Annotated[int, Range(1)] = 2  # prompt width p (paper: 30 on 224)
    head: str = "own"  # "own" (backbone's 10-way head, §6) | "active" (head-missing: active neurons)
    backbone_epochs: Annotated[int, Range(1)] = 3
    # clustering threshold = this percentile of pairwise feature distances
    percentile: Annotated[float, Range(0, 100)] = 60.0
    threshold: Annotated[float, Range(0)] = 0.0  # > 0: fixed distance threshold (paper: per backbone, e.g. ViT-B-1k 31)
    cluster_n: Annotated[int, Range(1)] = 1000  # clustering on at most this many (seeded) training images
    epochs: Annotated[int, Range(1)] = 2
    batch_size: Annotated[int, Range(1)] = 128
    prompt_lr: Annotated[float, Range(0, open_lo=True)] = 1.0
    prompt_wd: Annotated[float, Range(0)] = 0.0
    head_lr: Annotated[float, Range(0, open_lo=True)] = 0.1
    # "spec": §6's Reptile (SGD inner steps, a fresh batch per step, one meta step per meta-epoch);
    # "official": meta-training/meta_hf.py (Adam inner steps on one batch per task, cosine-decayed inner lr,
    # an epoch = meta_steps_per_epoch meta steps, source batches routed to the nearest prototype)
    meta_recipe: MetaRecipe = "spec"
    meta_epochs: Annotated[int, Range(1)] = 3
    # official recipe: meta steps per epoch, 0 = min over sources of ceil(n / meta_batch) (main_hf.py); spec: 1
    meta_steps_per_epoch: Annotated[int, Range(0)] = 1
    update_step: Annotated[int, Range(1)] = 4
    update_lr: Annotated[float, Range(0, open_lo=True)] = 0.5
    meta_step: Annotated[float, Range(0, open_lo=True)] = 0.5
    meta_batch: Annotated[int, Range(1)] = 64
    val_frac: Annotated[float, Range(0, 1, open_hi=True)] = 0.1  # validation split carved from train where none
    neuron_probe: Annotated[int, Range(2)] = 512  # N(0,1) images ranking the active neurons (official: 512)
    workers: Annotated[int, Range(0)] = 0  # DataLoader workers decoding image files (file datasets only)
    variant: Variant = "paper"  # broken (teeth): "reptile_sign" (meta step sign), "full_prompt" (not a pad)

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.head not in ("own", "active"):
            raise ConfigError(f"head={self.head!r} is unknown; use 'own' or 'active'")
        if self.data != "digits" and self.data not in images.TARGETS:
            raise ConfigError(f"data={self.data!r} is unknown; use 'digits' or one of {', '.join(images.TARGETS)}")
        bad = [s for s in self.meta_sources if s not in images.SOURCES]
        if bad:
            raise ConfigError(f"meta_sources: {bad[0]!r} is unknown; use names from {', '.join(images.SOURCES)}")
        if self.data == "digits" and self.meta_sources:
            raise ConfigError("meta_sources are for data from disk; data=digits meta-trains on §6's digit domains "
                              "(set meta_sources=[])")
        if self.data != "digits" and not self.meta_prompt_file and not self.meta_sources:
            raise ConfigError(f"data={self.data} needs a meta-prompt: set meta_sources (e.g. "
                              f"{','.join(images.SOURCES)}) or meta_prompt_file")


class Backbone(nn.Module):
    """§6 frozen backbone: 2 conv layers (16×16 input), 64-d features, 10-way head."""

    def __init__(self, size: int, classes: int = 10) -> None:
        super().__init__()
        from suite.models import ConvNet

        self.net = ConvNet(1, classes, ((16,), (32,)), fc=(64,), image_size=size, batch_norm=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head[:2](self.net.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


class _Zip(torch.utils.data.Dataset):
    """Row i of images (a tensor or ``FileImages``, decoded on access) and of aligned tensors."""

    def __init__(self, x, *rest: torch.Tensor) -> None:
        self.x, self.rest = x, rest

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], *(r[i] for r in self.rest))


def _sub(x, idx: torch.Tensor):
    """Rows ``idx`` of images: a tensor's rows, or a ``FileImages`` subset (nothing decoded)."""
    return x.subset(idx) if isinstance(x, FileImages) else x[idx]


def _chunks(x, *rest: torch.Tensor, bs: int, workers: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    """Consecutive CPU chunks of ``bs`` rows: slices of a tensor, or files decoded chunk by chunk (in
    ``workers`` processes); never the whole split at once."""
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), bs):
            yield (x[i:i + bs], *(r[i:i + bs] for r in rest))
    else:
        yield from torch.utils.data.DataLoader(_Zip(x, *rest), batch_size=bs, shuffle=False, num_workers=workers)


@torch.no_grad()
def _batched(fn, x, *rest: torch.Tensor, device: torch.device, bs: int = 512, workers: int = 0) -> torch.Tensor:
    """``fn`` over CPU-held ``x`` (and aligned ``rest``) in chunks sent to ``device``; the result on the CPU. The
    images stay at their stored resolution; ``fn`` (through ``pre``) resizes each chunk on the device."""
    return torch.cat([fn(c[0].to(device), *(r.to(device) for r in c[1:])).cpu()
                      for c in _chunks(x, *rest, bs=bs, workers=workers)])


def _train_data(x, *rest: torch.Tensor, bs: int, gen: torch.Generator, workers: int):
    """What ``fit`` draws minibatches from: the tensors themselves, or a shuffling DataLoader over image files
    (its ``generator`` makes each epoch's order reproducible, so a resumed fit draws the same batches)."""
    if isinstance(x, torch.Tensor):
        return (x, *rest)
    return torch.utils.data.DataLoader(_Zip(x, *rest), batch_size=bs, shuffle=True, generator=gen,
                                       num_workers=workers)


def train_prompts(name: str, prompts: PadPrompts, frozen: Frozen, pre: nn.Module, tr: Split, r_tr, va: Split, r_va,
                  te: Split, r_te, cfg: Config, ctx) -> tuple[float, list[float]]:
    """§3 optimisation: SGD momentum 0.9, cosine with warm-up of epochs/5, CE through the frozen backbone;
    model selection on val accuracy. Returns (test acc at best val, test acc per epoch)."""
    model, dev = Prompted(prompts, frozen, pre), torch.device(ctx.device)
    per_epoch = -(-len(tr.y) // cfg.batch_size)
    tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.prompt_lr, optimizer="sgd", momentum=0.9,
                     weight_decay=cfg.prompt_wd, schedule="cosine", warmup_steps=per_epoch * max(cfg.epochs // 5, 0),
                     eval_every=per_epoch, log_every=per_epoch)
    ev = lambda m: {"val": _acc(_batched(m, va.x, r_va, device=dev, workers=cfg.workers), va.y),  # noqa: E731
                    "test": _acc(_batched(m, te.x, r_te, device=dev, workers=cfg.workers), te.y)}
    data = _train_data(tr.x, r_tr, tr.y, bs=cfg.batch_size, gen=ctx.generator(13), workers=cfg.workers)
    res = fit(model, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), data, tc, ctx=ctx,
              eval_fn=ev, param_groups=[{"params": list(prompts.parameters())}], name=name)
    best = max(res.evals, key=lambda e: e["val"])  # first epoch with the best val accuracy
    return best["test"], [e["test"] for e in res.evals]


def _task_frozen(frozen: Frozen, n_cls: int, ranking: torch.Tensor | None, ctx) -> Frozen:
    """The frozen backbone of one source task: head-missing mode reads the task's top-``n_cls`` active neurons
    of the one ranking (official meta_hf.py rep2logit uses ``indices[:num_classes]`` of each meta dataset)."""
    if ranking is None:
        return frozen
    return Frozen(frozen.net, logit_dims(ranking, n_cls)).to(torch.device(ctx.device))


def reptile(meta: PadPrompts, sources: dict[str, Split], frozen: Frozen, pre: nn.Module, cfg: Config,
            ctx, classes: dict[str, int] | None = None, ranking: torch.Tensor | None = None) -> PadPrompts:
    """Meta-prompt by Reptile (spec §3 "Meta-prompt"): each meta step, for each source task, copy θ into the
    task's cluster prompts, adapt them, then θ ← θ + β·(mean_{tasks,clusters} φ − θ). ``cfg.meta_recipe``
    picks §6's CPU recipe or the official one (meta-training/meta_hf.py)."""
    if cfg.meta_recipe == "official":
        return _reptile_official(meta, sources, frozen, pre, cfg, ctx, classes or {}, ranking)
    tasks, dev = [], torch.device(ctx.device)
    for name, s in sources.items():
        u = _batched(lambda x: frozen.features(pre(x)), s.x, device=dev)
        lab, protos = diversity_clusters(u, cfg.threshold or cluster_threshold(u, cfg.percentile))
        tasks.append((name, s, lab, len(protos)))
    gen = ctx.generator(77)
    c, h, w = meta.top.shape[1], *meta.hw
    for epoch in range(cfg.meta_epochs):
        theta = prompt_vector(meta)
        phis = []
        for name, s, lab, m in tasks:
            inner = PadPrompts(m, c, h, w, cfg.pad)
            inner.load_from(meta)
            model = Prompted(inner, frozen, pre)

            def batch(step: int, s=s, lab=lab):
                i = torch.randint(0, len(s.y), (cfg.meta_batch,), generator=gen)
                return s.x[i], lab[i], s.y[i]

            def loss(mdl, b, m=m):  # Σ_j mean CE of cluster j: gradients of copy j = its own cluster's loss
                ce = F.cross_entropy(mdl(b[0], b[1]), b[2], reduction="none")
                cnt = torch.bincount(b[1], minlength=m).clamp_min(1).to(ce.dtype)
                return (torch.zeros(m, dtype=ce.dtype, device=ce.device).index_add_(0, b[1], ce) / cnt).sum()

            fit(model, loss, batch, TrainConfig(steps=cfg.update_step, lr=cfg.update_lr, optimizer="sgd",
                                                momentum=0.0, log_every=0), device=ctx.device)
            used = torch.unique(lab)
            phis.append(prompt_vector(inner).cpu()[used])  # the meta-prompt θ stays on the CPU
        set_prompt_vector(meta, reptile_update(theta, torch.cat(phis), cfg.meta_step, cfg.variant))
        ctx.log(f"dam_vp: meta-epoch {epoch + 1}/{cfg.meta_epochs}")
    return meta


def meta_lr(step: int, total: int, base: float) -> float:
    """Inner-loop lr of meta step ``step`` (1-based) of ``total``: official meta_hf.py ``lr_scheduler`` with no
    warm-up, 0.5·(1 + cos(π·step/total))·base."""
    return 0.5 * (1.0 + math.cos(math.pi * step / total)) * base


def _reptile_official(meta: PadPrompts, sources: dict[str, Split], frozen: Frozen, pre: nn.Module, cfg: Config,
                      ctx, classes: dict[str, int], ranking: torch.Tensor | None) -> PadPrompts:
    """The paper's meta-learning stage as its code runs it (meta-training/meta_hf.py, ``Meta.forward`` and
    ``computer_meta_weight``; spec §3):

    - per source task: features of ≤ ``cluster_n`` seeded un-prompted images, agglomerative clusters
      (the same threshold as the target), prototypes; every batch is routed to the nearest prototype (§3);
    - an epoch = ``meta_steps_per_epoch`` meta steps (0: as many as the smallest source has batches); each
      meta step draws one batch of ``meta_batch`` images per task, copies θ into the task's M cluster prompts
      and takes ``update_step`` Adam steps on that batch (lr = ``meta_lr`` of the step: cosine from
      ``update_lr`` to 0 over all meta steps), CE on the active-neuron logits;
    - θ ← θ − β·Σ_{tasks,clusters}(θ − φ)/Σ_tasks M (a cluster without images in its batch keeps φ = θ).
    """
    dev = torch.device(ctx.device)
    c, h, w = meta.top.shape[1], *meta.hw
    tasks = []
    for k, (name, s) in enumerate(sources.items()):
        fz = _task_frozen(frozen, classes.get(name, 10), ranking, ctx)
        sub = torch.randperm(len(s.y), generator=ctx.generator(1))[: cfg.cluster_n]  # seeded subset (§7)
        u = _batched(lambda x, fz=fz: fz.features(pre(x)), _sub(s.x, sub), device=dev, workers=cfg.workers)
        _, protos = diversity_clusters(u, cfg.threshold or cluster_threshold(u, cfg.percentile))
        loader = torch.utils.data.DataLoader(_Zip(s.x, s.y), batch_size=cfg.meta_batch, shuffle=True,
                                             generator=ctx.generator(200 + k), num_workers=cfg.workers)
        tasks.append((name, fz, protos.to(dev), loader))
        ctx.log(f"dam_vp: meta-training source {name}: {len(s.y)} images, {len(protos)} clusters")
    per_epoch = cfg.meta_steps_per_epoch or min(len(t[3]) for t in tasks)
    total = cfg.meta_epochs * per_epoch
    its: list = []
    for step in range(1, total + 1):
        if (step - 1) % per_epoch == 0:  # main_hf.py: every epoch starts a fresh (reshuffled) pass per source
            its = [iter(t[3]) for t in tasks]
        lr = meta_lr(step, total, cfg.update_lr)
        theta = prompt_vector(meta)
        phis = []
        for k, (name, fz, protos, loader) in enumerate(tasks):
            b = next(its[k], None)
            if b is None:  # meta_steps_per_epoch > this source's batches: start another pass
                its[k] = iter(loader)
                b = next(its[k])
            xb, yb = b
            xb, yb = xb.to(dev), yb.to(dev)
            with torch.no_grad():
                r = route(fz.features(pre(xb)), protos)  # nearest prototype of the un-prompted image (§3)
            inner = PadPrompts(len(protos), c, h, w, cfg.pad)
            inner.load_from(meta)
            fit(Prompted(inner, fz, pre), lambda mdl, b: F.cross_entropy(mdl(b[0], b[1]), b[2]),
                lambda _step, b=(xb, r, yb): b, TrainConfig(steps=cfg.update_step, lr=lr, optimizer="adam",
                                                             log_every=0), device=dev)
            phis.append(prompt_vector(inner).cpu())  # all M copies: an unrouted cluster's φ is θ
        set_prompt_vector(meta, reptile_update(theta, torch.cat(phis), cfg.meta_step, cfg.variant))
        if step % per_epoch == 0:
            ctx.log(f"dam_vp: meta-epoch {step // per_epoch}/{cfg.meta_epochs} ({total} meta steps)")
    ctx.notes["meta_training"] = (f"Reptile (official recipe) on {', '.join(sources)}: {total} meta steps "
                                  f"({cfg.meta_epochs} epochs x {per_epoch})")
    return meta


def mechanics(feature_fn, u_tr: torch.Tensor, protos: torch.Tensor, x: torch.Tensor, cfg: Config,
              ctx) -> dict[str, float]:
    """Spec §6 smoke assertions as measurements."""
    c, h, w = x.shape[1:]
    p = PadPrompts(3, c, h, w, cfg.pad, cfg.variant, ctx.generator(5))
    r = torch.arange(len(x)) % 3
    out = p(x, r).detach()
    k = cfg.pad
    centre = float((out - x)[..., k:h - k, k:w - k].abs().max())
    brute = torch.tensor([int(np.argmin([float(((u - q) ** 2).sum()) for q in protos])) for u in u_tr[:64]])
    routing = float((route(u_tr[:64], protos) != brute).sum())
    theta, phis = torch.randn(1, 6), torch.randn(4, 6)
    want = theta + cfg.meta_step * (phis.mean(0) - theta)
    rep = float((reptile_update(theta, phis, cfg.meta_step, cfg.variant) - want).abs().max())
    g = ctx.generator(6)
    dev = torch.device(ctx.device)
    idx = active_neurons(feature_fn, 10, (c, h, w), g, n=cfg.neuron_probe, device=dev)
    std = feature_fn(torch.randn(cfg.neuron_probe, c, h, w, generator=ctx.generator(6)).to(dev)).std(0).cpu()
    act = float(len(set(idx.tolist()) ^ set(torch.topk(std, 10).indices.tolist())))
    return {"border_only_err": centre, "routing_err": routing, "reptile_err": rep, "active_neuron_err": act}


def _val_split(xt, yt: torch.Tensor, cfg: Config, ctx):
    """A seeded ``val_frac`` of the train split as validation (official: the last 20 % of CIFAR/SVHN/Food/GTSRB
    train; here a seeded random 20 % at full)."""
    perm = torch.randperm(len(yt), generator=ctx.generator(3))
    nv = max(1, int(cfg.val_frac * len(yt)))
    return (_sub(xt, perm[nv:]), yt[perm[nv:]]), (_sub(xt, perm[:nv]), yt[perm[:nv]])


def _target_tasks(cfg: Config, ctx) -> tuple[Split, Split, Split, int, DatasetRef]:
    """The downstream set (§5) as train / val / test Splits whose images stay as stored: uint8 at the native
    resolution (CIFAR, SVHN), or files decoded per batch; ``InputTransform`` resizes and normalises each batch
    on the device. CIFAR-10/100 come from suite.data's catalog, the rest from ``images.PUBLISHED``; the ref is
    the loader's."""
    if cfg.data in images.CATALOG_TARGETS:
        from suite.data.catalog import load_dataset

        sp = load_dataset(ctx, cfg.data, dry_run=ctx.dry_run)
        parts = {k: (d.x, d.y) for k, d in sp.items()}
        n_cls, ref = int(max(int(d.y.max()) for d in sp.values())) + 1, sp["train"].ref
    else:
        parts, n_cls, ref = images.load(ctx, cfg.data, cfg.image_size, cfg.resize or cfg.image_size)
    train, val = (parts["train"], parts["val"]) if "val" in parts else _val_split(*parts["train"], cfg, ctx)
    none = lambda y: torch.full((len(y),), -1)  # noqa: E731
    tr, va, te = (Split(x, y, none(y)) for x, y in (train, val, parts["test"]))
    return tr, va, te, n_cls, ref


def _source_tasks(cfg: Config, ctx) -> tuple[dict[str, Split], dict[str, int], str]:
    """The meta-training sources (official arguments.py META_TRAIN_DATASETS, their train splits) and class
    counts, each located like paper data; a note naming what was read."""
    sources, classes, seen = {}, {}, []
    for name in cfg.meta_sources:
        parts, classes[name], ref = images.load(ctx, name, cfg.image_size, cfg.resize or cfg.image_size)
        x, y = parts["train"]
        sources[name] = Split(x, y, torch.full((len(y),), -1))
        seen.append(f"{ref.name} ({ref.provenance}, {len(y)} images, {classes[name]} classes)")
    return sources, classes, "; ".join(seen)


def _head(s: Split, n: int) -> Split:
    idx = torch.arange(min(n, len(s.y)))
    return Split(_sub(s.x, idx), s.y[idx], s.domain[idx])


VIT_HOW = "convert timm vit_base_patch16_224 (IN-1k) to a suite ViT state_dict (suite.models.ViT) and put it there"
META_HOW = ("torch.save the state_dict of PadPrompts(1, 3, 224, 224, 30) there (or the official meta-training "
            "checkpoint, {'state_dict': pad_up/pad_down/pad_left/pad_right}), or set meta_prompt_file='' to "
            "meta-train on meta_sources")


def _file(ctx, name: str, rel: str, how: str, write) -> Path:
    """``rel`` under the data root (or an absolute path), located like a paper file; without it, in a dry run or
    a rehearsal, ``write(path)`` makes the fixture."""
    if rel.startswith("/"):
        return Path(rel)
    f = Path(rel)
    folder, _ = locate(ctx, name, str(f.parent), [f.name], how, fixture=lambda d: write(d / f.name))
    return folder / f.name


def write_vit_fixture(path: Path, image_size: int) -> None:
    """A tiny random suite ViT of the ViT-B/16 family (patch 16, 64-wide heads, 1000 classes), saved as the
    state_dict the full path loads (dry runs and rehearsals; stand-in). 128 features, so head-missing mode
    finds an active neuron for each of CIFAR-100's classes."""
    from suite.models import ViT

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(ViT(image_size=image_size, patch_size=16, num_classes=1000, dim=128, depth=2, heads=2).state_dict(),
               path)


def write_meta_prompt_fixture(path: Path, chw: tuple[int, int, int], pad: int) -> None:
    """A random meta-prompt: the state_dict of one pad prompter (PadPrompts(1, C, H, W, p)), as loaded below."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(PadPrompts(1, *chw, pad, generator=torch.Generator().manual_seed(0)).state_dict(), path)


OFFICIAL_PAD = {"pad_up": "top", "pad_down": "bottom", "pad_left": "left", "pad_right": "right"}


def load_meta_prompt(meta: PadPrompts, path: Path) -> None:
    """A stored meta-prompt into ``meta``: our PadPrompts state_dict, or an official meta-training checkpoint
    ({'state_dict': {pad_up, pad_down, pad_left, pad_right}}, models/prompters.py PadPrompter; same shapes)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {OFFICIAL_PAD.get(k, k): v for k, v in state.items()}
    try:
        meta.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{path} is not a pad prompt of width {meta.p} on {meta.hw[0]} px: "
                          f"{str(exc).splitlines()[-1].strip()}; set pad/image_size or meta_prompt_file") from None


def _vit_backbone(cfg: Config, ctx) -> tuple[nn.Module, str]:
    """ViT-B/16 (suite ViT) with IN-1k weights from the data root; its shape is read from the state_dict
    (heads = width / 64, ViT's head width), so the tiny random fixture of a dry run or rehearsal loads alike."""
    from suite.models import ViT

    path = _file(ctx, "vit-b16-in1k", cfg.weights, VIT_HOW, lambda f: write_vit_fixture(f, cfg.image_size))
    state = torch.load(path, map_location="cpu", weights_only=True)
    dim, _, patch, _ = state["patch.weight"].shape
    side = round((state["pos"].shape[1] - 1) ** 0.5) * patch
    if side != cfg.image_size:
        raise ConfigError(f"{path} is a ViT for {side} px images, image_size={cfg.image_size}; set image_size={side}")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    net = ViT(image_size=side, patch_size=patch, in_channels=state["patch.weight"].shape[1],
              num_classes=state["head.weight"].shape[0], dim=dim, depth=depth, heads=max(1, dim // 64),
              mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim)
    net.load_state_dict(state)
    name = f"tiny-random-vit-{dim}d (fixture)" if "fixtures" in path.parts else str(path)
    return net, name


# Full preset = the official head-freezing/missing configuration for ViT-B/16 IN-1k (README table; a test pins it):
# arguments.py, data_utils/transforms.py, task_adapting/adapter.py, meta-training/main_hf.py + the README's
# vit-b-1k meta-training command (meta_lr 0.5, update_step 4, meta_step_size 0.5).
FULL = {"data": "cifar-100", "backbone": "vit_b16", "image_size": 224, "resize": 256, "norm": "imagenet", "pad": 30,
        "head": "active", "threshold": 31.0, "cluster_n": 1000, "epochs": 50, "batch_size": 128, "val_frac": 0.2,
        "meta_prompt_file": "", "meta_sources": list(images.SOURCES), "meta_recipe": "official", "meta_epochs": 200,
        "meta_steps_per_epoch": 0, "meta_batch": 128, "update_step": 4, "update_lr": 0.5, "meta_step": 0.5,
        "workers": 4}


@reproduction(
    track="clustering",
    paper=Paper(title="Diversity-Aware Meta Visual Prompting", authors="Qidong Huang, Xiaoyi Dong, Dongdong Chen, "
                "Weiming Zhang, Feifei Wang, Gang Hua, Nenghai Yu", year=2023, venue="CVPR",
                url="https://arxiv.org/abs/2303.08138", code="https://github.com/shikiw/DAM-VP"),
    config=Config,
    scales={
        "smoke": {},
        "small": {"backbone_epochs": 20, "epochs": 20, "meta_epochs": 30},
        "full": FULL,
    },
    claims=[
        Claim(id="border-only", text="§6: prompts change only border pixels (centre of prompted == input)",
              metric="border_only_err", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check",
              teeth="full_prompt"),
        Claim(id="routing-argmin", text="§6: routing = argmin Euclidean distance to the prototypes",
              metric="routing_err", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="reptile-update", text="§6: Reptile update equals θ + β·(mean φ − θ)", metric="reptile_err",
              op="<=", ref=1e-6, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="active-neurons", text="§6: active-neuron indices are the top-std output dims",
              metric="active_neuron_err", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="several-clusters", text="§6: diversity-adaptive clustering finds M ≥ 2 clusters",
              metric="n_clusters", op=">=", ref=2.0, scales=("smoke", "small"), kind="check"),
        Claim(id="damvp-beats-vp", text="C1: DAM-VP (meta init) ≥ single-prompt VP + 2 points on DiverseDigits",
              metric="damvp_gain_over_vp", op=">=", ref=0.02, scales=("small", "full"), kind="paper",
              teeth="reptile_sign"),
        # Not a comparison the paper makes (its baselines are VP, VPT, linear probing, fine-tuning): any
        # trained prompt beats the un-prompted backbone on shifted domains, so this is a sanity check.
        Claim(id="damvp-beats-noprompt", text="sanity: DAM-VP (meta init) beats the frozen backbone without prompt",
              metric="damvp_meta_acc", op=">", ref="noprompt_acc", scales=("small", "full"), kind="check"),
        Claim(id="meta-converges-faster", text="C3: meta-init DAM-VP reaches VP's final accuracy in ≤ half the "
              "epochs", metric="meta_epochs_to_vp_frac", op="<=", ref=0.5, scales=("small", "full"), kind="paper",
              teeth="reptile_sign"),
    ],
    plots=[Plot(name="convergence", x="epoch", ys=("vp_test_acc", "damvp_rand_test_acc", "damvp_meta_test_acc"),
                title="C3: test accuracy per epoch", ylabel="top-1")],
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2), "small": Resources(cpus=2, mem_gb=2, time_min=10),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=1440)},
)
def run(cfg: Config, ctx) -> Outcome:
    metrics: dict[str, float] = {}
    sources: dict[str, Split] = {}
    classes: dict[str, int] = {}
    notes: dict[str, str] = {}
    if cfg.data == "digits":
        t = diverse_digits(ctx.seed, cfg.image_size)
        tr, va, te, n_cls, sources = t.train, t.val, t.test, 10, t.sources
        ref = DatasetRef("diverse-digits(sklearn)", "stand-in")
        net: nn.Module = Backbone(cfg.image_size, n_cls)
        if not ctx.dry_run:  # §6: backbone trained in the job on clean digits, then frozen
            fit(net, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (t.backbone_train.x, t.backbone_train.y),
                TrainConfig(epochs=cfg.backbone_epochs, batch_size=64, lr=3e-3, log_every=0), ctx=ctx, name="backbone")
        pre: nn.Module = nn.Identity()
    else:
        tr, va, te, n_cls, ref = _target_tasks(cfg, ctx)  # the loader's ref (name, provenance)
        net, notes["backbone"] = _vit_backbone(cfg, ctx)
        # images stay stored (uint8, native size, or files); each batch is resized, centre-cropped and
        # normalised on the device (official transforms.py), and the prompt is added after it (§3)
        pre = InputTransform(cfg.image_size, cfg.resize, cfg.norm)
        if not cfg.meta_prompt_file:  # the paper's source datasets, located before a dry run returns
            sources, classes, notes["meta_sources"] = _source_tasks(cfg, ctx)
        if ctx.dry_run:
            tr, va, te = (_head(s, 8) for s in (tr, va, te))
            sources = {k: _head(s, 8) for k, s in sources.items()}
    dev = torch.device(ctx.device)
    net.eval().to(dev)
    pre.to(dev)
    for p in net.parameters():
        p.requires_grad_(False)
    c, h, w = pre(tr.x[:1].to(dev)).shape[1:]  # the backbone's input (= the prompt's) resolution
    ranking = active = None
    if cfg.head == "active":  # head-missing: top-std dims of the output features (§3)
        ranking = active_neurons(net.features, None, (c, h, w), ctx.generator(6),
                                 n=8 if ctx.dry_run else cfg.neuron_probe, device=dev)
        active = logit_dims(ranking, n_cls)
    frozen = Frozen(net, active).to(dev)
    feats = lambda x: frozen.features(pre(x))  # noqa: E731  un-prompted features (routing, §7)
    sub = torch.randperm(len(tr.y), generator=ctx.generator(1))[: cfg.cluster_n]  # seeded subset (§7)
    u_sub = _batched(feats, _sub(tr.x, sub), device=dev, workers=cfg.workers)
    thr = cfg.threshold or cluster_threshold(u_sub, cfg.percentile)
    _, protos = diversity_clusters(u_sub, thr)
    m = len(protos)
    # features of every split, once, on the device in chunks (routing and the head-tuning baseline share them)
    u_tr, u_va, u_te = (_batched(feats, s.x, device=dev, workers=cfg.workers) for s in (tr, va, te))
    r_tr, r_va, r_te = (route(u, protos) for u in (u_tr, u_va, u_te))
    meta_path = None
    if cfg.meta_prompt_file:  # located before a dry run returns, so a dry run writes its fixture
        meta_path = _file(ctx, "dam-vp-meta-prompt", cfg.meta_prompt_file, META_HOW,
                          lambda f: write_meta_prompt_fixture(f, (c, h, w), cfg.pad))
        notes["meta_prompt"] = "random meta-prompt (fixture)" if "fixtures" in meta_path.parts else str(meta_path)
    if ctx.dry_run:
        Prompted(PadPrompts(m, c, h, w, cfg.pad), frozen, pre).to(dev)(tr.x[:2].to(dev), r_tr[:2].to(dev))
        return Outcome(metrics={}, dataset=ref)
    metrics.update(mechanics(frozen.features, u_sub, protos, _batched(pre, tr.x[:16], device=dev), cfg, ctx))
    metrics.update({"n_clusters": float(m), "cluster_threshold": thr})
    if (te.domain >= 0).any():  # how well the clusters follow the hidden domains
        from suite.metrics.clustering import nmi
        metrics["cluster_domain_nmi"] = nmi(te.domain.numpy(), r_te.numpy())
    metrics["noprompt_acc"] = _acc(_batched(lambda x: frozen(pre(x)), te.x, device=dev, workers=cfg.workers), te.y)
    # head tuning: linear head on the frozen features (paper's head-tuning / linear-probe baseline)
    head = nn.Linear(u_tr.shape[1], n_cls)
    res = fit(head, lambda mdl, b: F.cross_entropy(mdl(b[0]), b[1]), (u_tr, tr.y),
              TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.head_lr, optimizer="sgd",
                          schedule="cosine", log_every=0, eval_every=-(-len(tr.y) // cfg.batch_size)), ctx=ctx,
              eval_fn=lambda mdl: {"val": _acc(_batched(mdl, u_va, device=dev), va.y),
                                   "test": _acc(_batched(mdl, u_te, device=dev), te.y)}, name="head")
    metrics["head_tuning_acc"] = max(res.evals, key=lambda e: e["val"])["test"]
    curves = {}
    gen = ctx.generator(11)
    zeros = lambda s: torch.zeros(len(s.y), dtype=torch.long)  # noqa: E731
    metrics["vp_acc"], curves["vp"] = train_prompts("vp", PadPrompts(1, c, h, w, cfg.pad, generator=gen), frozen,
                                                    pre, tr, zeros(tr), va, zeros(va), te, zeros(te), cfg, ctx)
    metrics["damvp_rand_acc"], curves["damvp_rand"] = train_prompts(
        "damvp-rand", PadPrompts(m, c, h, w, cfg.pad, generator=gen), frozen, pre, tr, r_tr, va, r_va, te, r_te,
        cfg, ctx)
    meta = PadPrompts(1, c, h, w, cfg.pad, generator=gen)
    if meta_path is not None:
        load_meta_prompt(meta, meta_path)
    else:
        meta = reptile(meta, sources, frozen, pre, cfg, ctx, classes, ranking)
    prompts = PadPrompts(m, c, h, w, cfg.pad)
    prompts.load_from(meta)
    metrics["damvp_meta_acc"], curves["damvp_meta"] = train_prompts(
        "damvp-meta", prompts, frozen, pre, tr, r_tr, va, r_va, te, r_te, cfg, ctx)
    metrics["damvp_gain_over_vp"] = metrics["damvp_meta_acc"] - metrics["vp_acc"]
    metrics["damvp_rand_gain_over_vp"] = metrics["damvp_rand_acc"] - metrics["vp_acc"]
    hit = [i + 1 for i, a in enumerate(curves["damvp_meta"]) if a >= metrics["vp_acc"]]
    metrics["meta_epochs_to_vp_frac"] = (hit[0] if hit else 2 * cfg.epochs) / cfg.epochs
    hit = [i + 1 for i, a in enumerate(curves["damvp_rand"]) if a >= metrics["vp_acc"]]  # context for C3
    metrics["rand_epochs_to_vp_frac"] = (hit[0] if hit else 2 * cfg.epochs) / cfg.epochs
    for k, v in curves.items():
        metrics.update(curve_metrics(f"{k}_test_acc", "epoch", range(1, len(v) + 1), v))
    return Outcome(metrics=metrics, dataset=ref, notes=notes)
