"""Full scale (README): the mechanism on an open model read from disk, since the paper's base detector
(Grounding DINO 1.5 Edge) and its data (Grounding20M) are closed. A Hugging Face ViT image classifier
(``save_pretrained`` folder ``<data root>/<model_dir>``) is tuned on CIFAR-100 (python pickle batches under
the data root, via the suite catalog): dense tuning vs MoE-Tuning (N copies, granularity k, top-k) at
equal activated FFN parameters and equal steps; step-0 equality and routing statistics per layer.
``--dry-run`` builds everything on a tiny random ViT and the catalog's CIFAR fixture, without training.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.data import load_dataset
from suite.data.external import locate
from suite.spec import Outcome

from . import method as M

MODEL_HOW = ("save an open ViT classifier with transformers' save_pretrained (e.g. google/vit-base-patch16-224) "
             "into <data root>/<model_dir>")


def _model(cfg: Any, ctx: RunContext, n_classes: int) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    def tiny(folder: Path) -> None:
        c = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, num_labels=n_classes)
        ViTForImageClassification(c).save_pretrained(folder)

    folder, _ = locate(ctx, "vit-model", cfg.model_dir, ["config.json"], MODEL_HOW, fixture=tiny)
    return ViTForImageClassification.from_pretrained(folder, num_labels=n_classes, ignore_mismatched_sizes=True)


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    sp = load_dataset(ctx, cfg.full_dataset)
    tr, te = sp["train"], sp["test"]
    n_classes = int(max(int(tr.y.max()), int(te.y.max())) + 1)
    base = _model(cfg, ctx, n_classes).to(ctx.device)
    size = base.config.image_size
    spec = M.spec_for(cfg.variant, cfg.n_copies, cfg.granularity, cfg.delta, cfg.router_noise)
    moe = copy.deepcopy(base)
    M.convert(moe, spec, ctx.generator(20))
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=tr.ref)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(ctx.device).float()
        x = x / 255.0 if x.max() > 1.5 else x
        return (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) - 0.5) / 0.5

    @torch.no_grad()
    def acc(model: torch.nn.Module, rec: M.RoutingRecorder | None = None) -> float:
        model.eval()
        n = min(cfg.full_eval, len(te.y))
        hit = 0
        for i in range(0, n, 256):
            logits = model(pixel_values=prep(te.x[i:i + 256])).logits
            hit += int((logits.argmax(1).cpu() == te.y[i:i + 256]).sum())
            if rec is not None:
                rec.grab()
        return 100.0 * hit / n

    m: dict[str, float] = {"moe_activated_ratio": M.param_counts(moe)["ffn_activated"] / M.param_counts(base)["ffn_activated"]}
    gen = ctx.generator(9001)
    for name, model in (("dense", base), ("moe", moe)):
        m[f"{name}_acc0"] = acc(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.full_lr)
        t0 = time.perf_counter()
        model.train()
        for step in range(cfg.full_steps):  # the same batches for both (same generator seed)
            idx = torch.randint(len(tr.y), (cfg.full_batch,), generator=gen)
            loss = F.cross_entropy(model(pixel_values=prep(tr.x[idx])).logits, tr.y[idx].to(ctx.device))
            if name == "moe" and cfg.balance > 0:
                loss = loss + cfg.balance * min(1.0, (step + 1) / max(1, cfg.balance_warmup)) * M.balance_loss(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
        m[f"{name}_train_s"], m[f"{name}_steps"] = time.perf_counter() - t0, float(cfg.full_steps)
        rec = M.RoutingRecorder(model) if name == "moe" else None
        m[f"{name}_acc"] = acc(model, rec)
        if rec is not None:
            st = rec.stats(cfg.partners)
            for i, s in enumerate(st):
                for k, v in s.items():
                    m[f"moe_route/layer{i}/{k}"] = v
            m["moe_partner_trend"] = st[-1]["partner_share"] - st[0]["partner_share"]
        gen = ctx.generator(9001)
    m["step0_abs_drop"] = abs(m["dense_acc0"] - m["moe_acc0"])
    m["moe_vs_dense"] = m["moe_acc"] - m["dense_acc"]
    return Outcome(metrics=m, dataset=tr.ref)
