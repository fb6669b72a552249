"""S4D — On the Parameterization and Initialization of Diagonal State Space Models (Gu et al. 2022).

Every run measures the exactness of the layer (spec §6 T1-T3: Vandermonde kernel vs the unrolled
recurrence for ZOH and bilinear, FFT vs direct convolution, step vs convolution mode). Then:

- smoke / small (``task='memory'``, spec §6): the remember-the-digit task. Causal 2-layer S4D read
  out at the last step, S4D-Lin and S4D-Inv with dt in [1e-3, 1e-1] against the same model with a
  mis-scaled timescale dt in [0.5, 1] (claim C2: initialisation and timescale are critical).
- full (``task='lra'``, spec §5): the six LRA tasks read from the LRA release formats, S4D-Inv,
  S4D-LegS and S4D-Lin with the repo's per-task hyper-parameters (claim C1 and the paper's table).

Pieces: layer.py (the S4D layer, inits, kernel, optimiser groups), model.py (LRA blocks),
tasks.py (data), experiment.py (training with suite.train.fit), checks.py (exactness, speed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from reproductions.s4d import checks
from reproductions.s4d.checks import Variant
from reproductions.s4d.experiment import OptimConfig, accuracy, mean_loss, param_groups, steps_per_epoch, train_classifier
from suite.config import Range
from suite.models.ssm import INITS, SSMConfig
from reproductions.s4d.model import ModelConfig, S4DClassifier
from reproductions.s4d.tasks import LRA_TASKS, LRATask, head, lra_inputs, lra_task, memory_task, open_lra
from suite.errors import ConfigError, UnknownNameError
from suite.registry import reproduction
from suite.spec import Assembly, Claim, DatasetRef, Outcome, Paper, Resources
from suite.train import TrainConfig, optimizer

TASKS = ("memory", "lra")

# The paper's LRA table (test accuracy %, spec §2 C1). Path-X "fail" of S4D-Lin counts as 50.
PAPER_LRA = {
    "legs": {"listops": 60.47, "text": 86.18, "retrieval": 89.46, "image": 88.19, "pathfinder": 93.06, "pathx": 91.95},
    "inv": {"listops": 60.18, "text": 87.34, "retrieval": 91.09, "image": 87.83, "pathfinder": 93.78, "pathx": 92.80},
    "lin": {"listops": 60.52, "text": 86.97, "retrieval": 90.96, "image": 87.93, "pathfinder": 93.96, "pathx": 50.0},
}
PAPER_AVG = {"inv": 85.50, "legs": 84.89, "lin": 78.39}
PAPER_NOTE = "unverified: spec's copy of the paper's LRA table, not checked against the PDF; rows average consistently"
NAMES = {"inv": "S4D-Inv", "legs": "S4D-LegS", "lin": "S4D-Lin", "real": "S4D-Real", "rand": "S4D-Rand"}


@dataclass
class Config:
    """``task``: 'memory' (spec §6, stand-in) or 'lra' (§5, the paper's data).

    ``variant`` (broken on purpose, teeth): 'circular_fft' (FFT of length L: wrap-around) or
    'halved_kernel' (forgets the conjugate-pair factor 2) break the exactness checks; 'untrained'
    evaluates every memory-task model at its initialisation (no training step), which must break
    the C2 claims (lin-/inv-beats-mis-scaled-dt).
    """

    task: str = "memory"
    # exactness checks (every scale)
    check_L: Annotated[int, Range(1)] = 128
    variant: Variant = "paper"
    speed: bool = False  # kernel speed H=256, N=64, L=4096: blocked vs plain recurrence and minimal kernel
    # memory task (C2)
    seq_len: Annotated[int, Range(1)] = 1024
    noise: Annotated[float, Range(0)] = 0.1
    n_train: Annotated[int | None, Range(1)] = None
    inits: tuple[str, ...] = ("lin", "inv")
    control_init: str = "lin"
    dt_range: tuple[Annotated[float, Range(0, open_lo=True)], Annotated[float, Range(0, open_lo=True)]] = (1e-3, 1e-1)
    control_dt: tuple[Annotated[float, Range(0, open_lo=True)], Annotated[float, Range(0, open_lo=True)]] = (0.5, 1.0)
    d_model: Annotated[int, Range(1)] = 32
    n_layers: Annotated[int, Range(1)] = 2
    d_state: Annotated[int, Range(1)] = 64
    disc: str = "zoh"
    norm: str = "batch"
    epochs: Annotated[int, Range(1)] = 15
    batch_size: Annotated[int, Range(1)] = 64
    lr: Annotated[float, Range(0, open_lo=True)] = 0.01
    ssm_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    weight_decay: Annotated[float, Range(0)] = 0.05
    # LRA (full)
    lra_tasks: tuple[str, ...] = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
    lra_inits: tuple[str, ...] = ("inv", "legs", "lin")
    lra_epochs: Annotated[int | None, Range(0)] = None  # None: each task's own budget (spec §5)
    lra_max_train: Annotated[int | None, Range(1)] = None  # first N training examples per task (None: all)
    lra_max_eval: Annotated[int | None, Range(1)] = None  # first N val / test examples per task (None: all)
    workers: Annotated[int, Range(0)] = 4  # DataLoader processes reading Text/Retrieval/Path-X from disk (CUDA)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UnknownNameError(f"unknown task {self.task!r}; use one of {TASKS}")
        for i in tuple(self.inits) + tuple(self.lra_inits) + (self.control_init,):
            if i not in INITS:
                raise UnknownNameError(f"unknown S4D init {i!r}; use one of {INITS}")
        for t in self.lra_tasks:
            lra_task(t)

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        for key, (lo, hi) in (("dt_range", self.dt_range), ("control_dt", self.control_dt)):
            if lo > hi:
                raise ConfigError(f"{key}={lo},{hi}: the first value (dt_min) must not exceed the second (dt_max)")


def _acc(task: str, init: str) -> str:
    return f"lra_{task}_{init}_acc_pct"


LRA_NO_TEETH = ("full scale only (the six LRA tasks, GPU-days); teeth run at small scale, where C2 is "
                "lin-/inv-beats-mis-scaled-dt (teeth: untrained)")


def _lra_claims() -> list[Claim]:
    out: list[Claim] = []
    for task in LRA_TASKS:
        for init, other in (("inv", "legs"), ("legs", "inv"), ("lin", "legs")):
            if task == "pathx" and init == "lin":
                out.append(Claim(
                    id="lra-pathx-lin", text="S4D-Lin fails Path-X: >= 10 points below S4D-Inv (C2)",
                    metric=_acc(task, init), op="<", ref=_acc(task, "inv"), tol=10.0, scales=("full",),
                    paper=PAPER_LRA[init][task], paper_note=PAPER_NOTE + "; 'fail' counted as 50",
                    kind="paper", no_teeth=LRA_NO_TEETH))
                continue
            out.append(Claim(
                id=f"lra-{task}-{init}", text=f"{NAMES[init]} on LRA {task} at most 2 points below "
                f"{NAMES[other]} (C1: diagonal variants match)",
                metric=_acc(task, init), op=">=", ref=_acc(task, other), tol=2.0, scales=("full",),
                paper=PAPER_LRA[init][task], paper_note=PAPER_NOTE, kind="paper", no_teeth=LRA_NO_TEETH))
    out += [
        Claim(id="lra-avg-inv", text="S4D-Inv LRA average at least S4D-LegS's - 1 (C1)",
              metric="lra_avg_inv_acc_pct", op=">=", ref="lra_avg_legs_acc_pct", tol=1.0, scales=("full",),
              paper=PAPER_AVG["inv"], paper_note=PAPER_NOTE, kind="paper",
              no_teeth=LRA_NO_TEETH),
        Claim(id="lra-avg-legs", text="S4D-LegS LRA average above S4D-Lin's (Lin fails Path-X)",
              metric="lra_avg_legs_acc_pct", op=">", ref="lra_avg_lin_acc_pct", scales=("full",),
              paper=PAPER_AVG["legs"], paper_note=PAPER_NOTE, kind="paper",
              no_teeth=LRA_NO_TEETH),
        Claim(id="lra-avg-lin", text="S4D-Lin LRA average below S4D-Inv's (Path-X counted as measured)",
              metric="lra_avg_lin_acc_pct", op="<", ref="lra_avg_inv_acc_pct", scales=("full",),
              paper=PAPER_AVG["lin"], paper_note=PAPER_NOTE, kind="paper",
              no_teeth=LRA_NO_TEETH),
    ]
    return out


CLAIMS = [
    Claim(id="kernel-eq-recurrence-zoh", text="ZOH Vandermonde kernel equals the unrolled recurrence's impulse "
          "response (float64, T1)", metric="err_kernel_vs_recurrence_zoh", op="<=", ref=1e-8, kind="check"),
    Claim(id="kernel-eq-recurrence-bilinear", text="bilinear Vandermonde kernel equals the unrolled recurrence "
          "(float64, T1)", metric="err_kernel_vs_recurrence_bilinear", op="<=", ref=1e-8, kind="check"),
    Claim(id="fft-eq-direct", text="FFT convolution (length 2L) equals direct causal convolution (T2)",
          metric="err_fft_vs_direct", op="<=", ref=1e-8, kind="check"),
    Claim(id="step-eq-conv", text="recurrent (step) mode equals convolution mode (float32, T3)",
          metric="err_step_vs_conv", op="<=", ref=1e-5, kind="check"),
    Claim(id="training-lowers-loss", text="AdamW steps (32 at smoke) on the memory task lower the train loss of "
          "S4D-Lin (T5)", metric="lin_loss_drop", op=">", ref=0.0, scales=("smoke", "small"), kind="check"),
    Claim(id="lin-beats-mis-scaled-dt", text="S4D-Lin (dt in [1e-3,1e-1]) beats the same model with dt in "
          "[0.5,1] by >= 45 points on remember-the-digit (C2)", metric="lin_minus_control_acc", op=">=",
          ref=0.45, scales=("small",), kind="paper", teeth="untrained"),
    Claim(id="inv-beats-mis-scaled-dt", text="S4D-Inv beats the mis-scaled-dt control by >= 45 points (C2)",
          metric="inv_minus_control_acc", op=">=", ref=0.45, scales=("small",), kind="paper", teeth="untrained"),
    # The control's memory decays as exp(-0.5 dt L) ~ 1e-49 at L=512: near chance by construction.
    Claim(id="mis-scaled-dt-near-chance", text="the mis-scaled-dt control stays within 25 points of chance "
          "(information decays as exp(-0.5 dt L))", metric="control_minus_chance_acc", op="<=", ref=0.25,
          scales=("small",), kind="check"),
    # Not a result of the paper (it reports no kernel timing against the recurrence): the blocked form
    # is our implementation choice, timed against the two real baselines, the faster one counting.
    Claim(id="kernel-batched-speedup", text="the blocked Vandermonde kernel (H=256, N=64, L=4096) is >= 5x "
          "faster than the faster of the plain recurrence (Abar precomputed) and the paper's minimal "
          "one-shot Vandermonde kernel", metric="kernel_speedup", op=">=", ref=5.0, scales=("small", "full"),
          kind="check"),
] + _lra_claims()


# --------------------------------------------------------------------------- the run

def _exactness(cfg: Config) -> dict[str, float]:
    L = cfg.check_L
    m = {f"err_kernel_vs_recurrence_{d}": checks.kernel_vs_recurrence(d, L=L, variant=cfg.variant)
         for d in ("zoh", "bilinear")}
    m["err_fft_vs_direct"] = checks.fft_vs_direct(L=L, variant=cfg.variant)
    m["err_step_vs_conv"] = checks.step_vs_conv()
    return m


def _optim(cfg: Config) -> OptimConfig:
    return OptimConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _run_memory(cfg: Config, ctx) -> tuple[dict[str, float], DatasetRef]:
    splits = memory_task(cfg.seq_len, cfg.noise, ctx.generator(11), split_seed=ctx.seed, n_train=cfg.n_train)
    tr, te = splits["train"], splits["test"]
    runs = [(i, i, cfg.dt_range) for i in cfg.inits] + [("control", cfg.control_init, cfg.control_dt)]
    metrics: dict[str, float] = {"acc_chance": float(torch.bincount(te.y).max()) / len(te)}
    for label, init, (dt_min, dt_max) in runs:
        ssm = SSMConfig(d_state=cfg.d_state, init=init, disc=cfg.disc, dt_min=dt_min, dt_max=dt_max,
                        n_ssm=None, lr=cfg.ssm_lr, lr_dt=cfg.ssm_lr)
        mcfg = ModelConfig(n_classes=10, d_model=cfg.d_model, n_layers=cfg.n_layers, norm=cfg.norm,
                           pool="last", ssm=ssm)  # causal, last-step readout (spec §6)
        model = S4DClassifier(mcfg, generator=ctx.generator(100 + len(metrics)))
        if ctx.dry_run:
            optimizer(param_groups(model, cfg.lr, cfg.weight_decay),
                      TrainConfig(steps=1, optimizer="adamw", lr=cfg.lr))
            with torch.no_grad():
                model.eval()(tr.x[:2])
            continue
        if cfg.variant == "untrained":  # teeth: the models as initialised, no training step
            model.to(ctx.device)
            loss = mean_loss(model, tr, lambda x: x, device=ctx.device)
            res = {"test_acc": accuracy(model, te, lambda x: x, device=ctx.device),
                   "train_loss_before": loss, "train_loss_after": loss}
        else:
            res = train_classifier(model, tr, te, te, _optim(cfg), ctx, lambda x: x, name=f"memory-{label}")
        metrics[f"acc_{label}"] = res["test_acc"]
        metrics[f"{label}_loss_drop"] = res["train_loss_before"] - res["train_loss_after"]
        ctx.log("memory %s (%s, dt in [%g, %g]): test acc %.4f", label, init, dt_min, dt_max, res["test_acc"])
    if not ctx.dry_run:
        for i in cfg.inits:
            metrics[f"{i}_minus_control_acc"] = metrics[f"acc_{i}"] - metrics["acc_control"]
        metrics["control_minus_chance_acc"] = metrics["acc_control"] - metrics["acc_chance"]
    return metrics, tr.ref


def _lra_model(task_name: str, init: str, cfg: Config, generator: torch.Generator) -> S4DClassifier:
    t = lra_task(task_name)
    # the S4D paper's per-task settings (tasks.LRA_TASKS, pinned to the official v3 configs: README)
    ssm = SSMConfig(d_state=t.d_state, init=init, disc="zoh", dt_min=t.dt_min, dt_max=0.1, n_ssm=t.n_ssm,
                    lr=t.ssm_lr, lr_dt=t.lr_dt, bidirectional=True, dropout=t.dropout, tie_dropout=t.tie_dropout,
                    conv_dropout=t.dropout)  # S4Block hands its dropout, untied, to its FFTConv too
    mcfg = ModelConfig(n_classes=t.n_classes, d_model=t.d_model, n_layers=t.n_layers, vocab=t.vocab,
                       dropout=t.dropout, norm=t.norm, prenorm=t.prenorm, pool=t.pool, dual=t.dual, ssm=ssm,
                       tie_dropout=t.tie_dropout)  # tied in the residual block and in the layer (model.tie_dropout)
    return S4DClassifier(mcfg, generator=generator)


def lra_averages(metrics: dict[str, float]) -> dict[str, float]:
    """``lra_avg_<init>_acc_pct``: the mean test accuracy over the six LRA tasks, for every init whose six
    task accuracies are all present (one job running every task, or the leaderboard assembling the
    per-task jobs of one config: ``assembly`` below)."""
    out = {}
    for init in INITS:
        accs = [metrics.get(_acc(tk, init)) for tk in LRA_TASKS]
        if all(a is not None for a in accs):
            out[f"lra_avg_{init}_acc_pct"] = sum(accs) / len(accs)  # type: ignore[arg-type]
    return out


def lra_optim(t: LRATask, cfg: Config, n_train: int) -> OptimConfig:
    """The optimiser settings of one LRA task's training run on ``n_train`` examples (the per-task table)."""
    epochs = cfg.lra_epochs or t.epochs
    # the last partial batch is dropped (official drop_last); a sample budget smaller than one batch (the
    # rehearsal's two examples) trains on it as one batch. The whole split (the paper) is never that small.
    batch = min(t.batch_size, n_train)
    per_epoch = steps_per_epoch(n_train, batch)
    # the official horizon (num_training_steps) where the run is the paper's (whole split, the task's epochs;
    # ListOps, Text and Retrieval stop before it); a budget-cut run decays over its own length
    paper_length = cfg.lra_max_train is None and cfg.lra_epochs is None
    return OptimConfig(epochs=epochs, batch_size=batch, lr=t.lr, weight_decay=t.weight_decay,
                       warmup_frac=min(1.0, t.warmup_steps / max(1, epochs * per_epoch)),
                       eval_every=per_epoch, checkpoint_every=per_epoch, workers=cfg.workers,
                       schedule_steps=t.schedule_steps if paper_length else None)


def _run_lra(cfg: Config, ctx) -> tuple[dict[str, float], DatasetRef]:
    metrics: dict[str, float] = {}
    refs: list[DatasetRef] = []
    for task_name in cfg.lra_tasks:
        t = lra_task(task_name)
        # under the data root; a dry run without it writes the fixture there (stand-in), Text / Retrieval /
        # Path-X as DiskSplits streamed from disk
        splits = open_lra(task_name, ctx)
        refs.append(splits["train"].ref)
        tr, va, te = splits["train"], splits["val"], splits["test"]
        if cfg.lra_max_train is not None:  # sample-count budgets (None: the whole split, the paper)
            tr = tr.subset(torch.arange(min(cfg.lra_max_train, len(tr))))
        if cfg.lra_max_eval is not None:
            va, te = (s.subset(torch.arange(min(cfg.lra_max_eval, len(s)))) for s in (va, te))
        opt = lra_optim(t, cfg, len(tr))

        def prep(x: torch.Tensor, t=t) -> torch.Tensor:
            return lra_inputs(x, t)

        for k, init in enumerate(cfg.lra_inits):
            model = _lra_model(task_name, init, cfg, ctx.generator(1000 + 10 * k))
            if ctx.dry_run:  # build data, model, optimiser groups; one forward pass per task
                groups = param_groups(model, t.lr, t.weight_decay)
                optimizer(groups, TrainConfig(steps=1, optimizer="adamw", lr=t.lr, weight_decay=t.weight_decay))
                if k == 0:  # shapes check on the first 1024 positions (a full-length CPU pass takes minutes)
                    with torch.no_grad():
                        out = model.eval()(prep(head(tr, 2)[..., :1024]))
                    if out.shape != (min(2, len(tr)), t.n_classes):
                        raise ConfigError(f"LRA {task_name}: model output {tuple(out.shape)} has the wrong shape")
                continue
            model.to(ctx.device)
            res = train_classifier(model, tr, va, te, opt, ctx, prep, name=f"lra-{task_name}-{init}")
            metrics[_acc(task_name, init)] = 100.0 * res["test_acc"]
            ctx.log("LRA %s S4D-%s: test acc %.2f%% (best val %.2f%%)", task_name, init,
                    100 * res["test_acc"], 100 * res["val_acc"])
    metrics.update(lra_averages(metrics))
    # one ref for the tasks read: least-real provenance of the loaders' refs
    return metrics, DatasetRef.combine(*refs, name="lra:" + "+".join(cfg.lra_tasks))


@reproduction(
    track="lra",
    paper=Paper(title="On the Parameterization and Initialization of Diagonal State Space Models",
                authors="Albert Gu, Ankit Gupta, Karan Goel, Christopher Ré", year=2022, venue="NeurIPS",
                url="https://arxiv.org/abs/2206.11893", code="https://github.com/state-spaces/s4"),
    config=Config,
    scales={
        "smoke": {"task": "memory", "seq_len": 128, "n_train": 256, "epochs": 4, "d_model": 16, "d_state": 16,
                  "inits": ("lin",), "batch_size": 32, "check_L": 64},
        "small": {"task": "memory", "seq_len": 512, "epochs": 6, "speed": True},
        "full": {"task": "lra", "speed": True},
    },
    claims=CLAIMS,
    # one LRA task per job (an array job: --set lra_tasks=<task>); the leaderboard assembles the six
    # tasks' records of one config and computes the lra-avg-* metrics from them
    assembly=Assembly(split="lra_tasks", derive=lra_averages),
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=4320)},
)
def run(cfg: Config, ctx) -> Outcome:
    metrics = _exactness(cfg)
    if cfg.speed and not ctx.dry_run:
        sp = checks.kernel_speed()
        metrics.update({"kernel_speedup": sp["speedup"], "kernel_batched_s": sp["batched_s"],
                        "kernel_recurrence_s": sp["recurrence_s"], "kernel_minimal_s": sp["minimal_s"],
                        "kernel_speedup_vs_recurrence": sp["speedup_vs_recurrence"],
                        "kernel_speedup_vs_minimal": sp["speedup_vs_minimal"]})
    if cfg.task == "memory":
        task_metrics, ref = _run_memory(cfg, ctx)
    else:
        task_metrics, ref = _run_lra(cfg, ctx)
    metrics.update(task_metrics)
    return Outcome(metrics=metrics, dataset=ref)
