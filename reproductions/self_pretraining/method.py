"""Self-pretraining (SPT) then fine-tuning, against training from scratch (spec §3).

Stage 1 (:func:`pretrain`): encoder + per-position decoder trained with the denoising objective on
the task's own TRAINING inputs only (no labels, no val/test): masked-token CE (tokens), and for
pixels (2-channel input) the task's ``lm_loss`` as in the official ``-mlm`` configs: CE over the 256
intensity classes of the masked pixels (Pathfinder, Path-X) or masked L1 (Image), :mod:`.masking`.
Stage 2 (:func:`finetune`): the pretrained encoder is transferred into a fresh classifier
(:func:`.encoders.transfer_encoder`, every tensor checked), decoder dropped, pooling (mean; per task at full) + linear
head, trained on labels. The scratch baseline runs the IDENTICAL fine-tuning recipe (same
TrainConfig, same minibatch order, same head init) from a random encoder (§7 "fair comparison").

``variant`` (broken on purpose, teeth): 'loss_all_positions' (MLM targets kept at unmasked positions) or
'reinit_encoder' (the classifier re-initialises the encoder instead of loading it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from suite.models.ssm import ssm_param_groups
from reproductions.self_pretraining.encoders import (Classifier, EncoderConfig, PretrainModel, build_encoder,
                                                     encoder_diff, transfer_encoder)
from reproductions.self_pretraining.masking import (PIXEL_CLASSES, mask_pixels, mask_tokens, masked_ce, masked_l1,
                                                    pixel_ce_targets)
from reproductions.self_pretraining.tasks import PAD_ID, TaskData, model_input, normalize_pixels
from suite.data import stream
from suite.data.stream import DiskSplit
from suite.errors import UnknownNameError
from suite.metrics import accuracy
from suite.train import DATA_ORDER_OFFSET, TrainConfig, fit

Variant = Literal["paper", "loss_all_positions", "reinit_encoder"]
VARIANTS = get_args(Variant)


@dataclass
class PhaseConfig:
    """One training phase (pretraining or fine-tuning): ``steps`` or ``epochs``; AdamW with linear
    warmup then ``schedule``. No gradient clipping by default: the official ``configs/trainer/default.yaml``
    has ``gradient_clip_val: 0.0`` and no LRA experiment file of the official code sets it."""

    steps: int | None = 1500
    epochs: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    grad_clip: float | None = None  # official gradient_clip_val 0.0 (none)
    checkpoint_every: int = 0  # steps (0: no checkpoints); full scale: once per epoch
    workers: int = 0  # reader processes of a split streamed from disk (on CUDA)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           optimizer="adamw", weight_decay=self.weight_decay, warmup_steps=self.warmup_steps,
                           schedule=self.schedule, grad_clip=self.grad_clip, log_every=100,
                           checkpoint_every=self.checkpoint_every)


def crop_pad(x: torch.Tensor) -> torch.Tensor:
    """Drop trailing columns that are padding in every row of the batch (exact: padding is masked)."""
    used = (x != PAD_ID).reshape(-1, x.shape[-1]).any(0).nonzero()
    return x[..., : int(used.max()) + 1] if len(used) else x[..., :1]


def encoder_config(task: TaskData, base: EncoderConfig, pretraining: bool) -> EncoderConfig:
    """The task's encoder config: vocab (with ``<mask>``) or input channels (2 while pretraining
    pixels: value and mask flag, 1 while fine-tuning; spec §3)."""
    d_input = 2 if (task.kind == "pixels" and pretraining) else 1
    vocab = task.vocab if task.kind == "tokens" else 0
    return EncoderConfig(**{**base.__dict__, "vocab": vocab, "d_input": d_input,
                            "max_len": max(base.max_len, task.seq_len)})


def _pretrain_inputs(task: TaskData) -> torch.Tensor | DiskSplit:
    x = task.x_train  # training split only (spec §7)
    if isinstance(x, DiskSplit):
        if not task.dual:
            return x
        docs = x.x.reshape(-1, x.x.shape[-1])  # both documents of a pair: a view of the same file
        rows = np.stack([2 * x.rows, 2 * x.rows + 1], 1).reshape(-1)
        return DiskSplit(docs, x.y.repeat_interleave(2), x.ref, rows=rows)
    return x.reshape(-1, x.shape[-1]) if task.dual else x  # both documents of a pair


def _head(x: torch.Tensor | DiskSplit, n: int) -> torch.Tensor:
    """The first ``n`` inputs (a DiskSplit's read from disk, as the model reads them)."""
    return model_input(stream.head(x, n)[0]) if isinstance(x, DiskSplit) else x[:n]


def _fit_data(data: Any, ph: PhaseConfig, ctx) -> tuple[Any, torch.Generator | None]:
    """What ``fit`` draws batches from: in-memory tensors as they are; a DiskSplit through a
    ``stream.loader`` (workers, pinned memory on CUDA) ordered by the fit's data-order generator."""
    if not isinstance(data, DiskSplit):
        return data, None
    gen = ctx.generator(DATA_ORDER_OFFSET)
    return stream.EpochLoader(data, ph.batch_size, gen, **stream.loader_options(ctx.device, ph.workers)), gen


def _clean(b: Any) -> torch.Tensor:
    """The inputs of a pretraining batch: a tensor, or the x of a streamed (x, y) batch."""
    return b[0] if isinstance(b, (tuple, list)) else b


def decoder_outputs(task: TaskData) -> int:
    """Outputs per position of the pretraining decoder: the vocabulary (tokens), the 256 intensity classes
    (pixels with ``lm_loss='ce'``, official ``PathFinderLM.d_output``) or one value (pixels with L1)."""
    if task.kind == "tokens":
        return task.vocab
    return PIXEL_CLASSES if task.lm_loss == "ce" else 1


def denoising_loss(model: PretrainModel, x: torch.Tensor, task: TaskData, p: float,
                   variant: str = "paper", generator: torch.Generator | None = None) -> torch.Tensor:
    """Masked-LM CE (tokens), masked intensity-class CE (pixels, ``lm_loss='ce'``) or masked L1 (pixels,
    ``lm_loss='l1'``) of one batch of clean inputs ``x`` (§3 stage 1; the official ``-mlm`` configs)."""
    all_pos = variant == "loss_all_positions"
    x = model_input(x)
    if task.kind == "tokens":
        x = crop_pad(x)
        inp, tgt, _ = mask_tokens(x, p, task.mask_id, PAD_ID, generator, loss_on_all_positions=all_pos)
        return masked_ce(model(inp, x != PAD_ID), tgt)
    # Pathfinder / Path-X: official PathFinderLMDataset normalises to [-1, 1] before masking (masked pixels read 0);
    # the CE targets are the classes of the raw pixels (``sample_classes`` taken before the normalisation)
    inp, tgt, m = mask_pixels(normalize_pixels(x) if task.normalize else x, p, generator)
    if task.lm_loss == "ce":  # official lm_loss: ce (Pathfinder, Path-X): target (pixel * 255).long() at masked pixels
        return masked_ce(model(inp), pixel_ce_targets(x, m, loss_on_all_positions=all_pos))
    return masked_l1(model(inp).squeeze(-1), tgt, m, loss_on_all_positions=all_pos)


def _groups(model: nn.Module, ph: PhaseConfig) -> list[dict]:
    return ssm_param_groups(model, ph.lr, ph.weight_decay)  # S4D: SSM params own lr, no decay


def pretrain(task: TaskData, enc_cfg: EncoderConfig, ph: PhaseConfig, p: float, ctx, name: str, seed: int,
             variant: str = "paper", eval_n: int = 256) -> tuple[nn.Module, dict[str, float]]:
    """Stage 1: returns the pretrained encoder and the masked loss on a fixed masked batch of
    training inputs before and after pretraining (same mask both times)."""
    enc = build_encoder(encoder_config(task, enc_cfg, pretraining=True), seed)
    model = PretrainModel(enc, decoder_outputs(task)).to(ctx.device)
    x = _pretrain_inputs(task)
    probe = _head(x, eval_n).to(ctx.device)

    def probe_loss() -> float:
        model.eval()
        with torch.no_grad():
            v = float(denoising_loss(model, probe, task, p, "paper", torch.Generator().manual_seed(seed + 7)))
        model.train()
        return v

    before = probe_loss()
    data, gen = _fit_data(x, ph, ctx)
    res = fit(model, lambda m, b: denoising_loss(m, _clean(b), task, p, variant), data, ph.train_config(),
              ctx=ctx, param_groups=_groups(model, ph), name=name, generator=gen)
    after = probe_loss()
    ctx.log("%s: masked loss %.4f -> %.4f (%d steps)", name, before, after, res.step)
    return enc, {"loss_before": before, "loss_after": after, "steps": float(res.step)}


@torch.no_grad()
def evaluate(model: Classifier, x: torch.Tensor | DiskSplit, y: torch.Tensor, batch_size: int = 256) -> float:
    """Test accuracy, batched (a DiskSplit read batch by batch)."""
    model.eval()
    dev = next(model.parameters()).device
    if isinstance(x, DiskSplit):
        chunks = (xb for xb, _ in stream.batches(x, batch_size))
    else:
        chunks = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    preds = [model(_prep(xb.to(dev), model)).argmax(-1).cpu() for xb in chunks]
    model.train()
    return accuracy(torch.cat(preds), y)


def _prep(x: torch.Tensor, model: Classifier) -> torch.Tensor:
    x = model_input(x)
    if model.encoder.cfg.vocab > 0:
        return crop_pad(x)
    if model.normalize:  # Pathfinder / Path-X: [-1, 1] as the official PathFinder loader
        x = normalize_pixels(x)
    return x.unsqueeze(-1)


def make_classifier(task: TaskData, enc_cfg: EncoderConfig, seed: int, pretrained: nn.Module | None,
                    variant: str = "paper") -> tuple[Classifier, dict[str, float]]:
    """Stage 2 model. ``pretrained`` None: scratch (random encoder from ``seed``). Otherwise the
    pretrained encoder is transferred; the head is initialised from ``seed`` in both cases."""
    enc = build_encoder(encoder_config(task, enc_cfg, pretraining=False), seed)
    info: dict[str, float] = {}
    if pretrained is not None:
        if variant != "reinit_encoder":  # the broken variant keeps the random encoder
            info = transfer_encoder(pretrained, enc)
        info["transfer_max_abs_diff"] = encoder_diff(pretrained, enc)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        clf = Classifier(enc, task.n_classes, task.pad_id, task.dual, task.normalize)
    return clf, info


def finetune(clf: Classifier, task: TaskData, ph: PhaseConfig, ctx, name: str,
             train_idx: torch.Tensor | None = None) -> dict[str, float]:
    """Stage 2 (identical for scratch and SPT): CE on labels, then test accuracy."""
    x, y = task.x_train, task.y_train
    if train_idx is not None:
        x, y = (x.subset(train_idx) if isinstance(x, DiskSplit) else x[train_idx]), y[train_idx]
    ce = nn.CrossEntropyLoss()
    data, gen = _fit_data(x, ph, ctx) if isinstance(x, DiskSplit) else ((x, y), None)
    res = fit(clf, lambda m, b: ce(m(_prep(b[0], m)), b[1]), data, ph.train_config(), ctx=ctx,
              param_groups=_groups(clf, ph), name=name, generator=gen)
    acc = evaluate(clf, task.x_test, task.y_test, batch_size=max(ph.batch_size, 256 if task.seq_len <= 256 else 0))
    last = res.history[-1]["loss"] if res.history else float("nan")
    ctx.log("%s: test acc %.4f (final train loss %.4f)", name, acc, last)
    return {"acc": acc, "train_loss": last}


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UnknownNameError(f"unknown variant {variant!r}; use one of {VARIANTS}")


__all__ = ["VARIANTS", "Variant", "PhaseConfig", "crop_pad", "encoder_config", "decoder_outputs", "denoising_loss", "pretrain", "evaluate", "_prep",
           "make_classifier", "finetune", "check_variant"]
