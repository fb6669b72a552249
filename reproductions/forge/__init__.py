"""forge: FORGE, Foundational Optimization Representations from Graph Embeddings (Shafi & Kadıoğlu 2025).

One run: (1) MIP instances → bipartite graphs (spec §3); (2) mechanics checks of §6 (features, edges,
EMA update, histogram); (3) unsupervised pre-training of the VQ graph autoencoder (no solver, C3);
(4) instance embeddings = code-usage histograms of unseen instances; (5) the track's clustering
protocol (k-means, k = #types; ACC/NMI/ARI) on FORGE and on the §4 baselines in the same job:
the same encoder at random init, hand-crafted statistics, and a GNN autoencoder without VQ
(mean-pooled); (6) optional codebook-size ablation (C1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from reproductions.forge.data import HOW, LISTS, SUBDIR, InstanceSet, generated, on_disk, write_fixture
from reproductions.forge.instance import Graph, bipartite_graph, instance_statistics, relax
from reproductions.forge.method import (Forge, ForgeArch, Variant, VectorQuantizer, code_perplexity, embed,
                                        forge_loss, reconstruction_losses)
from suite.config import Range
from suite.errors import ConfigError
from suite.metrics.clustering import ari, clustering_accuracy, nmi
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources, curve_metrics
from suite.train import TrainConfig, fit


@dataclass
class Config:
    source: str = "generated"  # "generated" (CPU protocol, §6) | "disk" (MPS lists under the data root, §5)
    types: tuple[str, ...] = ("setcover", "cauction", "indset", "facility", "knapsack")
    n_train: Annotated[int, Range(1)] = 4  # per type
    n_test: Annotated[int, Range(1)] = 2  # per type (half at training sizes, half at the unseen larger size)
    # generated data: type overlap (size jitter 2^±noise, fraction of rows/vars randomised)
    noise: Annotated[float, Range(0, 1)] = 0.0
    max_nodes: Annotated[int, Range(1)] = 100_000  # skip larger graphs (§3)
    hidden: Annotated[int, Range(1)] = 64
    codebook: Annotated[int, Range(1)] = 128
    dropout: Annotated[float, Range(0, 1, open_hi=True)] = 0.1
    edge_dim: Annotated[int, Range(1)] = 32
    vq_decay: Annotated[float, Range(0, 1)] = 0.8
    commitment: Annotated[float, Range(0)] = 0.25
    pos_edge_weight: Annotated[float, Range(0)] = 5.0  # weight of existing edges in L_edge (spec: "extra weight")
    edge_norm: str = "minmax"  # edge weights: "minmax" (official: min-max + 1e-4, all equal → 1e-4) | "maxabs"
    # pre-training augmentation (official scripts/pretrain.py `relaxation_list`): per instance, one copy per
    # ratio with int(m·ratio) random constraints removed, placed right after the instance
    relaxations: tuple[Annotated[float, Range(0, 1, open_hi=True)], ...] = (0.05, 0.01)
    shuffle: bool = False  # False: official order (list order every epoch); True: seeded reshuffle per epoch
    epochs: Annotated[int, Range(1)] = 1
    steps_per_instance: Annotated[int, Range(1)] = 5
    lr: Annotated[float, Range(0, open_lo=True)] = 1e-3  # CPU protocol; the paper (full) uses 1e-4
    weight_decay: Annotated[float, Range(0)] = 1e-4
    novq_baseline: bool = True
    # extra pre-trainings, one per codebook size (C1 ablation)
    ablation_codebooks: tuple[Annotated[int, Range(1)], ...] = ()
    kmeans_init: Annotated[int, Range(1)] = 10
    kmeans_fits: Annotated[int, Range(1)] = 10  # scores averaged over this many k-means fits (official notebook)
    variant: Variant = "paper"  # broken (teeth): "swapped_ema" (EMA weights swapped), "untrained" (no pre-training)


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"acc": clustering_accuracy(y, pred), "nmi": nmi(y, pred), "ari": ari(y, pred)}


def cluster(emb: np.ndarray, k: int, seed: int, n_init: int, kind: str) -> np.ndarray:
    """k-means on L1-normalised histograms (kind="hist") or z-scored vectors (kind="z"); one fit."""
    from sklearn.cluster import KMeans

    if kind == "hist":
        x = emb / np.maximum(emb.sum(1, keepdims=True), 1e-12)
    else:
        x = (emb - emb.mean(0)) / np.maximum(emb.std(0), 1e-12)
    return KMeans(k, n_init=n_init, random_state=seed).fit_predict(x)


def fits(emb: np.ndarray, k: int, seed: int, cfg: Config, kind: str) -> list[np.ndarray]:
    """``cfg.kmeans_fits`` k-means fits (seeds ``seed·1000 + i``); the official notebook averages NMI over 10."""
    return [cluster(emb, k, seed * 1000 + i, cfg.kmeans_init, kind) for i in range(cfg.kmeans_fits)]


def mean_scores(y: np.ndarray, preds: list[np.ndarray]) -> dict[str, float]:
    """ACC / NMI / ARI, each averaged over the fits ``preds``."""
    per = [_scores(y, p) for p in preds]
    return {m: float(np.mean([d[m] for d in per])) for m in per[0]}


def mechanics(graphs: list[Graph], insts, cfg: Config) -> dict[str, float]:
    """Spec §6 smoke assertions as measurements: feature one-hots/range, edge symmetry and count,
    and the EMA update on a hand example."""
    viol, asym = 0, 0
    for g, inst in zip(graphs, insts):
        x, m = g.x, g.m
        c, v = x[:m], x[m:]
        viol += int((x < 0).sum() + (x > 1).sum())
        viol += int(((c[:, :3].sum(1) - 1).abs() > 1e-6).sum() + (c[:, 4:] != 0).sum())
        viol += int(((v[:, 4:7].sum(1) - 1).abs() > 1e-6).sum() + (v[:, :4] != 0).sum())
        viol += int(x.shape != (inst.m + inst.n, 10))
        n_nodes = m + g.n
        fwd = g.edge_index[0] * n_nodes + g.edge_index[1]
        rev = g.edge_index[1] * n_nodes + g.edge_index[0]
        asym += int((~torch.isin(fwd, rev)).sum()) + abs(g.edge_index.shape[1] - 2 * len(inst.vals))
    return {"feature_violations": float(viol), "edge_asymmetry": float(asym), "ema_update_err": ema_check(cfg)}


def ema_check(cfg: Config) -> float:
    """Max |EMA result − (decay·old + (1−decay)·assigned mean)| on a hand example (spec §6)."""
    vq = VectorQuantizer(3, 2, cfg.vq_decay, cfg.commitment, cfg.variant).train()
    old = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 5.0]])
    vq.codebook.copy_(old)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 11.0], [11.0, 9.0], [12.0, 12.0]])
    vq(z)
    d = cfg.vq_decay
    want = old.clone()
    want[0] = d * old[0] + (1 - d) * torch.tensor([0.5, 0.5])
    want[1] = d * old[1] + (1 - d) * torch.tensor([32.0 / 3, 32.0 / 3])  # code 2 unused: unchanged
    return float((vq.codebook - want).abs().max())


def pretraining_set(insts: list, cfg: Config, seed: int) -> list:
    """The pre-training list: each instance followed by its relaxed copies, one per ``cfg.relaxations``
    ratio (official `relaxation_list` = 0.05, 0.01; one RNG drawn in list order, as the official processor)."""
    rng = np.random.default_rng(seed * 1_000_003 + 700)
    out = []
    for inst in insts:
        out.append(inst)
        out += [r for r in (relax(inst, ratio, rng) for ratio in cfg.relaxations) if r is not None]
    return out


def _to(g: dict, dev: torch.device) -> dict:
    return {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in g.items()}


def pretrain(model: Forge, graphs: list[dict], cfg: Config, ctx, name: str) -> None:
    """§3 loop: for each epoch (λ by parity), for each instance in list order (the official code does not
    shuffle; ``shuffle=True``: seeded reshuffle per epoch), ``steps_per_instance`` Adam steps on that single
    graph. ``graphs`` may stay on the CPU (the pre-training list with its relaxed copies is large at full
    scale): the current one is moved to ``ctx.device`` once per instance, as the official loop does."""
    n, s = len(graphs), cfg.steps_per_instance
    dev, cur = torch.device(ctx.device), {}
    orders = [torch.randperm(n, generator=ctx.generator(500 + e)) if cfg.shuffle else torch.arange(n)
              for e in range(cfg.epochs)]

    def batch(step: int) -> dict:
        e, r = divmod(step, n * s)
        i = int(orders[e][r // s])
        if cur.get("i") != i:
            cur.clear()
            cur.update(i=i, g=_to(graphs[i], dev))
        return {**cur["g"], "epoch": e}

    tc = TrainConfig(steps=cfg.epochs * n * s, lr=cfg.lr, optimizer="adam", weight_decay=cfg.weight_decay,
                     log_every=n * s)
    fit(model, lambda mdl, b: forge_loss(mdl, b, b["epoch"], cfg.pos_edge_weight)[0], batch, tc, ctx=ctx, name=name)


@torch.no_grad()
def recon_loss(model: Forge, graphs: list[dict], cfg: Config) -> float:
    """Mean L_node + L_edge over ``graphs`` in eval mode (a fixed yardstick for 'loss decreases')."""
    model.eval()
    dev = next(model.parameters()).device
    tot = 0.0
    for g in graphs:
        g = _to(g, dev)
        q, _, _ = model(g)
        ln, le = reconstruction_losses(model, q, g, pos_weight=cfg.pos_edge_weight)
        tot += float(ln + le)
    model.train()
    return tot / len(graphs)


def _arch(cfg: Config, codebook: int | None = None, quantize: bool = True) -> ForgeArch:
    return ForgeArch(cfg.hidden, codebook or cfg.codebook, cfg.dropout, cfg.edge_dim, cfg.vq_decay, cfg.commitment,
                     quantize, cfg.variant)


def _instances(cfg: Config, ctx) -> tuple[InstanceSet, DatasetRef]:
    """The instance set and its ref: generated here (stand-in), or the MPS lists under the data root
    located by ``suite.data.external.locate`` (which sets the provenance; fixtures in a dry run)."""
    if cfg.source == "generated":
        return (generated(cfg.types, cfg.n_train, cfg.n_test, ctx.seed, cfg.noise),
                DatasetRef("forge-generated-mips", "stand-in"))
    if cfg.source != "disk":
        raise ConfigError(f"source={cfg.source!r} is unknown; use 'generated' or 'disk'")
    from suite.data.external import locate

    root, ref = locate(ctx, "forge-mps", SUBDIR, LISTS, HOW, fixture=write_fixture)
    return on_disk(root, cfg.max_nodes, ctx.log), ref


@reproduction(
    track="clustering",
    paper=Paper(title="FORGE: Foundational Optimization Representations from Graph Embeddings",
                authors="Zohair Shafi, Serdar Kadıoğlu", year=2025, venue="arXiv 2508.20330 (TMLR 2026)",
                url="https://arxiv.org/abs/2508.20330", code="https://github.com/skadio/forge"),
    config=Config,
    scales={
        "smoke": {},
        "small": {"n_train": 20, "n_test": 10, "noise": 0.5, "epochs": 5, "steps_per_instance": 5,
                  "ablation_codebooks": (16, 512)},
        "full": {"source": "disk", "hidden": 1024, "codebook": 5000, "dropout": 0.4, "epochs": 10,
                 "steps_per_instance": 10, "lr": 1e-4, "weight_decay": 1e-4,
                 "ablation_codebooks": (500, 1000, 2500, 10000)},
    },
    claims=[
        Claim(id="features-onehot", text="§6: features (m+n)×10, correct one-hot columns, values in [0,1]",
              metric="feature_violations", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="edges-symmetric", text="§6: edge list symmetric with 2·nnz(A) entries",
              metric="edge_asymmetry", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="ema-update", text="§6: EMA codebook update = 0.8·old + 0.2·assigned mean (hand example)",
              metric="ema_update_err", op="<=", ref=1e-6, scales=("smoke", "small", "full"), kind="check",
              teeth="swapped_ema"),
        Claim(id="histogram-sums", text="§6: each instance histogram sums to m+n",
              metric="hist_sum_err", op="<=", ref=0.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="recon-decreases", text="§6/C3: label-free pre-training lowers the reconstruction loss",
              metric="recon_loss_ratio", op="<", ref=1.0, scales=("smoke", "small", "full"), kind="check"),
        Claim(id="pretrained-margin", text="C1 (spec §6): NMI (k = #types) of pre-trained code histograms ≥ the "
              "same encoder at random init + 0.1", metric="nmi_gain_over_random", op=">=", ref=0.1,
              scales=("small", "full"), kind="paper", teeth="untrained"),
        Claim(id="clusters-by-type", text="C1: unseen instances (incl. an unseen larger size) cluster by type, "
              "NMI ≥ 0.75 (level calibrated on seeds 100-102 of the overlapping-types preset, README)",
              metric="forge_nmi", op=">=", ref=0.75, scales=("small",), kind="paper", teeth="untrained"),
        Claim(id="no-codebook-collapse", text="§7: code perplexity on test instances ≥ #types (random init: ≈2)",
              metric="perplexity_over_types", op=">=", ref=1.0, scales=("small", "full"), kind="check"),
    ],
    plots=[Plot(name="codebook-ablation", x="codebook", ys=("forge_nmi",), title="C1: NMI vs codebook size",
                logx=True, ylabel="NMI")],
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2), "small": Resources(cpus=2, mem_gb=2, time_min=10),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=2880)},
)
def run(cfg: Config, ctx) -> Outcome:
    data, ref = _instances(cfg, ctx)
    dev = torch.device(ctx.device)
    tr_i = pretraining_set(data.train, cfg, ctx.seed)  # instances + relaxed copies, in training order
    tr_g = [bipartite_graph(i, cfg.edge_norm) for i in tr_i]
    te_g = [bipartite_graph(i, cfg.edge_norm) for i in data.test]
    train = [g.as_batch() for g in tr_g]  # on the CPU; pretrain / recon_loss move one graph at a time
    test = [_to(g.as_batch(), dev) for g in te_g]
    model = Forge(_arch(cfg))
    if ctx.dry_run:  # build everything, one loss evaluation, no training
        forge_loss(model.to(dev), _to(train[0], dev), 0, cfg.pos_edge_weight)
        return Outcome(metrics={}, dataset=ref)
    y, k = data.test_labels, len(data.label_names)
    metrics = mechanics(tr_g + te_g, tr_i + data.test, cfg)
    ctx.log(f"forge: {len(train)} pre-training graphs ({len(data.train)} instances + relaxed copies) / "
            f"{len(test)} test instances, k={k}")

    yg = data.test_groups
    kg = len(np.unique(yg))

    def evaluate(prefix: str, emb: np.ndarray, kind: str) -> None:
        preds = fits(emb, k, ctx.seed, cfg, kind)
        metrics.update({f"{prefix}_{m}": v for m, v in mean_scores(y, preds).items()})
        if data.test_unseen.any():
            u = data.test_unseen
            metrics[f"{prefix}_unseen_nmi"] = float(np.mean([nmi(y[u], p[u]) for p in preds]))
        if kg > k:  # finer protocol: type × size groups, k = #groups
            pgs = fits(emb, kg, ctx.seed, cfg, kind)
            metrics.update({f"{prefix}_group_{m}": v for m, v in mean_scores(yg, pgs).items()})

    model.to(dev)
    hist0 = embed(model, test)
    evaluate("random", hist0, "hist")
    before = recon_loss(model, train, cfg)
    if cfg.variant != "untrained":  # broken variant: the encoder stays at its random init
        pretrain(model, train, cfg, ctx, name="forge")
    after = recon_loss(model, train, cfg)
    hist = embed(model, test)
    evaluate("forge", hist, "hist")
    sizes = np.asarray([g["m"] + g["n"] for g in test])
    metrics["hist_sum_err"] = float(np.abs(hist.sum(1) - sizes).max())
    metrics.update({"recon_loss_before": before, "recon_loss_after": after, "recon_loss_ratio": after / before})
    metrics["code_perplexity"], metrics["codes_used"] = code_perplexity(hist)
    metrics["random_code_perplexity"] = code_perplexity(hist0)[0]
    metrics["perplexity_over_types"] = metrics["code_perplexity"] / k
    metrics["nmi_gain_over_random"] = metrics["forge_nmi"] - metrics["random_nmi"]
    evaluate("stats", np.stack([instance_statistics(i) for i in data.test]), "z")
    if cfg.novq_baseline:
        torch.manual_seed(ctx.seed)
        ae = Forge(_arch(cfg, quantize=False)).to(dev)
        pretrain(ae, train, cfg, ctx, name="novq")
        evaluate("novq", embed(ae, test), "z")
    nmis = {cfg.codebook: metrics["forge_nmi"]}
    for size in cfg.ablation_codebooks:
        torch.manual_seed(ctx.seed)
        mdl = Forge(_arch(cfg, codebook=size)).to(dev)
        pretrain(mdl, train, cfg, ctx, name=f"codebook{size}")
        nmis[size] = mean_scores(y, fits(embed(mdl, test), k, ctx.seed, cfg, "hist"))["nmi"]
    xs = sorted(nmis)
    metrics.update(curve_metrics("forge_nmi", "codebook", xs, [nmis[x] for x in xs]))
    return Outcome(metrics=metrics, dataset=ref)
