"""happy_cgcd: Happy, debiased continual generalized category discovery (clustering-guided head init, soft
entropy regularisation, hardness-aware prototype sampling, feature KD; rehearsal-free) against the naive
continual baseline (memax over all classes, random head init, uniform prototype sampling).
All/Old/New accuracy (one Hungarian assignment on All), NMI and ARI on the seen classes after every stage."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from reproductions.happy_cgcd.backbone import DINO_FILE, build_backbone, dino_weights
from reproductions.happy_cgcd.fixtures import write_cifar100_fixture
from reproductions.happy_cgcd.method import (CGCDNet, class_prototypes, feature_kd, hap_loss, hap_probs, hardness,
                                             info_nce, kmeans_centroids, mean_probs, memax, old_new_accuracy,
                                             select_new_centroids, self_distillation, shared_radius, soft_entropy,
                                             supcon)
from reproductions.happy_cgcd.stages import Protocol, build_protocol, digit_view, image_preprocess, image_view
from reproductions.happy_cgcd.streaming import batches, fit_data, take, tiny_splits
from suite.config import Range
from suite.errors import ConfigError
from suite.metrics.clustering import ari, nmi
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources, Table
from suite.train import TrainConfig, decay_groups, fit

# "happy": the method; "naive": memax over all classes, random head init, uniform prototype sampling;
# "happy_uniform": Happy with uniform instead of hardness-aware prototype sampling (ablation for C3).
METHODS = ("happy", "naive", "happy_uniform")
# Broken variants (teeth): "init_largest" picks the most known-like centroids at the clustering-guided init;
# "swapped_entropy" flips the sign of Happy's soft entropy regulariser (it then rewards marginal collapse);
# "hap_inverted" flips the sign of the hardness in Happy's prototype sampling (softmax(-h/τ): the easiest, most
# isolated prototypes are replayed most), the teeth of C3, which is about hardness-aware vs uniform sampling;
# "no_hap" (diagnostic, no claim's teeth) drops Happy's prototype replay (λ_hap = 0 for the "happy" method only).
Variant = Literal["paper", "init_largest", "swapped_entropy", "hap_inverted", "no_hap"]
IMAGE_SETS = {"cifar100": ("cifar-100", 100), "tinyimagenet": ("tiny-imagenet-200", 200)}


@dataclass
class Config:
    dataset: str = "digits"  # digits (CPU protocol) | cifar100 | tinyimagenet
    methods: tuple[str, ...] = METHODS
    n_old: Annotated[int, Range(1)] = 5
    n_stages: Annotated[int, Range(1)] = 5
    n_new: Annotated[int, Range(1)] = 1  # N_t, assumed known (head size)
    labeled_frac: Annotated[float, Range(0, 1)] = 0.8
    per_new: Annotated[int, Range(0)] = 0  # images per new class per stage (0 = all)
    per_old: Annotated[int, Range(0)] = 10
    per_disc: Annotated[int, Range(0)] = 10
    test_frac: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.3  # digits: stratified train/test split
    backbone: str = "mlp"  # mlp | vit_b16_dino
    hidden: tuple[Annotated[int, Range(1)], ...] = (256,)  # MLP 64→256→128
    feat_dim: Annotated[int, Range(1)] = 128
    proj_hidden: Annotated[int, Range(1)] = 256
    proj_dim: Annotated[int, Range(1)] = 128
    proj_layers: Annotated[int, Range(1)] = 3  # linear layers of the projector (official num_mlp_layers = 3)
    weights: str = DINO_FILE  # DINO checkpoint under the data root (vit_b16_dino only)
    image_size: Annotated[int, Range(1)] = 224
    crop_pct: Annotated[float, Range(0, 1, open_lo=True)] = 0.875  # images: resize to image_size / crop_pct, crop
    train_last_only: bool = True  # stages ≥ 1: MLP's first layer frozen (analogue of grad_from_block=11)
    stage0_epochs: Annotated[int, Range(1)] = 30
    stage_epochs: Annotated[int, Range(1)] = 30
    batch_size: Annotated[int, Range(1)] = 64
    optimizer: str = "adam"
    lr0: Annotated[float, Range(0, open_lo=True)] = 1e-3
    lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    weight_decay: Annotated[float, Range(0)] = 0.0
    schedule: str = "constant"
    checkpoint_every: Annotated[int, Range(0)] = 0  # fit saves every n steps (0: never); full: preemptible jobs resume
    teacher_temp0: tuple[Annotated[float, Range(0, open_lo=True)],
                         Annotated[float, Range(0, open_lo=True)]] = (0.07, 0.04)  # stage-0 warm-up (start, end)
    teacher_warmup_frac: Annotated[float, Range(0, 1)] = 0.3  # of stage-0 steps (paper: 30 of 100 epochs)
    teacher_temp: Annotated[float, Range(0, open_lo=True)] = 0.05  # stages ≥ 1
    nce_temp: Annotated[float, Range(0, open_lo=True)] = 1.0  # official: info_nce_logits' default (train_happy.py)
    supcon_temp: Annotated[float, Range(0, open_lo=True)] = 0.07  # official: SupConLoss's default (= its base temp)
    w_group: Annotated[float, Range(0)] = 1.0  # soft-entropy group term (CIFAR/CUB commands: 1; code default 2)
    lambda_hap: Annotated[float, Range(0)] = 1.0
    lambda_kd: Annotated[float, Range(0)] = 1.0
    hap_temp: Annotated[float, Range(0, open_lo=True)] = 0.1
    variant: Variant = "paper"


N_VIEWS = 2  # augmented views per image (official --n_views 2)


@dataclass
class Views:
    """``pre``: the test transform (encoding, evaluation); ``train_pre`` then ``aug`` (once per view): the
    training transform. Images: resize to 256 + centre 224 crop; resize to 256, then random 224 crop + flip."""
    pre: Callable[[torch.Tensor], torch.Tensor]
    train_pre: Callable[[torch.Tensor], torch.Tensor]
    aug: Callable[[torch.Tensor], torch.Tensor]


def cifar100_splits(ctx):  # noqa: ANN001, ANN201
    """CIFAR-100 train / test from ``<data root>/cifar-100-python`` through the catalog's loader (which sets the
    provenance, ``cifar-100-fixture`` for a fixture). In a dry run / rehearsal without the data, ``locate`` writes
    :func:`~reproductions.happy_cgcd.fixtures.write_cifar100_fixture` (every class present, published format):
    the catalog's 40-image fixture leaves most of the 100 classes empty."""
    from suite.data import cifar, load_dataset
    from suite.data.external import locate

    folder, _ = locate(ctx, "cifar-100", cifar.C100_DIR, cifar.C100_FILES, cifar.HOW100,
                       fixture=write_cifar100_fixture)
    return load_dataset(folder.parent, "cifar-100")


def load_protocol(cfg: Config, ctx) -> tuple[Protocol, Views, tuple[int, ...], DatasetRef]:  # noqa: ANN001
    """Stage splits, views, input shape, and the dataset ref its loader set."""
    kw = dict(n_old=cfg.n_old, n_stages=cfg.n_stages, n_new=cfg.n_new, labeled_frac=cfg.labeled_frac,
              per_new=cfg.per_new, per_old=cfg.per_old, per_disc=cfg.per_disc, seed=ctx.seed)
    if cfg.dataset == "digits":
        from sklearn.model_selection import train_test_split

        from suite.data import digits

        x, y = digits.load_digits_arrays()
        itr, ite = train_test_split(np.arange(len(y)), test_size=cfg.test_frac, stratify=y.numpy(),
                                    random_state=ctx.seed)
        proto = build_protocol(x[itr], y[itr], x[ite], y[ite], n_classes=10, **kw)
        return proto, Views(lambda v: v, lambda v: v, digit_view), (1, 8, 8), digits.load()["train"].ref
    if cfg.dataset in IMAGE_SETS:
        _, k = IMAGE_SETS[cfg.dataset]
        # TinyImageNet (100,000 train images) streams from disk; CIFAR-100 (150 MB as uint8) is held in memory
        sp = tiny_splits(ctx) if cfg.dataset == "tinyimagenet" else cifar100_splits(ctx)
        tr = sp["train"]
        te = sp["val"] if "val" in sp else sp["test"]
        if ctx.dry_run:  # fixtures hold a few images per class: keep the protocol's shape, not its counts
            kw.update(per_new=0, per_old=1, per_disc=1)
        xs = (tr, te) if cfg.dataset == "tinyimagenet" else (tr.x, te.x)  # on-disk splits, or tensors
        proto = build_protocol(xs[0], tr.y, xs[1], te.y, n_classes=k, **kw)
        size = cfg.image_size
        views = Views(image_preprocess(size, cfg.crop_pct), image_preprocess(size, cfg.crop_pct, crop=False),
                      lambda v: image_view(v, size))  # the official `imagenet` transform
        return proto, views, (3, size, size), DatasetRef.combine(tr.ref, te.ref)
    raise ConfigError(f"dataset={cfg.dataset!r} is unknown; use digits, cifar100 or tinyimagenet")


def _train_cfg(cfg: Config, epochs: int, lr: float) -> TrainConfig:
    # official train_happy.py: CosineAnnealingLR(T_max=epochs, eta_min=lr*1e-3) stepped once per epoch, and
    # training loaders with drop_last=True
    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, optimizer=cfg.optimizer,
                       weight_decay=cfg.weight_decay, schedule=cfg.schedule, min_lr_ratio=1e-3, log_every=50,
                       checkpoint_every=cfg.checkpoint_every, schedule_per_epoch=True, drop_last=True)


@torch.no_grad()
def encode(net: CGCDNet, x, pre: Callable, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """(normalised features, cosine logits) on CPU, eval mode; ``x`` a tensor or an on-disk split."""
    was = net.training
    net.eval()
    dev = next(net.parameters()).device
    fs, cs = [], []
    for xb in batches(x, batch, dev):
        f, _, c = net(pre(xb.to(dev, non_blocking=True)))
        fs.append(f.float().cpu())
        cs.append(c.float().cpu())
    net.train(was)
    return torch.cat(fs), torch.cat(cs)


def evaluate(net: CGCDNet, proto: Protocol, seen: list[int], views: Views) -> dict[str, float]:
    """All/Old/New ACC (one Hungarian map), NMI, ARI on the test images of the seen classes."""
    keep = torch.isin(proto.y_test, torch.as_tensor(seen))
    _, logits = encode(net, take(proto.x_test, keep), views.pre)
    y, pred = proto.y_test[keep].numpy(), logits.argmax(1).numpy()
    out = old_new_accuracy(y, pred, set(range(proto.n_old)))
    out.update({"nmi": nmi(y, pred), "ari": ari(y, pred)})
    return out


class StepCount:
    """Loss calls so far (the teacher-temperature warm-up's clock), saved in fit's checkpoints."""

    def __init__(self) -> None:
        self.n = 0

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, st: dict[str, int]) -> None:
        self.n = int(st["n"])


def teacher_temperature(cfg: Config, epoch: int) -> float:
    """Stage-0 teacher temperature of ``epoch``, as the official ``DistillLoss`` schedule: ``np.linspace(t0, t1,
    W)`` over the first W = teacher_warmup_frac x stage0_epochs epochs (30 of 100), then t1; it moves once
    per epoch."""
    (t0, t1), w = cfg.teacher_temp0, max(1, int(cfg.teacher_warmup_frac * cfg.stage0_epochs))
    if epoch >= w:
        return t1
    return t0 if w == 1 else t0 + (t1 - t0) * epoch / (w - 1)


def train_stage0(cfg: Config, net: CGCDNet, proto: Protocol, views: Views, ctx) -> None:  # noqa: ANN001
    """SimGCD recipe with all stage-0 samples labeled (spec §3):
    0.65·(self-distillation + memax) + 0.35·CE(cos/0.1) + 0.65·InfoNCE + 0.35·SupCon."""
    s0 = proto.stages[0]
    tc = _train_cfg(cfg, cfg.stage0_epochs, cfg.lr0)
    per_epoch = len(s0.y) // cfg.batch_size  # the last partial batch is dropped
    calls = StepCount()  # checkpointed with the fit: a resumed run continues the warm-up where it stopped

    def loss(m: CGCDNet, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        temp = teacher_temperature(cfg, calls.n // per_epoch)
        calls.n += 1
        x = views.train_pre(xb)
        (_, z1, c1), (_, z2, c2) = m(views.aug(x)), m(views.aug(x))
        cluster = self_distillation([c1, c2], temp) + memax(mean_probs([c1, c2]))
        ce = F.cross_entropy(torch.cat([c1, c2]) / 0.1, torch.cat([yb, yb]))
        return 0.65 * cluster + 0.35 * ce + 0.65 * info_nce([z1, z2], cfg.nce_temp) + \
            0.35 * supcon([z1, z2], yb, cfg.supcon_temp)

    fit(net, loss, fit_data(s0.x, s0.y, cfg.batch_size, ctx), tc, ctx=ctx, name="stage0", stateful={"teacher": calls},
        param_groups=decay_groups(net, cfg.weight_decay))


def run_continual(cfg: Config, method: str, net0: CGCDNet, proto: Protocol, views: Views, protos0: torch.Tensor,
                  radius: float, ctx) -> tuple[dict[str, float], dict[str, float]]:  # noqa: ANN001
    """Stages 1..T for one method from the shared stage-0 model; (per-stage metrics, mechanics checks)."""
    happy = method in ("happy", "happy_uniform")  # clustering init + soft entropy
    dev = torch.device(ctx.device)
    net = copy.deepcopy(net0)
    if cfg.train_last_only and cfg.backbone == "mlp":
        for p in net.backbone.linears[0].parameters():
            p.requires_grad = False
    protos, proto_labels = protos0.clone(), torch.arange(len(protos0))
    out: dict[str, float] = {}
    mech: dict[str, float] = {}
    for st in proto.stages[1:]:
        n_prev = net.head.n_classes
        prev = copy.deepcopy(net).eval()
        for p in prev.parameters():
            p.requires_grad = False
        feats, _ = encode(net, st.x, views.pre)
        if happy:  # §3 step 1: clustering-guided initialisation
            cents = kmeans_centroids(feats, n_prev + len(st.new_classes), ctx.seed + st.index)
            chosen = select_new_centroids(cents, net.head.cpu(), len(st.new_classes),
                                          largest=cfg.variant == "init_largest")
            if st.index == 1 and method == "happy":
                with torch.no_grad():
                    ml = net.head(F.normalize(cents, dim=1)).max(1).values
                rest = torch.ones(len(ml), dtype=torch.bool)
                rest[chosen] = False
                mech["init_maxlogit_gap"] = float(ml[rest].min() - ml[chosen].max())
            net.head.grow(cents[chosen])
        else:  # naive: random new rows
            net.head.grow(torch.randn(len(st.new_classes), feats.shape[1]))
        net.to(dev)
        probs = hap_probs(protos, cfg.hap_temp, uniform=method != "happy",
                          inverted=method == "happy" and cfg.variant == "hap_inverted").to(dev)  # broken
        if method == "happy" and st.index == 1:  # spec §6: probabilities = softmax(h/0.1), float64 recomputation
            pn = F.normalize(protos.double(), dim=1).numpy()
            sim = pn @ pn.T
            np.fill_diagonal(sim, 0.0)
            h = sim.sum(1) / (len(pn) - 1)
            ref = np.exp((h - h.max()) / cfg.hap_temp)
            mech["hap_prob_err"] = float(np.abs(probs.cpu().double().numpy() - ref / ref.sum()).max())
            mech["hap_favours_hardest"] = float(int(probs.argmax()) == int(hardness(protos).argmax()))
        p_dev, l_dev = protos.to(dev), proto_labels.to(dev)
        lam_hap = 0.0 if (method == "happy" and cfg.variant == "no_hap") else cfg.lambda_hap  # no_hap: broken

        def loss(m: CGCDNet, xb: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
            xb = xb[0] if isinstance(xb, (tuple, list)) else xb  # streamed batches carry labels: unused here
            x = views.train_pre(xb)
            v = torch.cat([views.aug(x) for _ in range(N_VIEWS)])
            f, z, c = m(v)
            (c1, c2), (z1, z2) = c.chunk(2), z.chunk(2)
            p_bar = mean_probs([c1, c2])
            reg = soft_entropy(p_bar, n_prev, cfg.w_group)[0] if happy else memax(p_bar)
            if happy and cfg.variant == "swapped_entropy":  # broken on purpose: rewards collapse
                reg = -reg
            with torch.no_grad():
                f_old = prev.features(v)
            return (self_distillation([c1, c2], cfg.teacher_temp) + reg + info_nce([z1, z2], cfg.nce_temp)
                    + lam_hap * hap_loss(m.head, p_dev, l_dev, radius, N_VIEWS * cfg.batch_size, probs)
                    + cfg.lambda_kd * feature_kd(f, f_old))

        fit(net, loss, fit_data(st.x, None, cfg.batch_size, ctx), _train_cfg(cfg, cfg.stage_epochs, cfg.lr), ctx=ctx,
            name=f"{method}-stage{st.index}", param_groups=decay_groups(net, cfg.weight_decay))
        # store prototypes of the classes discovered at this stage (pseudo-labels = head argmax)
        feats, logits = encode(net, st.x, views.pre)
        pseudo = logits.argmax(1)
        new_idx = list(range(n_prev, net.head.n_classes))
        new_p = class_prototypes(feats, pseudo, new_idx)
        empty = torch.bincount(pseudo, minlength=net.head.n_classes)[new_idx] == 0
        new_p[empty] = F.normalize(net.head.weight.detach().cpu()[new_idx][empty], dim=1)  # no member: head row
        protos = torch.cat([protos, new_p])
        proto_labels = torch.cat([proto_labels, torch.as_tensor(new_idx)])
        ev = evaluate(net, proto, st.seen, views)
        out.update({f"{k}_s{st.index}": v for k, v in ev.items()})
        ctx.log(f"happy_cgcd: {method} stage {st.index}: " + " ".join(f"{k}={v:.3f}" for k, v in ev.items()))
    mech["head_size_minus_seen"] = float(net.head.n_classes - len(proto.stages[-1].seen))
    return out, mech


def summarise(per: dict[str, float], s0_old: float, n_stages: int) -> dict[str, float]:
    """Final-stage and stage-averaged All/Old/New, and forgetting of Old (stage-0 Old − final Old)."""
    out = {f"final_{k}": per[f"{k}_s{n_stages}"] for k in ("all", "old", "new", "nmi", "ari")}
    for k in ("all", "old", "new"):
        out[f"avg_{k}"] = float(np.mean([per[f"{k}_s{t}"] for t in range(1, n_stages + 1)]))
    out["forgetting"] = s0_old - per[f"old_s{n_stages}"]
    return out


def dry_build(cfg: Config, net: CGCDNet, proto: Protocol, views: Views) -> None:
    """Build the full pipeline without training: one stage-0 and one stage-1 loss evaluation."""
    xb = next(batches(proto.stages[0].x, 4, "cpu"))
    (_, z1, c1), (_, z2, c2) = net(views.aug(views.train_pre(xb))), net(views.aug(views.train_pre(xb)))
    self_distillation([c1, c2], 0.07) + info_nce([z1, z2], cfg.nce_temp) + supcon([z1, z2], proto.stages[0].y[:4],
                                                                                   cfg.supcon_temp)
    net.head.grow(torch.randn(cfg.n_new, net.head.weight.shape[1]))
    _, _, c = net(views.pre(next(batches(proto.stages[1].x, 4, "cpu"))))
    soft_entropy(mean_probs([c]), cfg.n_old, cfg.w_group)


@reproduction(
    track="clustering",
    paper=Paper(title="Happy: A Debiased Learning Framework for Continual Generalized Category Discovery",
                authors="Shijie Ma, Fei Zhu, Zhun Zhong, Wenzhuo Liu, Xu-Yao Zhang, Cheng-Lin Liu", year=2024,
                venue="NeurIPS", url="https://arxiv.org/abs/2410.06535",
                code="https://github.com/mashijie1028/Happy-CGCD"),
    config=Config,
    scales={
        "smoke": {"methods": ("happy",), "n_stages": 2, "stage0_epochs": 5, "stage_epochs": 5},
        "small": {},
        "full": {"dataset": "cifar100", "n_old": 50, "n_stages": 5, "n_new": 10, "labeled_frac": 0.8,
                 "per_new": 400, "per_old": 25, "per_disc": 25, "backbone": "vit_b16_dino", "feat_dim": 768,
                 "proj_hidden": 2048, "proj_dim": 256, "stage0_epochs": 100, "stage_epochs": 30, "batch_size": 128,
                 "optimizer": "sgd", "lr0": 0.1, "lr": 0.01, "weight_decay": 5e-5, "schedule": "cosine",
                 "train_last_only": False, "checkpoint_every": 500},
    },
    claims=[
        Claim(id="head-grows", kind="check", text="the head grows to |seen| + N_t classes after every stage",
              metric="head_size_minus_seen", op="==", ref=0.0, scales=("smoke", "small", "full")),
        Claim(id="init-picks-least-known", kind="check",
              text="clustering-guided init picks the centroids with the lowest "
              "max-logit (min max-logit of the rest − max of the chosen ≥ 0)", metric="init_maxlogit_gap",
              op=">=", ref=0.0, scales=("smoke", "small", "full")),
        Claim(id="hap-probs-softmax", kind="check",
              text="HAP sampling probabilities equal softmax(h/0.1) (float64 recomputation)",
              metric="hap_prob_err", op="<=", ref=1e-5, scales=("smoke", "small", "full")),
        # C1/C2: the debiasing (soft entropy on the old/new marginals) is what beats the naive baseline
        Claim(id="avg-all-vs-naive", kind="paper", teeth="swapped_entropy",
              text="C1: All ACC averaged over stages 1..T, Happy ≥ the naive baseline",
              metric="happy_avg_all", op=">=", ref="naive_avg_all", scales=("small", "full")),
        Claim(id="final-all-vs-naive", kind="paper", teeth="swapped_entropy",
              text="C1: final-stage All ACC of Happy ≥ the naive continual baseline",
              metric="happy_final_all", op=">=", ref="naive_final_all", scales=("small", "full")),
        Claim(id="new-vs-naive", kind="paper", teeth="swapped_entropy",
              text="C2: stage-averaged New ACC of Happy ≥ naive baseline",
              metric="happy_avg_new", op=">=", ref="naive_avg_new", scales=("small", "full")),
        # C3: hardness-aware prototype replay limits Old forgetting
        Claim(id="forgetting-vs-naive", kind="paper", teeth="hap_inverted",
              text="C3: Old-class forgetting of Happy ≤ naive baseline",
              metric="happy_forgetting", op="<=", ref="naive_forgetting", scales=("small", "full")),
        Claim(id="hap-vs-uniform-forgetting", kind="paper", teeth="hap_inverted",
              text="C3: hardness-aware sampling forgets Old classes no more than "
              "uniform sampling (Happy vs Happy-uniform)", metric="happy_forgetting", op="<=",
              ref="happy_uniform_forgetting", scales=("small", "full")),
    ],
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2), "small": Resources(cpus=2, mem_gb=2, time_min=15),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=1440)},
    tables=[Table(name="happy-all-per-stage", metric="{row}_{col}", rows=METHODS,
                  cols=tuple(f"all_s{t}" for t in range(1, 6)), title="Happy vs naive: All ACC after each stage",
                  row_label="method"),
            Table(name="happy-final", metric="{row}_{col}", rows=METHODS,
                  cols=("final_all", "final_old", "final_new", "avg_all", "forgetting"),
                  title="Happy vs naive: final All/Old/New, stage-average All, Old forgetting", row_label="method")],
)
def run(cfg: Config, ctx) -> Outcome:  # noqa: ANN001
    if not cfg.methods or any(m not in METHODS for m in cfg.methods):
        raise ConfigError(f"methods={cfg.methods} invalid; use a subset of {METHODS}")
    proto, views, shape, ref = load_protocol(cfg, ctx)
    weights = dino_weights(ctx, cfg.weights) if cfg.backbone == "vit_b16_dino" else None
    backbone, fdim, wdesc = build_backbone(cfg.backbone, int(np.prod(shape)), cfg.hidden, cfg.feat_dim,
                                           cfg.image_size, weights, ctx.dry_run)
    net = CGCDNet(backbone, fdim, cfg.n_old, cfg.proj_dim, cfg.proj_hidden, cfg.proj_layers)
    if ctx.dry_run:
        dry_build(cfg, net, proto, views)
        return Outcome(metrics={}, dataset=ref, notes={"backbone_weights": wdesc})
    ctx.log(f"happy_cgcd: backbone {wdesc}; stage 0 on {len(proto.stages[0].y)} labeled images")
    train_stage0(cfg, net, proto, views, ctx)
    s0 = proto.stages[0]
    feats0, _ = encode(net, s0.x, views.pre)
    protos0 = class_prototypes(feats0, s0.y, s0.seen)
    radius = shared_radius(feats0, s0.y)
    ev0 = evaluate(net, proto, s0.seen, views)
    metrics: dict[str, float] = {"stage0_old": ev0["old"], "stage0_nmi": ev0["nmi"], "radius": radius}
    for method in cfg.methods:
        per, mech = run_continual(cfg, method, net, proto, views, protos0, radius, ctx)
        metrics.update({f"{method}_{k}": v for k, v in per.items()})
        metrics.update({f"{method}_{k}": v for k, v in summarise(per, ev0["old"], cfg.n_stages).items()})
        if method == "happy":
            metrics.update(mech)
        else:
            metrics.setdefault("head_size_minus_seen", mech["head_size_minus_seen"])
    if set(METHODS) <= set(cfg.methods):
        metrics["happy_minus_naive_final_all"] = metrics["happy_final_all"] - metrics["naive_final_all"]
    return Outcome(metrics=metrics, dataset=ref, notes={"backbone_weights": wdesc, "class_order": proto.order})
