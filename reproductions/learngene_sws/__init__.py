"""learngene_sws: Xia, Zhu, Yang, Geng, *Exploring Learngene via Stage-wise Weight Sharing for Initializing
Variable-sized Models* (IJCAI 2024). A stage-wise weight-shared Aux-Net trained by distillation yields S
learngene layers that are expanded (stage order kept) into descendant ViTs of several depths.
CPU scales: sklearn 8x8 digits (2x2 patches, 16 tokens); full scale: ImageNet-1K, see README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal


from suite.config import Range
from suite.context import RunContext
from suite.data import digits, randaugment
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources, Table

from .checks import mechanism_metrics
from .experiment import run_protocol

Variant = Literal["correct", "untrained-aux", "shuffled-stages"]


@dataclass
class Config:
    # --- Aux-Net / descendants (spec §6: width 64, 4 heads, 8 layers in 4 stages (2,2,2,2))
    dim: Annotated[int, Range(4)] = 64
    heads: Annotated[int, Range(1)] = 4
    # heads of the Aux-Net (and of its no-stage / ancestor peers); None: ``heads``. The official Aux-S has 12
    # heads of width 32, its descendants 6 of width 64 (README table): a copied qkv splits into other heads
    aux_heads: Annotated[int | None, Range(1)] = None
    mlp_ratio: Annotated[float, Range(0)] = 2.0
    patch: Annotated[int, Range(1)] = 2
    stages: tuple[Annotated[int, Range(1)], ...] = (2, 2, 2, 2)
    depths: tuple[Annotated[int, Range(1)], ...] = (4, 6, 8)
    # --- Stage 1: distillation (released alpha = 1.0, T = 1.0)
    alpha: Annotated[float, Range(0, 1)] = 1.0
    temperature: Annotated[float, Range(0, open_lo=True)] = 1.0
    teacher_epochs: Annotated[int, Range(1)] = 20
    aux_epochs: Annotated[int, Range(1)] = 40
    aux_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    # --- Stage 2: short tuning (spec §6: 2 epochs), scratch at equal and long budget
    des_epochs: Annotated[int, Range(1)] = 2
    des_lr: Annotated[float, Range(0, open_lo=True)] = 5e-4
    scratch_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    scratch_long_epochs: Annotated[int, Range(1)] = 20
    weight_decay: Annotated[float, Range(0)] = 0.05
    min_lr_ratio: Annotated[float, Range(0, 1)] = 0.0
    # Stage-1 (Aux-Net, no-stage, ancestor) lr warmup in epochs, linear per step from lr / steps (official Aux-S:
    # 5 epochs from 1e-6); descendants and scratch baselines: none (official Des-S: --warmup-epochs 0)
    warmup_epochs: Annotated[int, Range(0)] = 0
    # stochastic depth of every student ViT (official --drop-path 0.1, main.py default, used by both commands);
    # the official value at every scale: the small preset has no regularisation values of its own
    drop_path: Annotated[float, Range(0, 1, open_hi=True)] = 0.1
    # DeiT's batch recipe (official main.py defaults) for every student ViT; 0 = off (smoke / small)
    mixup: Annotated[float, Range(0)] = 0.0            # mixup alpha (switch to CutMix w.p. 0.5 when both > 0)
    cutmix: Annotated[float, Range(0)] = 0.0           # CutMix alpha
    label_smoothing: Annotated[float, Range(0, 1)] = 0.0
    reprob: Annotated[float, Range(0, 1)] = 0.0        # random erasing probability ('pixel' mode, one box)
    # DeiT's per-image and sampling recipe of the official main.py (full preset; ImageNet loader only, full.py):
    # timm RandAugment string (--aa; '' = off, suite.data.randaugment) and repeated augmentation (RASampler,
    # samplers.py: copies per image, 0 / 1 = off), whose epoch keeps floor(n // multiple * multiple / world) indices
    rand_augment: str = ""
    repeated_aug: Annotated[int, Range(0)] = 0
    repeated_aug_multiple: Annotated[int, Range(1)] = 256
    batch_size: Annotated[int, Range(1)] = 64
    data: Literal["digits", "imagenet"] = "digits"   # imagenet: <data_root>/imagenet (full.py)
    workers: Annotated[int, Range(0)] = 8            # DataLoader workers (imagenet only)
    variant: Variant = "correct"   # TEETH ONLY

    def validate(self) -> None:
        for name in ("heads", "aux_heads"):
            h = getattr(self, name) or self.heads
            if self.dim % h:
                raise ConfigError(f"{name}={h} does not divide dim={self.dim}; pick a divisor of dim")
        if len(self.stages) > min(self.depths):
            raise ConfigError(f"every descendant needs >= {len(self.stages)} layers (one per stage)")
        randaugment.parse(self.rand_augment)   # a bad timm string fails here, with its fix
        if self.data != "imagenet" and (self.rand_augment or self.repeated_aug > 1):
            raise ConfigError("rand_augment and repeated_aug act on the ImageNet loader (full.py) only; with "
                              f"data={self.data!r} set rand_augment='' and repeated_aug=0")


SCALES = {
    # smoke: mechanism checks + the whole pipeline at toy size (a few seconds)
    "smoke": {"dim": 16, "heads": 2, "stages": (1, 1), "depths": (2, 3), "teacher_epochs": 1, "aux_epochs": 1,
              "scratch_long_epochs": 1, "des_epochs": 1, "batch_size": 256},
    # small: spec §6 protocol with width 64 -> 32 and every epoch budget halved except the 2-epoch tuning
    # (<= 2.5 min/seed single-threaded); architecture (8 layers, 4 stages (2,2,2,2)) and algorithm unchanged
    "small": {"dim": 32, "teacher_epochs": 10, "aux_epochs": 20, "scratch_long_epochs": 10, "batch_size": 128},
    # full: Aux-S on ImageNet-1K (released recipe, README table); see full.py
    "full": {"dim": 384, "heads": 6, "aux_heads": 12, "mlp_ratio": 4.0, "patch": 16, "stages": (3, 3, 4, 3, 3),
             "depths": (6, 8, 10, 12), "aux_epochs": 150, "aux_lr": 5e-4, "des_epochs": 10, "des_lr": 5e-5,
             "scratch_long_epochs": 100, "batch_size": 512, "min_lr_ratio": 0.02, "data": "imagenet",
             "warmup_epochs": 5, "mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1, "reprob": 0.25,
             "rand_augment": "rand-m9-mstd0.5-inc1", "repeated_aug": 3},
}
_S = ("small",)

CLAIMS = [
    Claim(id="C1-sws-beats-scratch", kind="paper", teeth="untrained-aux", metric="sws_minus_scratch_min", op=">=",
          ref=0.05, scales=_S,
          text="spec §6: after the same short tuning, SWS descendants beat scratch by >= 5 points at every depth"),
    Claim(id="C3-stage-guidance", kind="paper", teeth="shuffled-stages", metric="sws_minus_nostage_mean", op=">=",
          ref=0.0, scales=_S,
          text="spec §6: SWS >= no-stage expansion (one shared layer repeated), mean over depths"),
    Claim(id="C1-cost", kind="paper", teeth="untrained-aux", metric="sws_minus_scratch_long_mean", op=">=",
          ref=-0.02, scales=_S,
          text="SWS (Aux-Net once + short tuning) is within 2 points of scratch trained long, at a lower cost "
               "(cost_ratio_scratch_long_over_sws reported)"),
    Claim(id="weight-sharing", kind="check", metric="share_err", op="==", ref=0.0,
          text="Aux-Net layers of a stage share storage; params = S blocks + embeddings/head"),
    Claim(id="expansion-copies", kind="check", metric="expand_err", op="<=", ref=0.0,
          text="each descendant layer equals its source learngene layer (mapping (0,0,1,1,2,3))"),
    Claim(id="distill-kl", kind="check", metric="distill_err", op="<=", ref=1e-6,
          text="distillation loss equals T^2 KL computed by hand"),
]


@reproduction(
    track="initialization",
    paper=Paper(title="Exploring Learngene via Stage-wise Weight Sharing for Initializing Variable-sized Models",
                authors="Shi-Yu Xia, Wenxuan Zhu, Xu Yang, Xin Geng", year=2024, venue="IJCAI",
                url="https://arxiv.org/abs/2404.16897", code="https://github.com/eddiexia98/SWS"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=2, time_min=5),
               "full": Resources(cpus=16, gpus=4, mem_gb=128, time_min=4320)},
    claims=CLAIMS,
    plots=[Plot(name="acc_vs_depth", x="depth", ys=("acc_sws", "acc_scratch", "acc_nostage", "acc_ancestor",
                                                   "acc_scratch_long"),
                title="Descendant accuracy vs depth (digits 8x8)", ylabel="test accuracy")],
    tables=(Table(name="descendants", metric="table/{row}/{col}",
                  rows=("sws", "nostage", "ancestor", "scratch", "scratch_long"),
                  cols=("acc@4", "acc@6", "acc@8", "tune_steps", "tune_s", "pre_steps", "pre_s"),
                  title="Descendant test accuracy per init (small: depths 4/6/8) and training cost; pre = Stage-1 "
                        "distillation, once for all depths; tune = summed over depths",
                  row_label="init"),),
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("learngene_sws: config %s", asdict(cfg))
    metrics = mechanism_metrics()
    if cfg.data == "imagenet":
        from . import full
        from .experiment import build_vit
        from .method import expand, share_stages

        train, test, classes, ref = full.load(ctx, cfg.batch_size, cfg.workers, cfg.rand_augment, cfg.repeated_aug,
                                              cfg.repeated_aug_multiple)
        shape = (3, 224, 224)
        if ctx.dry_run:   # build every model of the pipeline, train none
            aux = share_stages(build_vit(cfg, sum(cfg.stages), shape, classes, aux=True), tuple(cfg.stages))
            for d in cfg.depths:
                expand(aux, tuple(cfg.stages), d, build_vit(cfg, d, shape, classes))
            return Outcome(metrics=metrics, dataset=ref)
        metrics.update(run_protocol(cfg, ctx, train, test, shape, classes, len(train.dataset)))
        return Outcome(metrics=metrics, dataset=ref)
    sp = digits.load(seed=ctx.seed)
    if ctx.dry_run:
        return Outcome(metrics=metrics, dataset=sp["train"].ref)
    tr, te = sp["train"], sp["test"]
    shape, classes = tuple(tr.x.shape[1:]), int(tr.y.max().item()) + 1
    metrics.update(run_protocol(cfg, ctx, (tr.x, tr.y), (te.x, te.y), shape, classes, len(tr.y)))
    return Outcome(metrics=metrics, dataset=tr.ref)
