"""The protocols: mechanics checks (spec §6 smoke), ListOps-mini / sDigits scratch vs SPT (§6
small, C1/C5) and the LRA tasks (§5, full)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from suite.models.ssm import SSMConfig, ssm_param_groups
from reproductions.self_pretraining.encoders import EncoderConfig, PretrainModel, build_encoder
from reproductions.self_pretraining.masking import IGNORE, mask_pixels, mask_tokens
from reproductions.self_pretraining.method import (PhaseConfig, _head, _prep, decoder_outputs, denoising_loss,
                                                   encoder_config, finetune, make_classifier, pretrain)
from reproductions.self_pretraining.tasks import LRA_TASKS, PAD_ID, TaskData, listops_mini, load_lra, sdigits
from suite.data.stream import DiskSplit
from suite.errors import ConfigError
from suite.spec import DatasetRef
from suite.train import TrainConfig, optimizer


# --------------------------------------------------------------------------- mechanics (§6 smoke)

def mechanics(cfg, ctx) -> dict[str, float]:
    """Mask-rate, ignore-index, <mask>-id and pixel-channel checks on ``cfg.mech_tokens`` tokens,
    through the same masking calls (and ``variant``) as pretraining."""
    g = ctx.generator(3)
    rows = max(1, cfg.mech_tokens // 100)
    vocab = 16
    x = torch.randint(1, vocab, (rows, 100), generator=g)
    x[:, 90:] = PAD_ID  # some padding: never masked, never a target
    inp, tgt, m = mask_tokens(x, cfg.mask_p, vocab, PAD_ID, g,
                              loss_on_all_positions=cfg.variant == "loss_all_positions")
    real, unmasked = x != PAD_ID, (x != PAD_ID) & ~m
    out = {
        "mask_rate": float(m.sum() / real.sum()),
        "unmasked_target_frac": float(((tgt != IGNORE) & ~m).sum() / (~m).sum()),
        "masked_input_not_mask_frac": float(((inp != vocab) & m).sum() / m.sum().clamp_min(1)),
        "unmasked_input_changed_frac": float(((inp != x) & unmasked).sum() / unmasked.sum().clamp_min(1)),
    }
    out["mask_rate_error"] = abs(out["mask_rate"] - cfg.mask_p)
    px = torch.rand(rows, 100, generator=g)
    pin, ptgt, pm = mask_pixels(px, cfg.mask_p, g)
    fake = TaskData("px", px, torch.zeros(rows), px, torch.zeros(rows), 2, "pixels", 0, None, False,
                    DatasetRef("px", "stand-in"))
    base = EncoderConfig()
    extra = encoder_config(fake, base, True).d_input - encoder_config(fake, base, False).d_input
    bad = (int(pin.shape[-1] != 2) + int(extra != 1) + int((pin[..., 1] != pm.float()).sum())
           + int((pin[..., 0][pm] != 0).sum()) + int((pin[..., 0][~pm] != px[~pm]).sum()) + int((ptgt != px).sum()))
    out["pixel_indicator_error"] = float(bad)
    return out


# --------------------------------------------------------------------------- small (§6)

def _encoder_cfg(cfg, arch: str) -> EncoderConfig:
    ssm = SSMConfig(d_state=cfg.d_state, init="inv", bidirectional=True, lr=1e-3, lr_dt=1e-3)
    return EncoderConfig(arch=arch, d_model=cfg.d_model, n_layers=cfg.n_layers, heads=cfg.heads,
                         mlp_ratio=cfg.mlp_ratio, ssm=ssm)


def run_small(cfg, ctx) -> tuple[dict[str, float], DatasetRef]:
    """Per architecture: one pretraining on the training inputs, then four fine-tunings with the
    same recipe: scratch / SPT x all labels / ``low_data_frac`` of the labels."""
    if cfg.task == "listops":
        task = listops_mini(cfg.n_train, cfg.n_test, ctx.seed, cfg.min_length, cfg.max_length, cfg.max_depth,
                            cfg.max_args)
    else:
        task = sdigits(ctx.seed)
    n = len(task.y_train)
    low_idx = torch.randperm(n, generator=ctx.generator(5))[: max(cfg.batch_size, int(round(cfg.low_data_frac * n)))]
    clip = cfg.grad_clip or None  # 0.0: no clipping (official gradient_clip_val)
    pre = PhaseConfig(steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      warmup_steps=cfg.warmup_steps, grad_clip=clip)
    ft = PhaseConfig(steps=cfg.finetune_steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     warmup_steps=cfg.warmup_steps, grad_clip=clip)
    m: dict[str, float] = {"acc_majority": float(torch.bincount(task.y_test).max()) / len(task.y_test),
                           "low_data_n": float(len(low_idx))}
    diffs = []
    for k, arch in enumerate(cfg.archs):
        ec = _encoder_cfg(cfg, arch)
        seed_pt, seed_ft = 1000 * ctx.seed + 10 * k + 1, 1000 * ctx.seed + 10 * k + 2
        enc, st = pretrain(task, ec, pre, cfg.mask_p, ctx, f"{arch}-pretrain", seed_pt, cfg.variant)
        m[f"{arch}_mlm_loss_before"], m[f"{arch}_mlm_loss_after"] = st["loss_before"], st["loss_after"]
        m[f"{arch}_mlm_loss_drop"] = st["loss_before"] - st["loss_after"]
        for suffix, idx in (("", None), ("_low", low_idx)):
            for mode in ("scratch", "spt"):
                clf, info = make_classifier(task, ec, seed_ft, enc if mode == "spt" else None, cfg.variant)
                if "transfer_max_abs_diff" in info:
                    diffs.append(info["transfer_max_abs_diff"])
                r = finetune(clf, task, ft, ctx, f"{arch}-{mode}{suffix}", idx)
                m[f"{arch}_{mode}{suffix}_acc"] = r["acc"]
            m[f"{arch}_spt_minus_scratch_acc{suffix}"] = m[f"{arch}_spt{suffix}_acc"] - m[f"{arch}_scratch{suffix}_acc"]
        m[f"{arch}_gain_low_minus_full"] = m[f"{arch}_spt_minus_scratch_acc_low"] - m[f"{arch}_spt_minus_scratch_acc"]
    m["transfer_max_abs_diff"] = max(diffs)
    if {"transformer", "s4d"} <= set(cfg.archs):
        for mode in ("scratch", "spt"):
            m[f"gap_{mode}_acc"] = abs(m[f"s4d_{mode}_acc"] - m[f"transformer_{mode}_acc"])
        m["gap_spt_minus_gap_scratch_acc"] = m["gap_spt_acc"] - m["gap_scratch_acc"]
    return m, task.ref


# --------------------------------------------------------------------------- full (§5)

@dataclass(frozen=True)
class LRAHP:
    """Full-scale hyper-parameters of one (architecture, task), pinned to the official configs of
    IdoAmos/not-from-scratch (``configs/experiment/lra/{transformer,s4}-lra-<task>[-mlm].yaml``; the README's
    table, read by ``test_lra_hyperparameters_pinned_to_the_readme_table``). Fine-tuning values, then the
    pretraining (``-mlm``) file's where it differs (``pre_*``; None = the same)."""

    d_model: int
    n_layers: int
    heads: int
    batch_size: int
    lr: float
    pre_epochs: int
    ft_epochs: int
    d_state: int = 64
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    warmup_steps: int = 1000
    weight_decay: float = 0.05
    schedule: str = "constant"          # constant_warmup / cosine_warmup
    pre_batch_size: int | None = None
    pre_warmup_steps: int | None = None
    pre_schedule: str | None = None
    ssm_lr: float = 1e-3                # S4D: lr of A, B (``layer.lr``)
    lr_dt: float | None = None          # S4D: lr of dt (None: the base lr, ``dt: null``)
    positions: str = "sinusoidal"       # Transformer: the repo's ``position`` encoder (fixed sinusoids)
    # S4D block of the ``s4-lra-<task>[-mlm].yaml`` (the same in both files): ``model.norm``, ``model.prenorm``,
    # ``model.layer.n_ssm`` (None: one (A, B) per channel, the files' ``${..d_model}`` / d_model / null)
    norm: str = "batch"
    prenorm: bool = True
    n_ssm: int | None = None
    pool: str = "mean"                  # classifier pooling, official ``decoder.mode`` (pool = mean, last, max)
    # classifier head after the pooling, official ``decoder._name_``: ``linear`` (``sequence``, the pipelines'
    # default) or ``mlp`` (``sequence_nonelinear``: Linear-ReLU-Linear; transformer-lra-{cifar,imdb}.yaml only).
    # Retrieval's dual model has the NLI head of the aan pipeline (``retrieval``) whatever this says.
    head: str = "linear"
    # S4: official ``model.tie_dropout`` (configs/model/s4.yaml: true for every s4-lra file; the Transformer's
    # base.yaml: false): dropout masks tied over the sequence, in the residual block and inside the S4 layer, which
    # also gets ``dropout`` (the layer's unset ``dropout`` is the model's, src/models/sequence/model.py)
    tie_dropout: bool = False


_T = dict(dropout=0.0, weight_decay=0.0)
_S = dict(tie_dropout=True)
LRA_HP: dict[tuple[str, str], LRAHP] = {
    ("transformer", "listops"): LRAHP(512, 6, 8, 32, 0.05, 100, 100, mlp_ratio=4, warmup_steps=2000, **_T),
    ("transformer", "text"): LRAHP(512, 6, 8, 32, 0.05, 32, 65, mlp_ratio=4, warmup_steps=2000, dropout=0.0,
                                   weight_decay=0.1, pre_warmup_steps=5000, head="mlp"),
    ("transformer", "retrieval"): LRAHP(128, 4, 4, 32, 0.05, 32, 32, mlp_ratio=4, warmup_steps=5000,
                                        pre_warmup_steps=2000, **_T),
    ("transformer", "image"): LRAHP(64, 3, 4, 50, 1e-3, 50, 200, mlp_ratio=2, warmup_steps=2000, pre_batch_size=32,
                                    pre_warmup_steps=2500, head="mlp", **_T),
    ("transformer", "pathfinder"): LRAHP(128, 4, 8, 32, 5e-4, 50, 200, mlp_ratio=1, warmup_steps=5000,
                                         pre_warmup_steps=2500, **_T),
    ("transformer", "pathx"): LRAHP(128, 4, 4, 32, 5e-4, 200, 200, mlp_ratio=1, warmup_steps=5000, pool="max", **_T),
    ("s4d", "listops"): LRAHP(128, 8, 1, 50, 0.01, 100, 40, warmup_steps=2000, prenorm=False, **_S),
    ("s4d", "text"): LRAHP(256, 6, 1, 16, 0.01, 32, 32, warmup_steps=5000, schedule="cosine", pre_warmup_steps=1000,
                           pre_schedule="constant", **_S),
    ("s4d", "retrieval"): LRAHP(256, 6, 1, 64, 0.01, 20, 20, warmup_steps=2500, **_S),
    ("s4d", "image"): LRAHP(512, 6, 1, 50, 0.01, 200, 200, dropout=0.1, schedule="cosine", pre_schedule="constant",
                            norm="layer", prenorm=False, n_ssm=2, **_S),
    ("s4d", "pathfinder"): LRAHP(256, 6, 1, 64, 0.004, 200, 200, warmup_steps=2500, weight_decay=0.03, lr_dt=1e-3,
                                 pool="last", **_S),
    ("s4d", "pathx"): LRAHP(256, 6, 1, 16, 5e-4, 50, 50, warmup_steps=10_000, schedule="cosine", pre_batch_size=32,
                           pre_warmup_steps=5000, pre_schedule="constant", ssm_lr=5e-4, lr_dt=5e-4, **_S),
}
DRY_LEN = 1024  # dry-run forward passes use the first 1024 positions (a full-length CPU pass takes minutes)


def _lra_encoder_cfg(arch: str, hp: LRAHP, task: str) -> EncoderConfig:
    dt_min = 1e-4 if task == "pathx" else 1e-3
    # S4 layer dropout: the files leave ``model.layer.dropout`` unset, so SequenceModel gives the layer the model's
    # ``dropout`` (not-from-scratch src/models/sequence/model.py), with the model's ``tie_dropout``
    # (configs/model/layer/s4.yaml); applied after the activation, before the output map (src/models/sequence/ss/s4.py)
    ssm = SSMConfig(d_state=hp.d_state, init="inv", bidirectional=True, lr=hp.ssm_lr, lr_dt=hp.lr_dt, dt_min=dt_min,
                    n_ssm=hp.n_ssm, dropout=hp.dropout if arch == "s4d" else 0.0, tie_dropout=hp.tie_dropout)
    if arch == "transformer":  # pre-LN LayerNorm trunk (every transformer-lra file: prenorm true, norm layer)
        return EncoderConfig(arch=arch, d_model=hp.d_model, n_layers=hp.n_layers, heads=hp.heads,
                             mlp_ratio=hp.mlp_ratio, dropout=hp.dropout, ssm=ssm, positions=hp.positions,
                             pool=hp.pool, head=hp.head)
    return EncoderConfig(arch=arch, d_model=hp.d_model, n_layers=hp.n_layers, heads=hp.heads,
                         mlp_ratio=hp.mlp_ratio, dropout=hp.dropout, ssm=ssm, positions=hp.positions,
                         norm=hp.norm, prenorm=hp.prenorm, pool=hp.pool, head=hp.head, tie_dropout=hp.tie_dropout)


def _phase(hp: LRAHP, epochs: float, scale: float, n_train: int, pretraining: bool = False,
           workers: int = 0, grad_clip: float = 0.0) -> PhaseConfig:
    batch = (hp.pre_batch_size if pretraining and hp.pre_batch_size else hp.batch_size)
    warmup = hp.pre_warmup_steps if pretraining and hp.pre_warmup_steps is not None else hp.warmup_steps
    schedule = hp.pre_schedule if pretraining and hp.pre_schedule else hp.schedule
    per_epoch = -(-n_train // batch)  # checkpoint once per epoch (preemptible jobs resume)
    return PhaseConfig(steps=None, epochs=max(1, int(round(epochs * scale))), batch_size=batch, lr=hp.lr,
                       weight_decay=hp.weight_decay, warmup_steps=warmup, schedule=schedule,
                       grad_clip=grad_clip or None, checkpoint_every=per_epoch, workers=workers)


def _dry_check(task: TaskData, arch: str, ec: EncoderConfig, hp: LRAHP, cfg, seed: int) -> None:
    """Build the whole pipeline without training: pretraining model and loss, transfer, classifier."""
    crop = _head(task.x_train, 2)[..., :DRY_LEN]  # a streamed split: read from disk, as the model reads it
    small = replace(task, x_train=crop, y_train=task.y_train[:2], x_test=crop, y_test=task.y_train[:2])
    pt = encoder_config(small, ec, pretraining=True)
    enc = build_encoder(pt, seed)
    model = PretrainModel(enc, decoder_outputs(task)).eval()
    flat = crop.reshape(-1, crop.shape[-1]) if task.dual else crop
    with torch.no_grad():
        loss = denoising_loss(model, flat, small, cfg.mask_p)
    if not torch.isfinite(loss):
        raise ConfigError(f"LRA {task.name} {arch}: non-finite pretraining loss in the dry run")
    clf, info = make_classifier(small, ec, seed + 1, enc)
    optimizer(ssm_param_groups(clf, hp.lr, hp.weight_decay), TrainConfig(steps=1, optimizer="adamw", lr=hp.lr))
    with torch.no_grad():
        out = clf.eval()(_prep(crop, clf))
    if out.shape != (len(crop), task.n_classes) or info["transfer_max_abs_diff"] != 0.0:
        raise ConfigError(f"LRA {task.name} {arch}: classifier output {tuple(out.shape)} or transfer is wrong")


def lra_averages(m: dict[str, float]) -> dict[str, float]:
    """``lra_avg_<arch>_<mode>_acc_pct`` over the six tasks where all six are present (one job running every
    task, or the leaderboard assembling one job per task: the reproduction's ``assembly``)."""
    out: dict[str, float] = {}
    for arch in ("transformer", "s4d"):
        for mode in ("scratch", "spt"):
            accs = [m.get(f"lra_{t}_{arch}_{mode}_acc_pct") for t in LRA_TASKS]
            if all(a is not None for a in accs):
                out[f"lra_avg_{arch}_{mode}_acc_pct"] = sum(accs) / len(accs)  # type: ignore[arg-type]
    if "lra_avg_s4d_scratch_acc_pct" in out and "lra_avg_transformer_scratch_acc_pct" in out:
        out["lra_avg_s4d_minus_transformer_scratch_acc_pct"] = (out["lra_avg_s4d_scratch_acc_pct"]
                                                               - out["lra_avg_transformer_scratch_acc_pct"])
    return out


def _first(x, y: torch.Tensor, n: int | None):
    """The first ``n`` examples (None: all), in memory or still on disk."""
    if n is None or n >= len(y):
        return x, y
    idx = torch.arange(n)
    return (x.subset(idx) if isinstance(x, DiskSplit) else x[idx]), y[idx]


def run_lra(cfg, ctx) -> tuple[dict[str, float], DatasetRef]:
    m: dict[str, float] = {}
    refs: list[DatasetRef] = []
    for t in cfg.lra_tasks:
        task = load_lra(t, ctx)
        if cfg.lra_max_train is not None or cfg.lra_max_test is not None:  # sample-count budgets
            (xtr, ytr), (xte, yte) = (_first(task.x_train, task.y_train, cfg.lra_max_train),
                                      _first(task.x_test, task.y_test, cfg.lra_max_test))
            task = replace(task, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        refs.append(task.ref)
        for k, arch in enumerate(cfg.archs):
            hp = LRA_HP[(arch, t)]
            ec = _lra_encoder_cfg(arch, hp, t)
            seed_pt, seed_ft = 1000 * ctx.seed + 10 * k + 1, 1000 * ctx.seed + 10 * k + 2
            if ctx.dry_run:
                _dry_check(task, arch, ec, hp, cfg, seed_pt)
                continue
            n_pre = len(task.y_train) * (2 if task.dual else 1)
            pre = _phase(hp, hp.pre_epochs, cfg.lra_epochs_scale, n_pre, pretraining=True, workers=cfg.workers,
                         grad_clip=cfg.grad_clip)
            ft = _phase(hp, hp.ft_epochs, cfg.lra_epochs_scale, len(task.y_train), workers=cfg.workers,
                        grad_clip=cfg.grad_clip)
            enc, st = pretrain(task, ec, pre, cfg.mask_p, ctx, f"lra-{t}-{arch}-pretrain", seed_pt, cfg.variant)
            m[f"lra_{t}_{arch}_mlm_loss_after"] = st["loss_after"]
            for mode in ("scratch", "spt"):
                clf, _ = make_classifier(task, ec, seed_ft, enc if mode == "spt" else None, cfg.variant)
                r = finetune(clf.to(ctx.device), task, ft, ctx, f"lra-{t}-{arch}-{mode}")
                m[f"lra_{t}_{arch}_{mode}_acc_pct"] = 100.0 * r["acc"]
    m.update(lra_averages(m))
    # one ref for the tasks read: the least-real provenance among the loaders' refs
    return m, DatasetRef.combine(*refs, name="lra:" + "+".join(cfg.lra_tasks))


__all__ = ["mechanics", "run_small", "run_lra", "lra_averages", "LRAHP", "LRA_HP"]
