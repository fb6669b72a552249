"""The benchmark's tracks on one dataset (spec §4, §6): learning-task and architecture accuracy,
corruption robustness, training consumption, theoretical complexity, hardware micro-benchmark.

Protocol (spec §6 / BiBench configs): train the FP model, then every algorithm starts from a copy of
it (``init_cfg=Pretrained``) with its inner layers binarized and is trained with the same schedule.
Every overall metric is the quadratic mean of spec §4; the per-algorithm numbers are metrics
``<track>/<algo>``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.bibench.complexity import complexity, count
from reproductions.bibench.corruptions import CORRUPTIONS, corrupt
from reproductions.bibench.layers import ALGO_NAMES, ALGORITHMS, BinaryOptions, update_epoch
from reproductions.bibench.models import ARCHS, FAMILY, binarize, build
from suite.data import digits
from suite.data.augment import flip_crop
from suite.data.catalog import load_dataset
from suite.errors import ConfigError, UnknownNameError
from suite.metrics import accuracy
from suite.spec import DatasetRef
from suite.train import TrainConfig, fit

DATASETS = ("digits", "cifar-10")
ARCH_INPUT = {"digits_cnn": (1, 8, 8), "digits_mlp": (1, 8, 8), "resnet20": (3, 32, 32), "resnet18": (3, 32, 32),
              "resnet34": (3, 32, 32), "bireal18": (3, 32, 32), "reactnet": (3, 32, 32), "vgg_small": (3, 32, 32),
              "resnet18_imagenet": (3, 224, 224)}


@dataclass
class Data:
    x_train: torch.Tensor  # [0, 1] images (N, C, H, W)
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor  # per-channel normalisation (1, C, 1, 1)
    std: torch.Tensor
    ref: DatasetRef

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# BiBench configs/_base_/datasets/cifar10.py img_norm_cfg (0-255 pixels; its std is the mean per-image std,
# not the std over all pixels): CIFAR-10 is normalised with these constants, not with statistics of the data.
OFFICIAL_NORM = {"cifar-10": ((125.307, 122.961, 113.8575), (51.5865, 50.847, 51.255))}


def load(dataset: str, ctx: Any, split_seed: int = 0, limit: int = 0) -> Data:
    """digits (sklearn 8x8, 1437/360 split, stand-in) or CIFAR-10 (python pickles via the catalog).
    Normalisation: BiBench's constants for CIFAR-10 (``OFFICIAL_NORM``), the training pixels' per-channel
    mean and std for the digits stand-in."""
    if dataset == "digits":
        sp = digits.load(seed=split_seed, test_frac=360 / 1797)
    elif dataset == "cifar-10":
        sp = load_dataset(ctx, "cifar-10")
    else:
        raise UnknownNameError(f"unknown dataset {dataset!r}; use one of {DATASETS}")
    tr, te = sp["train"], sp["test"]
    xtr, xte = tr.x.float(), te.x.float()
    if tr.x.dtype == torch.uint8:
        xtr, xte = xtr / 255.0, xte / 255.0
    if limit:
        xtr, xte = xtr[:limit], xte[:limit]
    ytr, yte = tr.y[: len(xtr)], te.y[: len(xte)]
    if dataset in OFFICIAL_NORM:
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) / 255.0 for v in OFFICIAL_NORM[dataset])
    else:
        mean = xtr.mean((0, 2, 3), keepdim=True)
        std = xtr.std((0, 2, 3), keepdim=True).clamp_min(1e-3)
    return Data(xtr, ytr, xte, yte, mean, std, tr.ref)


def parse_setting(s: str) -> tuple[str, float, str]:
    """'adam_1e-3_cosine' -> ('adam', 1e-3, 'cosine') (BiBench eff_train settings)."""
    try:
        opt, lr, sched = s.split("_")
        return opt, float(lr), sched
    except ValueError:
        raise ConfigError(f"hyper setting {s!r} must look like 'adam_1e-3_cosine' or 'sgd_1e-1_step'") from None


# SGD momentum per schedule, as BiBench's schedule files: the cosine ones set momentum=0.9
# (configs/_base_/schedules/sgd_1e-*_cosinelr_*e.py), the step ones set none, so torch's SGD default 0
# (sgd_1e-1_steplr_200e.py, sgd_1e-2_steplr_200e.py).
SGD_MOMENTUM = {"cosine": 0.9, "step": 0.0}


def train_config(cfg: Any, epochs: int, setting: str, wd: float) -> TrainConfig:
    """The optimizer/schedule of one ``fit`` for ``setting`` (BiBench ``<optimizer>_<lr>_<schedule>`` files)."""
    opt, lr, sched = parse_setting(setting)
    extra = {"momentum": SGD_MOMENTUM[sched]} if opt == "sgd" and sched in SGD_MOMENTUM else {}
    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, optimizer=opt, schedule=sched,
                       weight_decay=wd, log_every=0, checkpoint_every=cfg.checkpoint_every, **extra)


def hyper_weight_decay(cfg: Any, setting: str) -> float:
    """Weight decay of a hyper-sensitivity run, FP and binarized alike: BiBench's SGD schedules set
    ``cfg.hyper_weight_decay`` (1e-4), its Adam schedules none (configs/_base_/schedules/*_200e.py)."""
    return cfg.hyper_weight_decay if parse_setting(setting)[0] == "sgd" else 0.0


def fp_schedule(cfg: Any, arch: str) -> tuple[str, float]:
    """Setting and weight decay of ``arch``'s FP training: ``fp_setting`` with ``fp_weight_decay``, unless
    ``fp_arch_settings`` names the architecture (``"reactnet:adam_1e-3_cosine"``: BiBench's
    ``acc_cifar10/reactnet_fp32.py`` uses ``adam_1e-3_cosinelr_200e``, whose Adam sets no weight decay)."""
    for entry in cfg.fp_arch_settings:
        name, sep, setting = entry.partition(":")
        if not sep:
            raise ConfigError(f"fp_arch_settings entry {entry!r} must read '<arch>:<setting>'")
        if name == arch:
            return setting, cfg.fp_weight_decay if parse_setting(setting)[0] == "sgd" else 0.0
    return cfg.fp_setting, cfg.fp_weight_decay


@dataclass
class Trained:
    acc: float
    corrupt_acc: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    steps: int = 0
    step_s: float = float("nan")  # seconds per training step (OM_train's T), resumed runs included


class StepClock:
    """Seconds spent in the training steps of one ``fit``, carried in its checkpoint (``fit(stateful=...)``).

    OM_train's T is a time per step: a run resumed after a preemption (or a rehearsal's second pass) must
    report the steps it trained before the interruption, not the seconds it took to reload a finished
    checkpoint. Checkpoint saves and reloads fall outside the measured intervals.
    """

    def __init__(self) -> None:
        self.seconds, self.steps, self._mark = 0.0, 0, time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self._mark
        self.steps += 1
        self._mark = now

    def restart(self) -> None:
        self._mark = time.perf_counter()

    @property
    def per_step(self) -> float:
        return self.seconds / self.steps if self.steps else float("nan")

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds, "steps": self.steps}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.seconds, self.steps = float(state["seconds"]), int(state["steps"])
        self.restart()


class Bench:
    """Trains and evaluates models for one run (shared data, settings and context)."""

    def __init__(self, cfg: Any, ctx: Any, data: Data, opts: BinaryOptions) -> None:
        self.cfg, self.ctx, self.data, self.opts = cfg, ctx, data, opts
        dev = ctx.device
        self.xtr, self.ytr = data.norm(data.x_train).to(dev), data.y_train.to(dev)
        self.xte, self.yte = data.norm(data.x_test).to(dev), data.y_test.to(dev)
        self._corrupted: dict[str, list[torch.Tensor]] | None = None

    def new(self, arch: str) -> nn.Module:
        c, h, _ = self.data.shape
        return build(arch, int(self.data.y_train.max()) + 1 if len(self.data.y_train) else 10, c, h).to(self.ctx.device)

    def train(self, model: nn.Module, name: str, epochs: int, setting: str | None = None,
              wd: float | None = None) -> Trained:
        cfg = self.cfg
        tc = train_config(cfg, epochs, setting or cfg.setting, cfg.weight_decay if wd is None else wd)
        spe = math.ceil(len(self.ytr) / cfg.batch_size)
        update_epoch(model, 0, epochs)
        state = {"epoch": 0}
        clock = StepClock()

        def on_step(st: Any) -> None:  # BiBench model_params_update hook, once per epoch
            clock.tick()
            e = st.step // spe
            if e != state["epoch"] and e < epochs:
                state["epoch"] = e
                update_epoch(model, e, epochs)

        aug = cfg.augment

        def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            x = flip_crop(b[0]) if aug else b[0]
            return F.cross_entropy(m(x), b[1])

        t0 = time.perf_counter()
        clock.restart()
        res = fit(model, loss_fn, (self.xtr, self.ytr), tc, ctx=self.ctx, on_step=on_step, name=name,
                  stateful={"step_clock": clock})
        wall = time.perf_counter() - t0
        return Trained(self.evaluate(model, self.xte), wall_s=wall, steps=res.total_steps, step_s=clock.per_step)

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model.eval()
        out = torch.cat([model(x[i:i + self.cfg.eval_batch]) for i in range(0, len(x), self.cfg.eval_batch)])
        model.train()
        return out

    def evaluate(self, model: nn.Module, x: torch.Tensor) -> float:
        return accuracy(self.predict(model, x).cpu(), self.yte.cpu())

    def corrupted_sets(self) -> dict[str, list[torch.Tensor]]:
        """Per corruption, the normalised test set at severities 1..cfg.severities (seeded once)."""
        if self._corrupted is None:
            g = self.ctx.generator(77)
            x01 = self.data.x_test
            self._corrupted = {k: [self.data.norm(corrupt(x01, k, s, g)).to(self.ctx.device)
                                   for s in range(1, self.cfg.severities + 1)] for k in self.cfg.corruptions}
        return self._corrupted

    def robustness(self, model: nn.Module) -> dict[str, float]:
        """Accuracy per corruption, averaged over severities (CIFAR-10-C files stack the 5 severities)."""
        return {k: sum(self.evaluate(model, x) for x in xs) / len(xs) for k, xs in self.corrupted_sets().items()}


def ratio(num: float, den: float) -> float:
    """``num / den`` for the accuracy ratios A_bi / A_fp of the overall metrics (spec §4). An FP model at 0 %
    accuracy (a diverged run, a tiny fixture) gives inf when the binarized model scores above 0 (it is
    infinitely better than FP) and nan for 0 / 0 (no ratio defined; ``quadratic_mean`` skips it)."""
    if den == 0:
        return float("nan") if num == 0 else math.copysign(float("inf"), num)
    return num / den


def quadratic_mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else float("nan")


def algo_index(algo: str) -> int:
    """Plot x-position: 0 = FP, then the order of ``ALGO_NAMES`` (1 = bnn ... 8 = fda)."""
    return 0 if algo == "fp" else ALGO_NAMES.index(algo) + 1


def _check_cfg(cfg: Any) -> None:
    bad = [a for a in cfg.algorithms if a not in ALGORITHMS]
    if bad:
        raise UnknownNameError(f"unknown algorithms {bad}; use some of {ALGO_NAMES}")
    if not cfg.archs:
        raise ConfigError("archs is empty; give at least one architecture (e.g. archs=digits_cnn)")
    for c in cfg.corruptions:
        if c not in CORRUPTIONS:
            raise UnknownNameError(f"unknown corruption {c!r}; use some of {CORRUPTIONS}")
    for s in cfg.hyper_settings:
        parse_setting(s)
    for entry in cfg.fp_arch_settings:
        name, _, setting = entry.partition(":")
        if name not in ARCHS:
            raise UnknownNameError(f"fp_arch_settings: unknown architecture {name!r}; use one of {sorted(ARCHS)}")
        parse_setting(setting)
    for arch in cfg.archs:
        fp_schedule(cfg, arch)


def accuracy_tracks(bench: Bench, cfg: Any, ctx: Any) -> dict[str, float]:
    """Learning-task / architecture / robustness / training-consumption tracks (spec §4)."""
    m: dict[str, float] = {}
    main = cfg.archs[0]
    ratios: dict[str, list[float]] = {a: [] for a in cfg.algorithms}
    gaps: dict[str, dict[str, float]] = {}
    time_per_step: dict[str, float] = {}
    for arch in cfg.archs:
        torch.manual_seed(ctx.seed * 1000 + 1)
        fp = bench.new(arch)
        t = bench.train(fp, f"fp-{arch}", cfg.fp_epochs, *fp_schedule(cfg, arch))
        m[f"acc/{arch}/fp"] = t.acc
        ctx.log("bibench: %s FP acc %.4f (%.1fs)", arch, t.acc, t.wall_s)
        if arch == main:
            rob = bench.robustness(fp)
            gaps["fp"] = {k: t.acc - v for k, v in rob.items()}
            m.update({f"corrupt_acc/{k}/fp": v for k, v in rob.items()})
        for algo in cfg.algorithms:
            torch.manual_seed(ctx.seed * 1000 + 2 + algo_index(algo))
            bm = binarize(fp, algo, bench.opts, cfg.binarize_downsample)
            tb = bench.train(bm, f"{arch}-{algo}", cfg.bin_epochs)
            m[f"acc/{arch}/{algo}"] = tb.acc
            ratios[algo].append(ratio(tb.acc, t.acc))
            ctx.log("bibench: %s %s acc %.4f (%.1fs)", arch, algo, tb.acc, tb.wall_s)
            if arch == main:
                time_per_step[algo] = tb.step_s
                rob = bench.robustness(bm)
                gaps[algo] = {k: tb.acc - v for k, v in rob.items()}
                m.update({f"corrupt_acc/{k}/{algo}": v for k, v in rob.items()})
        if arch == main:
            time_per_step["fp"] = t.step_s
    fp_acc = m[f"acc/{main}/fp"]
    accs = {a: m[f"acc/{main}/{a}"] for a in cfg.algorithms}
    m["acc/fp"] = fp_acc
    for a in cfg.algorithms:
        m[f"acc/{a}"] = accs[a]
        m[f"om_task/{a}"] = ratio(accs[a], fp_acc)  # one learning task here: OM_task = ratio
        m[f"om_arch/{a}"] = quadratic_mean(ratios[a])  # quadratic mean over the architectures run
        # robustness: G_fp / G_bi per corruption, gaps floored at cfg.gap_floor (README)
        rs = [max(gaps["fp"][k], cfg.gap_floor) / max(gaps[a][k], cfg.gap_floor) for k in cfg.corruptions]
        m[f"om_robust/{a}"] = quadratic_mean(rs)
        m[f"time_ratio/{a}"] = ratio(time_per_step["fp"], time_per_step[a])
    m["acc_bi_max"] = max(accs.values())
    m["acc_bi_min"] = min(accs.values())
    soft = [accs[a] for a in cfg.algorithms if ALGORITHMS[a].soft]
    m["acc_soft_group_mean"] = sum(soft) / len(soft) if soft else float("nan")
    for arch in cfg.archs:  # per-family accuracy ratio (architecture track)
        fam = FAMILY.get(arch, arch)
        vals = [ratio(m[f"acc/{arch}/{a}"], m[f"acc/{arch}/fp"]) for a in cfg.algorithms]
        m[f"ratio_mean/{fam}/{arch}"] = sum(vals) / len(vals)
    m.update(_plot_points(m, cfg))
    if cfg.hyper_settings:
        m.update(training_consumption(bench, cfg, ctx, time_per_step))
    return m


def _plot_points(m: dict[str, float], cfg: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for j, arch in enumerate(cfg.archs):
        for a in ("fp", *cfg.algorithms):
            out[f"acc_{'main' if j == 0 else arch}@algo={algo_index(a)}"] = m[f"acc/{arch}/{a}"]
    for a in cfg.algorithms:
        for track in ("om_task", "om_arch", "om_robust"):
            out[f"{track}@algo={algo_index(a)}"] = m[f"{track}/{a}"]
    return out


def training_consumption(bench: Bench, cfg: Any, ctx: Any, time_per_step: dict[str, float]) -> dict[str, float]:
    """OM_train = sqrt((E[T_fp/T_bi]^2 + E[std(A_fp)/std(A_bi)]^2) / 2) over the hyper settings (spec §4).

    As BiBench's ``configs/eff_train`` (no ``init_cfg=Pretrained`` there), FP and binarized models train
    from scratch, all from the same seeded initialisation, with the setting's own weight decay and
    momentum (``hyper_weight_decay``, ``SGD_MOMENTUM``); T is the training time per step of the
    main-track runs.
    """
    main = cfg.archs[0]
    accs: dict[str, list[float]] = {"fp": [], **{a: [] for a in cfg.algorithms}}
    for s in cfg.hyper_settings:
        torch.manual_seed(ctx.seed * 1000 + 500)
        init = bench.new(main)
        for a in ("fp", *cfg.algorithms):
            model = copy.deepcopy(init) if a == "fp" else binarize(init, a, bench.opts, cfg.binarize_downsample)
            wd = hyper_weight_decay(cfg, s)  # same for FP and binarized (eff_train shares the schedule files)
            accs[a].append(bench.train(model, f"hyper-{s}-{a}", cfg.hyper_epochs, s, wd).acc)
    m: dict[str, float] = {}
    sd = {k: float(torch.tensor(v, dtype=torch.float64).std()) if len(v) > 1 else float("nan")
          for k, v in accs.items()}
    m["hyper_std/fp"] = sd["fp"]
    for a in cfg.algorithms:
        m[f"hyper_std/{a}"] = sd[a]
        std_ratio = max(sd["fp"], cfg.std_floor) / max(sd[a], cfg.std_floor)
        time_ratio = ratio(time_per_step["fp"], time_per_step[a])
        m[f"om_train/{a}"] = math.sqrt((time_ratio ** 2 + std_ratio ** 2) / 2)
        m[f"om_train@algo={algo_index(a)}"] = m[f"om_train/{a}"]
    return m


def complexity_track(cfg: Any, divisor: float, param_divisor: float = 32.0) -> dict[str, float]:
    """r_c, r_s, OM_comp per algorithm for each architecture of ``cfg.complexity_archs`` (spec §4)."""
    m: dict[str, float] = {}
    for arch in cfg.complexity_archs:
        if arch not in ARCH_INPUT:
            raise UnknownNameError(f"unknown complexity arch {arch!r}; use some of {sorted(ARCH_INPUT)}")
        inp = ARCH_INPUT[arch]
        mc = count(build(arch, 1000 if arch == "resnet18_imagenet" else 10, inp[0], inp[1]), inp,
                   cfg.binarize_downsample, binarize_first_last=cfg.variant == "binarize_first_last")
        m[f"rc/{arch}"] = complexity(mc, "bnn", divisor, param_divisor).rc
        for a in ALGO_NAMES:  # theoretical: all eight algorithms, whatever was trained
            cx = complexity(mc, a, divisor, param_divisor)
            m[f"rs/{arch}/{a}"] = cx.rs
            m[f"om_comp/{arch}/{a}"] = cx.om
            if arch == cfg.complexity_archs[0]:
                m[f"rs@algo={algo_index(a)}"] = cx.rs
                m[f"om_comp@algo={algo_index(a)}"] = cx.om
    return m


def hardware_track(cfg: Any, seed: int) -> dict[str, float]:
    from reproductions.bibench.hardware import micro_benchmark

    r = micro_benchmark(cfg.bench_m, cfg.bench_m, cfg.bench_k, cfg.bench_repeats, seed)
    return {"xnor_popcount_max_err": r.max_abs_err, "hw_latency_ratio": r.speedup,
            "hw_storage_ratio": r.storage_ratio, "hw_t_float_ms": 1e3 * r.t_float_s,
            "hw_t_binary_ms": 1e3 * r.t_binary_s}


def dry_run(bench: Bench, cfg: Any) -> dict[str, float]:
    """Build every model of the run (FP + each algorithm, each architecture) and push one batch through."""
    x = bench.xtr[:2]
    n = 0
    for arch in cfg.archs:
        fp = bench.new(arch)
        fp(x)
        for a in cfg.algorithms:
            bm = binarize(fp, a, bench.opts, cfg.binarize_downsample)
            F.cross_entropy(bm(flip_crop(x) if cfg.augment else x), bench.ytr[:2]).backward()
            n += 1
    return {"dry_run_models": float(n)}


__all__ = ["Data", "load", "Bench", "train_config", "fp_schedule", "hyper_weight_decay", "SGD_MOMENTUM",
           "OFFICIAL_NORM", "accuracy_tracks", "complexity_track", "hardware_track", "dry_run", "quadratic_mean", "algo_index",
           "parse_setting", "DATASETS"]
