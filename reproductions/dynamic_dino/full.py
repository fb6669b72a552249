"""Full scale (README): the mechanism on an open model read from disk, since the paper's base detector
(Grounding DINO 1.5 Edge) and its data (Grounding20M) are closed. A Hugging Face ViT image classifier
(``save_pretrained`` folder ``<data root>/<model_dir>``) is tuned on CIFAR-100 (python pickle batches under
the data root, via the suite catalog) in the arms of the small path (``experiment.tune_arms``, shared code):
dense tuning, MoE-Tuning (N copies, granularity k, top-k; spec §3), the coarse MoE (k = 1, top-1; C2) and the
MoE with random experts (no pre-trained weight allocation; C3), each a copy of the same pretrained ViT, at equal
activated FFN parameters, on the same batches for the same steps, read out at step 0, after the first fifth of
tuning and at the end. On the real ViT: step-0 logits of the MoE vs the dense model (C3), the router gradient
of one backward, routing statistics per layer (C4). The toy FFN and real-MiniLM function-preservation checks
run on the CPU exactly as at small scale (spec §6).
``--dry-run`` builds every arm on a tiny random ViT and the catalog's CIFAR fixture, without training.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.context import RunContext
from suite.data import load_dataset
from suite.data.external import locate
from suite.errors import ConfigError
from suite.spec import Outcome

from . import experiment as E
from . import method as M

MODEL_HOW = ("fine-tune an open ViT classifier (e.g. google/vit-base-patch16-224) on CIFAR-100 and save it with "
             "transformers' save_pretrained into <data root>/<model_dir>")
EVAL_BATCH = 256  # test images per forward in the accuracy read-outs (memory only; the numbers do not depend on it)
OPTIMIZER, WEIGHT_DECAY = "adamw", 0.01  # the full tuning recipe: torch AdamW with its default decay


class Classifier(nn.Module):
    """A HF image classifier on raw CIFAR images, with the suite ViT's interface (images -> logits), so the
    small path's ``train`` / ``predict`` / ``router_grad`` run it unchanged: uint8 (B, 3, 32, 32) is scaled to
    [0, 1], resized on the model's device to its input size and normalised with mean = std = 0.5 (the ViT
    image processor's)."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(pixel_values=(x - 0.5) / 0.5).logits


def _model(cfg: Any, ctx: RunContext, n_classes: int) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    def tiny(folder: Path) -> None:
        c = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, num_labels=n_classes)
        ViTForImageClassification(c).save_pretrained(folder)

    folder, _ = locate(ctx, "vit-model", cfg.model_dir, ["config.json"], MODEL_HOW, fixture=tiny)
    # MoE-Tuning starts from a dense model trained on its task (the paper converts a trained detector, §3): a
    # classifier head of another label set would be re-initialised, every arm would start at chance and the
    # step-0 comparisons (C3) would compare nothing. So the checkpoint must already classify the n classes.
    got = ViTConfig.from_pretrained(folder).num_labels
    if got != n_classes:
        raise ConfigError(f"{folder} classifies {got} labels, not the {n_classes} of {cfg.full_dataset}: "
                          f"save a ViT fine-tuned on {cfg.full_dataset} there ({MODEL_HOW})")
    return ViTForImageClassification.from_pretrained(folder)


def tuning(cfg: Any) -> E.Tuning:
    """The full tuning budget; the "early" read-out is the first of ``eval_points`` evaluations (step
    ``full_steps // eval_points``), as ``acc_early`` at small scale."""
    return E.Tuning(cfg.full_steps, cfg.full_batch, cfg.full_lr, cfg.balance, cfg.balance_warmup, cfg.eval_points,
                    optimizer=OPTIMIZER, weight_decay=WEIGHT_DECAY, eval_batch=EVAL_BATCH)


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    sp = load_dataset(ctx, cfg.full_dataset)
    tr, te = sp["train"], sp["test"]  # uint8 (N, 3, 32, 32) as stored; resized per batch on the device
    n_classes = int(max(int(tr.y.max()), int(te.y.max())) + 1)
    net = _model(cfg, ctx, n_classes)
    base = Classifier(net, int(net.config.image_size)).to(ctx.device)
    if ctx.dry_run:  # every arm's conversion builds on the real model; nothing trains
        for name, spec in E.arm_specs(cfg).items():
            if spec is not None:
                M.convert(copy.deepcopy(base), spec, ctx.generator(20 + len(name)))
        return Outcome(metrics={}, dataset=tr.ref)
    n = min(cfg.full_eval, len(te.y))
    m = E.toy_checks(cfg, ctx)
    m.update(E.tune_arms(cfg, ctx, base, tr.x, tr.y, te.x[:n], te.y[:n], tuning(cfg), ctx.log))
    mini = E.minilm_checks(cfg, ctx, ctx.log)
    m.update(mini)
    return Outcome(metrics=m, dataset=tr.ref, metric_datasets={k: E.MINILM_REF for k in mini},
                   notes={"minilm_weights": E.MINILM_WEIGHTS if cfg.minilm else None})
