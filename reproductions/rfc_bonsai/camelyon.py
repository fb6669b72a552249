"""The Camelyon17 protocol of the RFC paper (spec §2 C2, §5): DenseNet-121 from scratch on the WILDS
hospital splits (train = hospitals 0, 3, 4 as environments), 2-round Bonsai with minibatch SGD, then
ERM / IRMv1 / vREx / CLOvE on frozen Bonsai features ("cf") and ERM / vREx fine-tuned from Bonsai, plus
ERM and ERM-init IRMv1 / vREx; the penalty weight is selected on IID validation (``id_val``) and on
OOD validation (hospital 1), and test accuracy (hospital 2) is reported for both.

Metrics ``camelyon17/test_acc/<method>/<init>/<selection>`` with init in {rand (ERM only), erm,
bonsai, bonsai_cf} and selection in {iid_val, ood_val}.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from suite.data import catalog
from suite.ood import EnvData
from suite.ood import bonsai as B
from suite.ood.net import Classifier, LinearOnFeatures, xavier_init_
from suite.ood.training import OodTrainConfig, train_ood
from suite.spec import DatasetRef

from .densenet import densenet121_features

SPLITS = ("train", "id_val", "val", "test")


def hospital_envs(ds: Any) -> EnvData:
    """A WILDS split as EnvData with the hospital (centre) as environment id (0..n_hospitals-1)."""
    hosp = ds.extra["hospital"]
    ids = torch.unique(hosp)
    env = torch.searchsorted(ids, hosp)
    return EnvData(ds.x, ds.y.float(), env, len(ids))


def _make(seed: int):
    def make(out: int, offset: int) -> Classifier:
        with torch.random.fork_rng():
            torch.manual_seed(seed * 7919 + offset)
            feats = densenet121_features()
            return Classifier(feats, xavier_init_(torch.nn.Linear(feats.out_dim, out)))
    return make


@torch.no_grad()
def _acc(model: torch.nn.Module, data: EnvData) -> float:
    logits = B.predict_logits(model, data.x, batch=256)[:, 0].cpu()
    return float(((logits > 0).float() == data.y.cpu()).float().mean())


def run_camelyon(cfg: Any, ctx: Any) -> tuple[DatasetRef, dict[str, float]]:
    splits = catalog.load_dataset(ctx, "camelyon17", max_per_split=cfg.cam_max_per_split)
    data = {s: hospital_envs(splits[s]) for s in SPLITS}
    ref = splits["train"].ref
    train = data["train"]
    steps = max(1, cfg.cam_epochs * len(train) // cfg.cam_batch)
    bcfg = B.BonsaiConfig(rounds=2, erm_steps=steps, dro_steps=steps, synth_steps=steps, lr=cfg.cam_lr, rho=0.0,
                          optimizer="sgd", momentum=0.9, weight_decay=cfg.cam_weight_decay,
                          synth_weight_decay=cfg.cam_synth_weight_decay, batch_size=cfg.cam_batch,
                          variant=cfg.variant if cfg.variant in B.VARIANTS else "paper")
    make = _make(ctx.seed)
    per_env = max(1, cfg.cam_batch // train.n_envs)
    ood = lambda lam, wd: OodTrainConfig(steps=steps, lam=lam, lr=cfg.cam_lr, rho=0.0, optimizer="sgd",  # noqa: E731
                                         weight_decay=wd, batch_per_env=per_env)
    if ctx.dry_run:  # build the networks and the optimiser stage on fixture-sized data, no training
        net = make(1, 0).to(ctx.device)
        with torch.no_grad():
            net.eval()
            net(train.x[:2].to(ctx.device))
        ctx.log("camelyon17: %d train patches, %d steps/stage, DenseNet-121 %d features (dry run)",
                len(train), steps, net.featurizer.out_dim)
        return ref, {}

    gen = ctx.generator(29)
    found = B.run_bonsai(make, train.x, train.y, bcfg, ctx=ctx, gen=gen, prefix="cam-bonsai")
    erm_model = found.models[0]  # round 0 = ERM for cam_epochs: the ERM baseline and the ERM init
    runs: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
    evals = {s: data[s] for s in ("id_val", "val", "test")}

    def record(method: str, init: str, lam: float, model: torch.nn.Module, feats: dict[str, EnvData] | None) -> None:
        src = feats if feats is not None else evals
        runs.setdefault((method, init), []).append((lam, {s: _acc(model, src[s]) for s in src}))

    record("erm", "rand", 0.0, erm_model, None)
    # frozen Bonsai features (cf): features once, then the head only
    base = B.downstream_init(found.synth, freeze=True)
    with torch.no_grad():
        fx = {s: d.with_x(B.predict_logits(base.featurizer, d.x, batch=256)) for s, d in data.items()}
    for method in cfg.cam_methods:
        for lam in (cfg.cam_lams if method != "erm" else (0.0,)):
            head = LinearOnFeatures(copy.deepcopy(base.head))
            train_ood(head, fx["train"], method, ood(lam, cfg.cam_weight_decay), ctx=ctx, gen=gen,
                      name=f"cam-{method}-bonsai_cf-{lam:g}")
            record(method, "bonsai_cf", lam, head, {s: fx[s] for s in evals})
    for method in cfg.cam_finetune_methods:  # fine-tune everything from the Bonsai init
        for lam in (cfg.cam_lams if method != "erm" else (0.0,)):
            model = B.downstream_init(found.synth)
            train_ood(model, train, method, ood(lam, cfg.cam_weight_decay), ctx=ctx, gen=gen,
                      name=f"cam-{method}-bonsai-{lam:g}")
            record(method, "bonsai", lam, model, None)
    for method in ("irm", "vrex"):  # ERM-init baselines
        for lam in cfg.cam_lams:
            model = copy.deepcopy(erm_model)
            train_ood(model, train, method, ood(lam, cfg.cam_weight_decay), ctx=ctx, gen=gen,
                      name=f"cam-{method}-erm-{lam:g}")
            record(method, "erm", lam, model, None)

    metrics: dict[str, float] = {"camelyon17/bonsai/agree_frac": float(
        (found.correct.all(0) | (~found.correct).all(0)).float().mean())}
    for (method, init), rs in runs.items():
        for sel, key in (("iid_val", "id_val"), ("ood_val", "val")):
            lam, accs = max(rs, key=lambda r: r[1][key])  # model selection on the validation split
            metrics[f"camelyon17/test_acc/{method}/{init}/{sel}"] = accs["test"]
            metrics[f"camelyon17/lam/{method}/{init}/{sel}"] = lam
    return ref, metrics
