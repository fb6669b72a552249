"""semantic_calibration: group calibration with a learned semantic grouping function (GC+TS, GC+ETS)
and the partitioned calibration error (Yang, Zhan, Gan, NeurIPS 2023), against global temperature
scaling and ensemble temperature scaling on the same held-out predictions.

One run: (a) spec §6 A procedural logits with heterogeneous miscalibration, the exact mechanics
(PCE family, argmax preserved, one group = TS) and whether the learned grouping finds the
miscalibrated region; (b) the prediction sets of ``sources``: at small scale an MLP trained in the
job on the real MNIST subset, at full scale the paper's nine classifiers' dumped features/logits.
See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources, Table

from . import data as D
from . import experiment as E
from .method import Variant

# Appendix Table 2 ("ho" columns for TS/ETS) = spec §2 C3: ECE (15 bins) of TS, ETS, GC+TS, GC+ETS.
PAPER_ECE = {
    "cifar10_resnet152": (0.0086, 0.0101, 0.0079, 0.0089),
    "cifar10_shufflenet": (0.0107, 0.0103, 0.0099, 0.0093),
    "cifar10_vgg11": (0.0125, 0.0135, 0.0120, 0.0122),
    "cifar100_densenet121": (0.0418, 0.0289, 0.0411, 0.0280),
    "cifar100_resnet50": (0.0435, 0.0292, 0.0427, 0.0269),
    "cifar100_vgg19": (0.0485, 0.0472, 0.0414, 0.0360),
    "imagenet_resnet18": (0.0178, 0.0104, 0.0173, 0.0100),
    "imagenet_resnet50": (0.0182, 0.0102, 0.0174, 0.0103),
    "imagenet_swin": (0.0367, 0.0218, 0.0366, 0.0193),
}
# Appendix Table 5: NLL of TS and GC+TS.
PAPER_NLL = {
    "cifar10_resnet152": (0.1461, 0.1448), "cifar10_shufflenet": (0.2648, 0.2643), "cifar10_vgg11": (0.2576, 0.2555),
    "cifar100_densenet121": (0.8272, 0.8251), "cifar100_resnet50": (0.8284, 0.8236), "cifar100_vgg19": (1.1241, 1.1151),
    "imagenet_resnet18": (1.2659, 1.2648), "imagenet_resnet50": (0.9988, 0.9972), "imagenet_swin": (0.7981, 0.7963),
}


def _paper_mean(table: dict[str, tuple[float, ...]], col: int) -> float:
    return round(float(np.mean([v[col] for v in table.values()])), 4)


@dataclass
class Config:
    # prediction sets: "mnist-mlp" (MLP trained in the job on the real MNIST subset), "digits-mlp"
    # (sklearn digits, smoke), or a dumped classifier "<dataset>_<model>" read from the data root
    sources: tuple[str, ...] = ("mnist-mlp",)
    data_dir: str = "semantic_calibration"       # <data root>/<data_dir>/<source>_{val,test}.pkl
    # group calibration (spec §3; official conf/method/group_calibration_combine_ts.yaml)
    n_groups: Annotated[int, Range(1)] = 2
    n_partitions: Annotated[int, Range(1)] = 20
    weight_decay: Annotated[float, Range(0)] = 0.1   # on mean(W^2)
    lbfgs_iter: Annotated[int, Range(1)] = 100
    tau_init: Annotated[float, Range(0, open_lo=True)] = 1.5
    group_input: Literal["features", "features+logits"] = "features"
    ets_loss: Literal["mse", "ce"] = "mse"       # ETS temperature loss (official default 'mse')
    # evaluation protocol (spec §4-§5; official main.py / data.py / evaluate.py)
    ho_frac: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.1
    n_splits: Annotated[int, Range(1)] = 100     # seeded 10/90 splits of the test set
    n_bins: Annotated[int, Range(1)] = 15
    eval_partitions: Annotated[int, Range(0)] = 10  # fresh learned partitions measuring the semantic PCE
    # the classifier trained in the job (small scale): pool of the real MNIST subset re-split
    clf_train: Annotated[int, Range(1)] = 4000
    clf_val: Annotated[int, Range(1)] = 2000      # D_val; the rest (4000) is the test set
    hidden: tuple[Annotated[int, Range(1)], ...] = (256, 256)
    clf_epochs: Annotated[int, Range(0)] = 30
    clf_batch: Annotated[int, Range(1)] = 128
    clf_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    split_seed: Annotated[int, Range(0)] = 0
    # spec §6 A procedural logits (exact checks and the heterogeneous-miscalibration mechanism)
    proc_val: Annotated[int, Range(10)] = 5000
    proc_test: Annotated[int, Range(20)] = 10000
    proc_dim: Annotated[int, Range(1)] = 16
    proc_classes: Annotated[int, Range(2)] = 10
    proc_partitions: Annotated[int, Range(1)] = 10
    proc_splits: Annotated[int, Range(1)] = 3
    variant: Variant = "paper"  # TEETH ONLY: "random-groups" / "swapped-groups" / "shuffled-groups"

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("sources is empty; name at least one prediction set, e.g. --set sources=mnist-mlp")
        if self.variant != "paper" and self.n_groups < 2:
            raise ConfigError(f"variant={self.variant} needs n_groups >= 2")


SCALES = {
    "smoke": {"sources": ("digits-mlp",), "clf_train": 1000, "clf_val": 300, "hidden": (64,), "clf_epochs": 20,
              "n_partitions": 3, "n_splits": 3, "eval_partitions": 3, "lbfgs_iter": 50,
              "proc_val": 2000, "proc_test": 4000, "proc_partitions": 3, "proc_splits": 1},
    "small": {"sources": ("mnist-mlp",)},
    # the paper's protocol (spec §5, official configs): nine classifiers, 20 partitions of 2 groups,
    # 100 seeded 10/90 splits of the test set
    "full": {"sources": D.PAPER_SOURCES, "n_partitions": 20, "n_splits": 100, "eval_partitions": 20},
}

S = ("small", "full")
ALL = ("smoke", "small", "full")
CLAIMS = [
    # ---- paper results (C3): group calibration vs the global calibrators, same D_eval, mean over splits
    Claim(id="C3-gcts-ece", kind="paper", teeth="swapped-groups", scales=S,
          text="GC+TS has lower ECE (15 bins) than global TS on the same held-out predictions",
          metric="ece_gcts", op="<=", ref="ece_ts", paper=_paper_mean(PAPER_ECE, 2),
          paper_note="appendix Table 2, GC+TS, mean over the 9 classifiers (TS: %.4f)" % _paper_mean(PAPER_ECE, 0)),
    Claim(id="C3-gcets-ece", kind="paper", teeth="swapped-groups", scales=S,
          text="GC+ETS has lower ECE (15 bins) than global ETS on the same held-out predictions",
          metric="ece_gcets", op="<=", ref="ece_ets", paper=_paper_mean(PAPER_ECE, 3),
          paper_note="appendix Table 2, GC+ETS, mean over the 9 classifiers (ETS: %.4f)" % _paper_mean(PAPER_ECE, 1)),
    Claim(id="C3-gcts-nll", kind="paper", teeth="swapped-groups", scales=S,
          text="GC+TS has lower NLL than global TS on the same held-out predictions",
          metric="nll_gcts", op="<=", ref="nll_ts", paper=_paper_mean(PAPER_NLL, 1),
          paper_note="appendix Table 5, GC+TS, mean over the 9 classifiers (TS: %.4f)" % _paper_mean(PAPER_NLL, 0)),
    Claim(id="C1-semantic-pce", kind="paper", teeth="swapped-groups", scales=S,
          text="GC+TS has lower partitioned calibration error than global TS on semantic partitions "
               "(fresh learned groupings, never used to calibrate): calibration beyond probability bins",
          metric="sempce_gcts", op="<=", ref="sempce_ts"),
    Claim(id="C1-learned-grouping", kind="paper", teeth="random-groups", scales=S,
          text="the learned grouping matters: GC+TS has lower semantic PCE than the same GC+TS on the "
               "untrained (random-initialisation) groupings, measured in the same run",
          metric="sempce_gcts", op="<", ref="sempce_gcts_rand"),
    # ---- mechanics and invariants (checks)
    Claim(id="T1-argmax-preserved", kind="check", scales=ALL,
          text="Theorem 1: TS, ETS, GC+TS, GC+ETS leave every eval example's argmax unchanged "
               "(count over all splits and sources)",
          metric="argmax_changed", op="==", ref=0.0),
    Claim(id="C1-pce-bins-is-ece", kind="check", scales=ALL,
          text="PCE with the 15 confidence bins as grouping equals the shared ECE (GC+TS probabilities)",
          metric="pce_bins_minus_ece_abs", op="<=", ref=1e-12),
    Claim(id="C1-pce-constant-is-marginal", kind="check", scales=ALL,
          text="PCE with a constant grouping equals |mean confidence - accuracy|",
          metric="pce_const_minus_marginal_abs", op="<=", ref=1e-12),
    Claim(id="C1-pce-matches-shared", kind="check", scales=ALL,
          text="our PCE on the learned partitions equals suite.metrics' partitioned_calibration_error",
          metric="pce_learned_minus_shared_abs", op="<=", ref=1e-12),
    Claim(id="one-group-is-ts", kind="check", scales=ALL,
          text="group calibration with a single group reproduces global TS exactly",
          metric="one_group_minus_ts_abs", op="<=", ref=1e-12),
    Claim(id="probs-sum-to-one", kind="check", scales=ALL,
          text="every calibrated probability vector sums to 1",
          metric="sum_to_one_err", op="<=", ref=1e-9),
    Claim(id="proc-argmax-preserved", kind="check", scales=ALL,
          text="Theorem 1 on the procedural logits (all calibrators, all splits)",
          metric="proc_argmax_changed", op="==", ref=0.0),
    # spec §6 A: where miscalibration differs between regions of feature space, the learned grouping finds them
    Claim(id="proc-gcts-halves-ece", kind="check", teeth="random-groups", scales=ALL,
          text="procedural logits (over-confident where h_0 > 0, under-confident elsewhere): "
               "ECE(GC+TS) <= 0.5 ECE(TS)",
          metric="proc_ece_gcts_over_ts", op="<=", ref=0.5),
    Claim(id="proc-gcts-nll", kind="check", scales=ALL,
          text="procedural logits: NLL(GC+TS) < NLL(TS)",
          metric="proc_nll_gcts", op="<", ref="proc_nll_ts"),
]

METHOD_COLS = E.METHODS
TABLES = [
    Table(name="ece_by_classifier", metric="ece_{col}/{row}", rows=("mnist-mlp",) + D.PAPER_SOURCES,
          cols=METHOD_COLS, title="ECE (15 bins) on D_eval, mean over splits", row_label="classifier"),
    Table(name="nll_by_classifier", metric="nll_{col}/{row}", rows=("mnist-mlp",) + D.PAPER_SOURCES,
          cols=METHOD_COLS, title="NLL on D_eval, mean over splits", row_label="classifier"),
]

AGGREGATED = ("ece", "nll", "brier", "acc", "cwece", "sempce", "clspce")


@reproduction(
    track="analysis",
    paper=Paper(title="Beyond Probability Partitions: Calibrating Neural Networks with Semantic Aware Grouping",
                authors="Jia-Qi Yang, De-Chuan Zhan, Le Gan", year=2023, venue="NeurIPS",
                url="https://arxiv.org/abs/2306.04985", code="https://github.com/ThyrixYang/group_calibration"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=1, mem_gb=4, time_min=120),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=720)},
    claims=CLAIMS,
    tables=TABLES,
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    dev = torch.device(ctx.device)
    ctx.log("semantic_calibration: config %s", asdict(cfg))
    preds = [D.load_source(cfg, ctx, s) for s in cfg.sources]
    ref = DatasetRef.combine(*(p.ref for p in preds))
    proc = D.procedural(cfg.proc_val, cfg.proc_test, cfg.proc_dim, cfg.proc_classes, seed=ctx.seed)
    if ctx.dry_run:
        # the whole pipeline on every prediction set with budgets cut to one split and one partition
        for p in preds + [proc]:
            E.evaluate(p.to(dev), _cut(cfg), ctx.seed, n_partitions=1, n_splits=1, variant=cfg.variant)
        return Outcome(metrics={}, dataset=ref)
    metrics: dict[str, float] = {}
    by_metric: dict[str, DatasetRef] = {}
    # (a) spec §6 A: procedural logits
    m = E.evaluate(proc.to(dev), cfg, ctx.seed, n_partitions=cfg.proc_partitions, n_splits=cfg.proc_splits,
                   variant=cfg.variant, log=ctx.log, progress=lambda it: ctx.progress(it, desc="procedural"))
    m["ece_gcts_over_ts"] = m["ece_gcts"] / m["ece_ts"]
    metrics.update({f"proc_{k}": v for k, v in m.items()})
    by_metric.update({f"proc_{k}": proc.ref for k in m})
    # (b) the classifiers' predictions
    per_source = []
    for p in preds:
        ctx.log("%s: %s (%s), val %d, test %d, %d classes", p.name, p.ref.name, p.ref.provenance, len(p.y_val),
                len(p.y_test), p.n_classes)
        m = E.evaluate(p.to(dev), cfg, ctx.seed, n_partitions=cfg.n_partitions, n_splits=cfg.n_splits,
                       variant=cfg.variant, log=ctx.log, progress=lambda it, n=p.name: ctx.progress(it, desc=n))
        per_source.append(m)
        metrics.update({f"{k}/{p.name}": v for k, v in m.items()})
        by_metric.update({f"{k}/{p.name}": p.ref for k in m})
    # aggregates over the sources (the claims' metrics): means, counts summed, errors maxed
    agg: dict[str, float] = {}
    for k in per_source[0]:
        vals = [m[k] for m in per_source]
        if k.startswith("argmax_changed"):
            agg[k] = float(np.sum(vals))
        elif k.endswith("_abs") or k.startswith("sum_to_one_err"):
            agg[k] = float(np.max(vals))
        else:
            agg[k] = float(np.mean(vals))
    for a in AGGREGATED:
        if f"{a}_ts" in agg:
            agg[f"{a}_gcts_minus_ts"] = agg[f"{a}_gcts"] - agg[f"{a}_ts"]
            agg[f"{a}_gcets_minus_ets"] = agg[f"{a}_gcets"] - agg[f"{a}_ets"]
    metrics.update(agg)
    by_metric.update({k: ref for k in agg})
    return Outcome(metrics=metrics, dataset=ref, metric_datasets=by_metric,
                   notes={"sources": list(cfg.sources), "procedural": proc.ref.name})


def _cut(cfg: Config) -> Config:
    from dataclasses import replace

    return replace(cfg, lbfgs_iter=2, eval_partitions=min(cfg.eval_partitions, 1))
