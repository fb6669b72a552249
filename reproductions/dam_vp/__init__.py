"""dam_vp: Diversity-Aware Meta Visual Prompting (Huang et al., CVPR 2023).

One run (spec §6 CPU protocol, or §5 with --scale full): a frozen backbone (trained in the job on clean
digits); the downstream set's un-prompted features are clustered (agglomerative, average linkage,
distance threshold) into M clusters, one pad prompt each, routed by nearest prototype; compared in the
same job with no prompt, head tuning (linear probe on frozen features), a single generic prompt (VP),
DAM-VP from random init, and DAM-VP from a Reptile meta-prompt learned on source tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reproductions.dam_vp.data import Split, diverse_digits
from reproductions.dam_vp.method import (Frozen, PadPrompts, Prompted, Variant, active_neurons, cluster_threshold,
                                         diversity_clusters, prompt_vector, reptile_update, route,
                                         set_prompt_vector)
from suite.config import Range
from suite.data.external import locate
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources, curve_metrics
from suite.train import TrainConfig, fit


@dataclass
class Config:
    data: str = "digits"  # "digits" (DiverseDigits, §6) | a suite.data catalog name (full: "cifar-100")
    backbone: str = "cnn"  # "cnn" (trained in the job) | "vit_b16" (weights from the data root, §5)
    weights: str = "weights/vit_b16_in1k.pt"  # under the data root; suite ViT state_dict (full scale)
    meta_prompt_file: str = ""  # under the data root; "" = meta-train with Reptile on the source tasks
    image_size: Annotated[int, Range(1)] = 16
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
    meta_epochs: Annotated[int, Range(1)] = 3
    update_step: Annotated[int, Range(1)] = 4
    update_lr: Annotated[float, Range(0, open_lo=True)] = 0.5
    meta_step: Annotated[float, Range(0, open_lo=True)] = 0.5
    meta_batch: Annotated[int, Range(1)] = 64
    val_frac: Annotated[float, Range(0, 1, open_hi=True)] = 0.1  # catalog data: validation split carved from train
    variant: Variant = "paper"  # broken (teeth): "reptile_sign" (meta step sign), "full_prompt" (not a pad)


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


@torch.no_grad()
def _batched(fn, x: torch.Tensor, *rest: torch.Tensor, device: torch.device, bs: int = 512) -> torch.Tensor:
    """``fn`` over CPU-held ``x`` (and aligned ``rest``) in chunks sent to ``device``; the result on the CPU."""
    return torch.cat([fn(x[i:i + bs].to(device), *(r[i:i + bs].to(device) for r in rest)).cpu()
                      for i in range(0, len(x), bs)])


def train_prompts(name: str, prompts: PadPrompts, frozen: Frozen, pre: nn.Module, tr: Split, r_tr, va: Split, r_va,
                  te: Split, r_te, cfg: Config, ctx) -> tuple[float, list[float]]:
    """§3 optimisation: SGD momentum 0.9, cosine with warm-up of epochs/5, CE through the frozen backbone;
    model selection on val accuracy. Returns (test acc at best val, test acc per epoch)."""
    model, dev = Prompted(prompts, frozen, pre), torch.device(ctx.device)
    per_epoch = -(-len(tr.y) // cfg.batch_size)
    tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.prompt_lr, optimizer="sgd", momentum=0.9,
                     weight_decay=cfg.prompt_wd, schedule="cosine", warmup_steps=per_epoch * max(cfg.epochs // 5, 0),
                     eval_every=per_epoch, log_every=per_epoch)
    ev = lambda m: {"val": _acc(_batched(m, va.x, r_va, device=dev), va.y),  # noqa: E731
                    "test": _acc(_batched(m, te.x, r_te, device=dev), te.y)}
    res = fit(model, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), (tr.x, r_tr, tr.y), tc, ctx=ctx,
              eval_fn=ev, param_groups=[{"params": list(prompts.parameters())}], name=name)
    best = max(res.evals, key=lambda e: e["val"])  # first epoch with the best val accuracy
    return best["test"], [e["test"] for e in res.evals]


def reptile(meta: PadPrompts, sources: dict[str, Split], frozen: Frozen, pre: nn.Module, cfg: Config,
            ctx) -> PadPrompts:
    """Meta-prompt by Reptile (§3): each meta-epoch, for each source task, copy θ into the task's
    cluster prompts, take ``update_step`` SGD steps (lr ``update_lr``) on all clusters at once (each
    copy only sees its own cluster's loss), then θ ← θ + β·(mean_{tasks,clusters} φ − θ)."""
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
    idx = active_neurons(feature_fn, 10, (c, h, w), g, device=dev)
    std = feature_fn(torch.randn(512, c, h, w, generator=ctx.generator(6)).to(dev)).std(0).cpu()
    act = float(len(set(idx.tolist()) ^ set(torch.topk(std, 10).indices.tolist())))
    return {"border_only_err": centre, "routing_err": routing, "reptile_err": rep, "active_neuron_err": act}


def _catalog_tasks(cfg: Config, ctx) -> tuple[Split, Split, Split, int, DatasetRef]:
    from suite.data.catalog import load_dataset

    sp = load_dataset(ctx, cfg.data, dry_run=ctx.dry_run)

    def prep(d) -> tuple[torch.Tensor, torch.Tensor]:
        x = d.x.float() / 255.0 if d.x.dtype == torch.uint8 else d.x.float()
        return x, d.y

    xt, yt = prep(sp["train"])
    xe, ye = prep(sp["test"])
    perm = torch.randperm(len(yt), generator=ctx.generator(3))
    nv = max(1, int(cfg.val_frac * len(yt)))
    none = lambda n: torch.full((n,), -1)  # noqa: E731
    return (Split(xt[perm[nv:]], yt[perm[nv:]], none(len(yt) - nv)), Split(xt[perm[:nv]], yt[perm[:nv]], none(nv)),
            Split(xe, ye, none(len(ye))), int(max(yt.max(), ye.max())) + 1, sp["train"].ref)


VIT_HOW = "convert timm vit_base_patch16_224 (IN-1k) to a suite ViT state_dict (suite.models.ViT) and put it there"
META_HOW = ("meta-train it (Reptile on SUN397, STL-10, Fru92, Veg200, Pets, EuroSAT) and torch.save the PadPrompts "
            "state_dict there, or set meta_prompt_file=''")


def _file(ctx, name: str, rel: str, how: str, write) -> Path:
    """``rel`` under the data root (or an absolute path), located like a paper file; without it, in a dry run or
    a rehearsal, ``write(path)`` makes the fixture."""
    if rel.startswith("/"):
        return Path(rel)
    f = Path(rel)
    folder, _ = locate(ctx, name, str(f.parent), [f.name], how, fixture=lambda d: write(d / f.name))
    return folder / f.name


def write_vit_fixture(path: Path, image_size: int) -> None:
    """A tiny random suite ViT of the ViT-B/16 family (patch 16, 64-wide head, 1000 classes), saved as the
    state_dict the full path loads (dry runs and rehearsals; stand-in)."""
    from suite.models import ViT

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(ViT(image_size=image_size, patch_size=16, num_classes=1000, dim=64, depth=2, heads=1).state_dict(),
               path)


def write_meta_prompt_fixture(path: Path, chw: tuple[int, int, int], pad: int) -> None:
    """A random meta-prompt: the state_dict of one pad prompter (PadPrompts(1, C, H, W, p)), as loaded below."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(PadPrompts(1, *chw, pad, generator=torch.Generator().manual_seed(0)).state_dict(), path)


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


@reproduction(
    track="clustering",
    paper=Paper(title="Diversity-Aware Meta Visual Prompting", authors="Qidong Huang, Xiaoyi Dong, Dongdong Chen, "
                "Weiming Zhang, Feifei Wang, Gang Hua, Nenghai Yu", year=2023, venue="CVPR",
                url="https://arxiv.org/abs/2303.08138", code="https://github.com/shikiw/DAM-VP"),
    config=Config,
    scales={
        "smoke": {},
        "small": {"backbone_epochs": 20, "epochs": 20, "meta_epochs": 30},
        "full": {"data": "cifar-100", "backbone": "vit_b16", "image_size": 224, "pad": 30, "head": "active",
                 "threshold": 31.0, "epochs": 50, "batch_size": 128, "meta_prompt_file": "dam_vp/meta_prompt_vit_b16_in1k.pt"},
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
    if cfg.head not in ("own", "active"):
        raise ConfigError(f"head={cfg.head!r} is unknown; use 'own' or 'active'")
    metrics: dict[str, float] = {}
    sources: dict[str, Split] = {}
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
        tr, va, te, n_cls, ref = _catalog_tasks(cfg, ctx)  # the loader's ref (name, provenance)
        net, notes["backbone"] = _vit_backbone(cfg, ctx)
        # raw 32 px images stay on the CPU; each batch is upsampled on the device (a 224 px copy of the split
        # would not fit in memory)
        pre = nn.Upsample(size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False)
        if ctx.dry_run:
            tr, va, te = (Split(s.x[:8], s.y[:8], s.domain[:8]) for s in (tr, va, te))
    dev = torch.device(ctx.device)
    net.eval().to(dev)
    for p in net.parameters():
        p.requires_grad_(False)
    c, h, w = pre(tr.x[:1]).shape[1:]  # the backbone's input (= the prompt's) resolution
    active = None
    if cfg.head == "active":
        active = active_neurons(net, n_cls, (c, h, w), ctx.generator(6), n=8 if ctx.dry_run else 512, device=dev)
    frozen = Frozen(net, active).to(dev)
    feats = lambda x: frozen.features(pre(x))  # noqa: E731  un-prompted features (routing, §7)
    sub = torch.randperm(len(tr.y), generator=ctx.generator(1))[: cfg.cluster_n]  # seeded subset (§7)
    u_sub = _batched(feats, tr.x[sub], device=dev)
    thr = cfg.threshold or cluster_threshold(u_sub, cfg.percentile)
    _, protos = diversity_clusters(u_sub, thr)
    m = len(protos)
    r_tr, r_va, r_te = (route(_batched(feats, s.x, device=dev), protos) for s in (tr, va, te))
    meta_path = None
    if cfg.meta_prompt_file:  # located before a dry run returns, so a dry run writes its fixture
        meta_path = _file(ctx, "dam-vp-meta-prompt", cfg.meta_prompt_file, META_HOW,
                          lambda f: write_meta_prompt_fixture(f, (c, h, w), cfg.pad))
        notes["meta_prompt"] = "random meta-prompt (fixture)" if "fixtures" in meta_path.parts else str(meta_path)
    if ctx.dry_run:
        Prompted(PadPrompts(m, c, h, w, cfg.pad), frozen, pre).to(dev)(tr.x[:2].to(dev), r_tr[:2].to(dev))
        return Outcome(metrics={}, dataset=ref)
    metrics.update(mechanics(frozen.features, u_sub, protos, pre(tr.x[:16]), cfg, ctx))
    metrics.update({"n_clusters": float(m), "cluster_threshold": thr})
    if (te.domain >= 0).any():  # how well the clusters follow the hidden domains
        from suite.metrics.clustering import nmi
        metrics["cluster_domain_nmi"] = nmi(te.domain.numpy(), r_te.numpy())
    metrics["noprompt_acc"] = _acc(_batched(lambda x: frozen(pre(x)), te.x, device=dev), te.y)
    # head tuning: linear head on the frozen features (paper's head-tuning / linear-probe baseline)
    f_tr, f_va, f_te = (_batched(feats, s.x, device=dev) for s in (tr, va, te))
    head = nn.Linear(f_tr.shape[1], n_cls)
    res = fit(head, lambda mdl, b: F.cross_entropy(mdl(b[0]), b[1]), (f_tr, tr.y),
              TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.head_lr, optimizer="sgd",
                          schedule="cosine", log_every=0, eval_every=-(-len(tr.y) // cfg.batch_size)), ctx=ctx,
              eval_fn=lambda mdl: {"val": _acc(_batched(mdl, f_va, device=dev), va.y),
                                   "test": _acc(_batched(mdl, f_te, device=dev), te.y)}, name="head")
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
        meta.load_state_dict(torch.load(meta_path, map_location="cpu", weights_only=True))
    else:
        meta = reptile(meta, sources, frozen, pre, cfg, ctx)
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
