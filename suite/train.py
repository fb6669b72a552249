"""The one training loop every reproduction uses: :func:`fit`, plus optimiser/schedule factories
and exact checkpointing (:func:`save_state` / :func:`load_state`).

Typical use::

    cfg = TrainConfig(steps=2000, batch_size=128, lr=1e-3, optimizer="adam", schedule="cosine")
    res = fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x, y), cfg, ctx=ctx,
              eval_fn=lambda m: {"acc": accuracy(m(x_te), y_te)})

``data`` is one of
- a tensor or a *tuple* of tensors with the same first dimension (shuffled minibatches drawn
  by index tensors from a seeded ``torch.Generator``; ``loss_fn`` gets a tensor or a tuple);
- a callable ``step -> batch`` (procedural data; needs ``cfg.steps``);
- any other iterable of batches (a list of batches, a DataLoader), re-iterated every epoch.

Resuming: with a checkpoint path (``ctx`` given, or ``checkpoint=``) and ``cfg.checkpoint_every > 0``,
the state (model, optimiser, scheduler, torch/numpy/python RNGs, sampler generator, step, history)
is saved atomically every ``checkpoint_every`` steps, at the end, and when an exception is raised
after a completed step (from ``on_step`` or ``eval_fn``). A later ``fit`` with the same path
resumes from it; on CPU the final weights are bit-identical to an uninterrupted run.
Several ``fit`` calls in one run need distinct ``name=`` (one checkpoint file each). Any other state
the loss carries between steps (a replay buffer, an EMA, a sampler of its own) is passed as
``stateful={"name": obj}`` (objects with ``state_dict()``/``load_state_dict()``) and travels in the
checkpoint with the rest.

In a ``torch.distributed`` group of several processes (the model wrapped in DDP by the caller, each rank
fed its own shard), rank 0 writes the checkpoint file and every other rank its own ``<stem>.rank<r>.pt``
beside it (each rank's RNG and data position differ), so every rank resumes its own state.

Fault injection for the kill-and-resume test (``tests/test_resume.py``): with
``SUITE_KILL_AFTER_CHECKPOINT=N`` in the environment, the first fit of a run that writes a periodic
checkpoint at a step ``>= N`` kills its own process with SIGKILL, as a preempted job would die; a
``.killed`` mark beside the checkpoint makes the relaunch run through.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from suite.io import atomic_torch_save
from suite.errors import ConfigError, CorruptDataError, UnknownNameError

OPTIMIZERS = ("sgd", "adam", "adamw")
KILLED_MARK = ".killed"  # fault injection: this run was killed once already
DATA_ORDER_OFFSET = 9001  # ctx.generator stream of the minibatch order
SCHEDULES = ("constant", "cosine", "step", "linear", "linear_warmup_cosine")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run. Set exactly one of ``steps`` / ``epochs``.

    ``schedule`` is applied per optimiser step; ``warmup_steps`` (linear from ~0) prefixes every
    schedule. ``milestones`` (step schedule) are fractions of the schedule's horizon, so smoke and full
    scale share them; the lr is multiplied by ``gamma`` at each. The horizon is the training length
    unless ``schedule_steps`` sets it apart (an official schedule longer than the run, e.g. a cosine over
    80,000 steps that training stops early). ``schedule_per_epoch``: the lr moves once per epoch, held at
    the value of the epoch's first step (a scheduler stepped per epoch, as ``CosineAnnealingLR(T_max=epochs)``). ``min_lr_ratio``: floor of the
    cosine/linear decay as a fraction of the base lr. ``eval_every``/``log_every``/
    ``checkpoint_every`` count steps (0 = only at the end / never for checkpoints).
    ``bf16``: autocast to bfloat16 when the device is CUDA (ignored on CPU).
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    schedule_steps: int | None = None
    schedule_per_epoch: bool = False
    grad_clip: float | None = None
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 100
    drop_last: bool = False
    shuffle: bool = True
    bf16: bool = True

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError(f"TrainConfig: set exactly one of steps or epochs (got steps={self.steps}, "
                              f"epochs={self.epochs})")
        if (self.steps is not None and self.steps < 0) or (self.epochs is not None and self.epochs < 0):
            raise ConfigError("TrainConfig: steps/epochs must be >= 0")
        if self.batch_size < 1:
            raise ConfigError(f"TrainConfig: batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise UnknownNameError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise ConfigError(f"TrainConfig: schedule_steps must be >= 1 (or None: the training length), "
                              f"got {self.schedule_steps}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.milestones = tuple(self.milestones)


# --------------------------------------------------------------------------- factories

def optimizer(params: Iterable[Any], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build ``cfg.optimizer`` over ``params`` (tensors or param-group dicts with own lr/weight_decay)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise UnknownNameError(f"unknown optimizer {cfg.optimizer!r}; use one of {OPTIMIZERS}")


@dataclass(frozen=True)
class LrFactor:
    """Multiplier of the base lr after ``s`` optimiser steps (a picklable LambdaLR lambda)."""

    schedule: str
    total: int
    warmup: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_ratio: float = 0.0
    hold: int = 1  # the factor moves every ``hold`` steps (an epoch's steps: a per-epoch scheduler)

    def __call__(self, s: int) -> float:
        s -= s % self.hold
        if s < self.warmup:
            return (s + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            return self.gamma ** sum(s >= m for m in self.milestones)
        p = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
        if self.schedule == "linear":
            decay = 1.0 - p
        else:  # cosine, linear_warmup_cosine
            decay = 0.5 * (1.0 + math.cos(math.pi * p))
        return self.min_ratio + (1.0 - self.min_ratio) * decay


def scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int,
              steps_per_epoch: int | None = None) -> torch.optim.lr_scheduler.LambdaLR | None:
    """Per-step lr schedule of ``cfg`` over its horizon (``cfg.schedule_steps``, else ``total_steps``);
    None for a constant lr without warmup: zero overhead. ``steps_per_epoch`` is needed by
    ``cfg.schedule_per_epoch``."""
    if cfg.schedule == "constant" and cfg.warmup_steps <= 0:
        return None
    horizon = cfg.schedule_steps if cfg.schedule_steps is not None else total_steps
    hold = 1
    if cfg.schedule_per_epoch:
        if not steps_per_epoch:
            raise ConfigError("TrainConfig.schedule_per_epoch needs data with a length (epochs); "
                              "set schedule_per_epoch=False for a callable data stream")
        hold = int(steps_per_epoch)
    miles = tuple(int(round(m * horizon)) for m in cfg.milestones)
    fn = LrFactor(cfg.schedule, horizon, max(0, cfg.warmup_steps), miles, cfg.gamma, cfg.min_lr_ratio, hold)
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two param groups: weight decay on matrices/kernels, none on biases and norm weights (ndim <= 1)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: Mapping[str, Any]) -> None:
    torch.set_rng_state(st["torch"].cpu())
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    v, internal, gauss = st["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


def _plain(x: Any) -> Any:
    """Numpy scalars/arrays -> python/tensors so the file loads with ``weights_only=True``."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def save_state(path: str | os.PathLike[str], model: nn.Module, opt: torch.optim.Optimizer | None = None,
               sched: Any = None, step: int = 0, extra: Mapping[str, Any] | None = None,
               generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Write model/optimiser/scheduler state, all RNG states, ``generators``' states and ``step``
    atomically to ``path``. ``extra`` holds plain python values/tensors (history, sampler position)."""
    state = {
        "format": 1,
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": opt.state_dict() if opt is not None else None,
        "scheduler": sched.state_dict() if sched is not None else None,
        "rng": _rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        "extra": _plain(dict(extra or {})),
    }
    atomic_torch_save(state, path)


@dataclass
class Checkpoint:
    """What :func:`load_state` read back besides the modules it restored in place."""

    step: int
    extra: dict[str, Any]


def _read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint, read onto the host: RNG and generator states must stay there (torch.set_rng_state
    and Generator.set_state take CPU byte tensors); the model and the optimiser copy their tensors onto their
    own devices as they load them."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError("not a suite.train checkpoint")
        return state
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorruptDataError(f"checkpoint {path} cannot be read ({first[:150]}); "
                               f"delete it to start from step 0") from e


def load_state(path: str | os.PathLike[str], model: nn.Module, opt: torch.optim.Optimizer | None = None,
               sched: Any = None, generators: Mapping[str, torch.Generator] | None = None, *,
               restore_rng: bool = True) -> Checkpoint:
    """Restore a :func:`save_state` file into ``model``/``opt``/``sched``/``generators`` (in place, on
    the devices they live on) and, by default, the global torch/numpy/python RNGs. Returns the step and
    ``extra``."""
    state = _read_state(path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ConfigError(f"checkpoint {path} does not fit this model ({str(e).splitlines()[0][:150]}); "
                          f"delete it or load it into the model that wrote it") from e
    if opt is not None and state["optimizer"] is not None:
        opt.load_state_dict(state["optimizer"])
    if sched is not None and state["scheduler"] is not None:
        sched.load_state_dict(state["scheduler"])
    for k, g in (generators or {}).items():
        if k in state["generators"]:
            g.set_state(state["generators"][k])
    if restore_rng:
        _set_rng_state(state["rng"])
    return Checkpoint(step=int(state["step"]), extra=dict(state["extra"]))


# --------------------------------------------------------------------------- data streams

def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    if isinstance(batch, tuple):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, list):
        return [_to_device(b, device) for b in batch]
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class TensorBatches:
    """Shuffled minibatches of in-memory tensors, by index tensors drawn from ``generator``.

    Position (epoch, batch index, generator state at the epoch start) is checkpointable, so a
    resumed run draws exactly the batches the interrupted run would have drawn.
    """

    def __init__(self, tensors: Sequence[torch.Tensor] | torch.Tensor, batch_size: int,
                 generator: torch.Generator, shuffle: bool = True, drop_last: bool = False,
                 device: torch.device | None = None) -> None:
        self.single = isinstance(tensors, torch.Tensor)
        ts = [tensors] if self.single else list(tensors)
        if not ts or any(not isinstance(t, torch.Tensor) for t in ts):
            raise ConfigError("fit: data must be a tensor or a tuple of tensors")
        n = ts[0].shape[0]
        if any(t.shape[0] != n for t in ts):
            raise ConfigError(f"fit: data tensors differ in length {[t.shape[0] for t in ts]}; "
                              f"pass tensors with the same first dimension")
        if n == 0 or (drop_last and n < batch_size):
            raise ConfigError(f"fit: {n} examples give no batch of size {batch_size}; lower batch_size")
        self.tensors = [t.to(device) if device is not None else t for t in ts]
        self.n, self.bs, self.gen, self.shuffle, self.drop_last = n, batch_size, generator, shuffle, drop_last
        self.per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        self.epoch, self.pos = 0, 0
        self._perm: torch.Tensor | None = None
        self._epoch_gen_state = generator.get_state()

    def __len__(self) -> int:
        return self.per_epoch

    def _new_epoch(self) -> None:
        self._epoch_gen_state = self.gen.get_state()
        perm = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
        self._perm = perm.to(self.tensors[0].device)

    def next(self, step: int) -> Any:
        if self._perm is None:
            self._new_epoch()
        elif self.pos == self.per_epoch:
            self.epoch, self.pos = self.epoch + 1, 0
            self._new_epoch()
        assert self._perm is not None
        idx = self._perm[self.pos * self.bs:(self.pos + 1) * self.bs]
        self.pos += 1
        out = tuple(t[idx] for t in self.tensors)
        return out[0] if self.single else out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "started": self._perm is not None,
                "gen": self._epoch_gen_state}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.epoch, self.pos = int(st["epoch"]), int(st["pos"])
        self.gen.set_state(st["gen"])
        self._perm = None
        if st["started"]:
            self._new_epoch()


class _IterableBatches:
    """Batches of any iterable, re-iterated per epoch; resume fast-forwards within the epoch.

    Exact resume needs each epoch's order to be reproducible: a fixed order, or a DataLoader
    whose ``generator`` (saved at each epoch start) drives the shuffling.
    """

    def __init__(self, data: Iterable[Any], device: torch.device) -> None:
        self.data, self.device = data, device
        gen = getattr(data, "generator", None)
        self.gen = gen if isinstance(gen, torch.Generator) else None
        self.epoch, self.pos = 0, 0
        self._it: Iterator[Any] | None = None
        self._epoch_gen_state = self.gen.get_state() if self.gen is not None else None

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def _start(self) -> None:
        if self.gen is not None:
            self._epoch_gen_state = self.gen.get_state()
        self._it = iter(self.data)

    def next(self, step: int) -> Any:
        if self._it is None:
            self._start()
        assert self._it is not None
        try:
            b = next(self._it)
        except StopIteration:
            self.epoch, self.pos = self.epoch + 1, 0
            self._start()
            try:
                b = next(self._it)
            except StopIteration:
                raise ConfigError("fit: data yielded no batches (a one-shot generator is exhausted after one "
                                  "epoch); pass a list, a DataLoader or a callable step -> batch") from None
        self.pos += 1
        return _to_device(b, self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "started": self._it is not None,
                "gen": self._epoch_gen_state}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.epoch, self.pos = int(st["epoch"]), int(st["pos"])
        if self.gen is not None and st["gen"] is not None:
            self.gen.set_state(st["gen"])
        self._it = None
        if st["started"]:
            self._start()
            assert self._it is not None
            for _ in range(self.pos):
                next(self._it)


class _CallableBatches:
    def __init__(self, fn: Callable[[int], Any], device: torch.device) -> None:
        self.fn, self.device, self.epoch = fn, device, 0

    def next(self, step: int) -> Any:
        return _to_device(self.fn(step), self.device)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        pass


# --------------------------------------------------------------------------- the loop

@dataclass
class TrainState:
    """What ``on_step`` sees after each optimiser step. Set ``stop = True`` to end training early."""

    step: int
    epoch: int
    total_steps: int
    loss: torch.Tensor
    model: nn.Module
    optimizer: torch.optim.Optimizer
    stop: bool = False

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass
class TrainResult:
    """Outcome of :func:`fit`. ``history``: one dict per log point (step, epoch, loss = mean over the
    window, lr); ``evals``: one dict per evaluation (step + eval_fn's metrics)."""

    step: int
    total_steps: int
    epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int | None = None
    wall_s: float = 0.0
    steps_per_s: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")

    @property
    def final_eval(self) -> dict[str, float]:
        return dict(self.evals[-1]) if self.evals else {}


def _signature(model: nn.Module, name: str, total: int) -> dict[str, Any]:
    return {"name": name, "total_steps": total,
            "params": [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()]}


def _rank() -> int:
    """This process's rank in an initialised ``torch.distributed`` group of more than one, else 0."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank()
    return 0


def _checkpoint_file(ctx: Any, checkpoint: str | os.PathLike[str] | None, name: str) -> Path | None:
    """The checkpoint file of this fit. In a distributed run every rank > 0 writes its own
    (``<stem>.rank<r>.pt``): each holds that rank's RNG and data position, which differ across ranks."""
    if checkpoint is not None:
        path = Path(checkpoint)
    elif ctx is None:
        return None
    else:
        path = Path(ctx.checkpoint_path) if not name else Path(ctx.run_dir) / f"checkpoint-{name}.pt"
    r = _rank()
    return path if r == 0 else path.with_name(f"{path.stem}.rank{r}{path.suffix}")


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor], data: Any, cfg: TrainConfig, *,
        ctx: Any = None, eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        on_step: Callable[[TrainState], None] | None = None, device: str | torch.device | None = None,
        generator: torch.Generator | None = None, name: str = "",
        checkpoint: str | os.PathLike[str] | None = None,
        stateful: Mapping[str, Any] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` by minimising ``loss_fn(model, batch)``.

    ``ctx`` (a :class:`suite.context.RunContext`) gives the device, the seed of the data order,
    tqdm progress (``ctx.show_progress``), log lines and the checkpoint file
    (``ctx.checkpoint_path``, or ``run_dir/checkpoint-<name>.pt`` when ``name`` is set).
    ``eval_fn(model) -> {metric: value}`` runs under ``no_grad`` in eval mode every
    ``cfg.eval_every`` steps and at the end. ``param_groups`` replaces ``model.parameters()``
    (dicts may carry their own ``lr``/``weight_decay``). ``generator`` seeds the minibatch order
    (default: ``ctx.generator(DATA_ORDER_OFFSET)``, else seed 0). ``stateful``: further objects
    with ``state_dict``/``load_state_dict`` whose state the checkpoint must carry (replay buffers).
    """
    dev = torch.device(device) if device is not None else (torch.device(ctx.device) if ctx is not None
                                                           else torch.device("cpu"))
    model.to(dev)
    gen = generator if generator is not None else (ctx.generator(DATA_ORDER_OFFSET) if ctx is not None
                                                   else torch.Generator().manual_seed(0))
    if isinstance(data, torch.Tensor) or (isinstance(data, tuple) and data
                                          and all(isinstance(t, torch.Tensor) for t in data)):
        stream: Any = TensorBatches(data, cfg.batch_size, gen, cfg.shuffle, cfg.drop_last, dev)
    elif callable(data) and not hasattr(data, "__iter__"):
        stream = _CallableBatches(data, dev)
    elif isinstance(data, Iterable):
        stream = _IterableBatches(data, dev)
    else:
        raise ConfigError(f"fit: cannot draw batches from {type(data).__name__}; pass tensors, "
                          f"an iterable of batches or a callable step -> batch")
    if cfg.steps is not None:
        total = int(cfg.steps)
    else:
        try:
            total = int(cfg.epochs) * len(stream)  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError("fit: epochs need data with a length; set cfg.steps instead") from None

    params = list(param_groups) if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    opt = optimizer(params, cfg)
    try:
        per_epoch = len(stream)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    sched = scheduler(opt, cfg, total, per_epoch)
    clip_params = [p for g in opt.param_groups for p in g["params"]]

    ckpt = _checkpoint_file(ctx, checkpoint, name)
    used = ctx.finished_checkpoints if ctx is not None else None
    if ckpt is not None and used is not None and str(ckpt) in used:
        raise ConfigError(f"fit: checkpoint {ckpt} already belongs to a finished fit in this run; "
                          f"pass a distinct name= to each fit call")
    sig = _signature(model, name, total)
    history: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    step, resumed_from = 0, None
    if ckpt is not None and ckpt.exists():
        if _read_state(ckpt)["extra"].get("signature") != sig:
            raise ConfigError(f"fit: checkpoint {ckpt} was written by a different fit (model, steps or name "
                              f"differ); delete it or pass a distinct name=")
        got = load_state(ckpt, model, opt, sched, {"sampler": gen})
        step = resumed_from = got.step
        history, evals = list(got.extra.get("history", [])), list(got.extra.get("evals", []))
        stream.load_state_dict(got.extra["stream"])
        for key, obj in (stateful or {}).items():
            if key not in got.extra.get("stateful", {}):
                raise ConfigError(f"fit: checkpoint {ckpt} holds no state for {key!r}; delete it to start over")
            obj.load_state_dict(got.extra["stateful"][key])
        if ctx is not None:
            ctx.log("fit%s: resumed from step %d of %d (%s)", f"[{name}]" if name else "", step, total, ckpt)
            ctx.notes.setdefault("resumed_from_step", {})[name or "fit"] = step
    saving = ckpt is not None and cfg.checkpoint_every > 0
    kill_at = int(os.environ.get("SUITE_KILL_AFTER_CHECKPOINT", "0") or 0)

    def save() -> None:
        assert ckpt is not None
        extra = {"signature": sig, "history": history, "evals": evals, "stream": stream.state_dict(),
                 "config": asdict(cfg), "stateful": {k: o.state_dict() for k, o in (stateful or {}).items()}}
        save_state(ckpt, model, opt, sched, step, extra, {"sampler": gen})

    def evaluate() -> None:
        assert eval_fn is not None
        model.eval()
        with torch.no_grad():
            m = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        evals.append({"step": float(step), **m})
        if ctx is not None:
            ctx.log("step %d/%d eval %s", step, total, " ".join(f"{k}={v:.4g}" for k, v in m.items()))

    amp = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dev.type == "cuda" and cfg.bf16
           else contextlib.nullcontext())
    bar = None
    if ctx is not None and getattr(ctx, "show_progress", False):
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=step, leave=False, desc=name or "train")
    log_every, eval_every, ck_every = cfg.log_every, cfg.eval_every, cfg.checkpoint_every
    win_sum: torch.Tensor | None = None
    win_n = 0
    last_loss: torch.Tensor | None = None
    state = TrainState(step, stream.epoch, total, torch.zeros(()), model, opt)
    start_step, t0 = step, time.perf_counter()
    model.train()
    try:
        if (resumed_from and eval_fn is not None and eval_every and step % eval_every == 0
                and (not evals or evals[-1]["step"] != step)):
            evaluate()  # interrupted between the step and its evaluation
        while step < total:
            batch = stream.next(step)
            with amp:
                loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            last_loss = loss.detach()
            # after a completed step the state is consistent: an exception from here on is saved
            try:
                if log_every:
                    win_sum = last_loss.float() if win_sum is None else win_sum + last_loss.float()
                    win_n += 1
                if on_step is not None:
                    state.step, state.epoch, state.loss = step, stream.epoch, last_loss
                    on_step(state)
                if eval_fn is not None and eval_every and step % eval_every == 0:
                    evaluate()
                if (log_every and step % log_every == 0) or step == total or state.stop:
                    _log_point(history, step, stream.epoch, win_sum if win_n else last_loss.float(),
                               max(win_n, 1), opt, ctx, total, bar)
                    win_sum, win_n = None, 0
                if bar is not None:
                    bar.update(1)
                if saving and step % ck_every == 0:
                    save()
                    if kill_at and step >= kill_at and not (ckpt.parent / KILLED_MARK).exists():
                        (ckpt.parent / KILLED_MARK).touch()
                        os.kill(os.getpid(), signal.SIGKILL)  # fault injection (module docstring)
            except BaseException:
                if saving:
                    save()
                raise
            if state.stop:
                break
        if eval_fn is not None and (not evals or evals[-1]["step"] != step):
            evaluate()
        if saving:
            save()
    finally:
        if bar is not None:
            bar.close()
    if saving and ctx is not None:
        ctx.finished_checkpoints.add(str(ckpt))
    wall = time.perf_counter() - t0
    done = step - start_step
    return TrainResult(step=step, total_steps=total, epoch=stream.epoch, history=history, evals=evals,
                       resumed_from_step=resumed_from, wall_s=wall, steps_per_s=done / wall if wall > 0 else 0.0)


def _log_point(history: list[dict[str, float]], step: int, epoch: int, loss_sum: torch.Tensor, n: int,
               opt: torch.optim.Optimizer, ctx: Any, total: int, bar: Any) -> None:
    loss = float(loss_sum) / n
    lr = float(opt.param_groups[0]["lr"])
    history.append({"step": float(step), "epoch": float(epoch), "loss": loss, "lr": lr})
    if bar is not None:
        bar.set_postfix(loss=f"{loss:.4g}")
    if ctx is not None:
        ctx.log("step %d/%d loss %.5g lr %.3g", step, total, loss, lr)


__all__ = ["TrainConfig", "TrainState", "TrainResult", "Checkpoint", "TensorBatches", "LrFactor", "fit",
           "optimizer", "scheduler", "decay_groups", "save_state", "load_state", "atomic_torch_save"]
