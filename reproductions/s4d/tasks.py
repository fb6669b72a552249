"""Data of the S4D reproduction: the CPU memory task (spec §6) and the six LRA tasks (§5).

- :func:`memory_task` — "remember the digit": the 64 pixels of a scikit-learn digit in the first
  64 steps of a length-L sequence, Gaussian noise afterwards; the label must be read at the last step.
- :data:`LRA_TASKS` — per-task data location and the repo's hyper-parameters (configs
  ``configs/experiment/lra/s4-*.yaml`` as summarised by the spec §5).
- :func:`load_lra` — the task's splits from the LRA release formats through ``suite.data.lra``;
  with ``fixture=True`` tiny files in the same formats are written first (tests).
- :func:`open_lra` — the full path's loader: the task's folder under the data root (the catalog, or
  ``suite.data.external.locate`` for Path-X; a dry run writes the published-format fixture in the
  data-root layout, which the rehearsal gathers), Text / Retrieval / Path-X streamed from disk
  (``suite.data.lra_stream``: DiskSplits read per batch, never a whole split as one tensor).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import catalog, cifar, digits, listops, lra_stream, stream
from suite.data import lra as lra_data
from suite.data.base import BYTE_VOCAB, ArrayDataset, Splits
from suite.data.stream import DiskSplit
from suite.errors import ConfigError, UnknownNameError
from suite.spec import DatasetRef


# --------------------------------------------------------------------------- memory task (§6)

def memory_task(seq_len: int, noise: float, generator: torch.Generator, split_seed: int = 0,
                n_train: int | None = None) -> Splits:
    """Remember-the-digit sequences x (N, seq_len) float32 and digit labels.

    The 64 pixels (standardised with train statistics) fill steps 0..63; steps 64.. hold
    N(0, noise^2) noise. Stand-in data (scikit-learn's bundled digits).
    """
    if seq_len < 64:
        raise ConfigError(f"memory task: seq_len must be >= 64 (the 64 pixels), got {seq_len}")
    src = digits.load(seed=split_seed)
    tr = src["train"]
    mu, sd = tr.x.mean(), tr.x.std()
    out: Splits = {}
    for split, ds in src.items():
        if split == "train" and n_train is not None:
            ds = ds.subset(torch.arange(min(n_train, len(ds))))
        pix = ((ds.x.reshape(len(ds), 64) - mu) / sd).float()
        tail = noise * torch.randn(len(ds), seq_len - 64, generator=generator)
        out[split] = ArrayDataset(torch.cat([pix, tail], 1), ds.y, ds.ref.renamed("digits-memory"))
    return out


# --------------------------------------------------------------------------- LRA (§5)

@dataclass(frozen=True)
class LRATask:
    """One LRA task: where its files live, how inputs look, and the S4D paper's hyper-parameters, pinned to
    the official configs ``configs/experiment/lra/old/v3-s4-<task>.yaml`` of state-spaces/s4 (the README's
    table; ``test_lra_hyperparameters_pinned_to_the_readme_table`` fails on any drift)."""

    name: str
    folder: str  # under the data root
    seq_len: int
    n_classes: int
    vocab: int  # 0 = real-valued pixels
    dual: bool
    n_layers: int
    d_model: int
    d_state: int
    batch_size: int
    lr: float
    epochs: int
    dropout: float = 0.0
    dt_min: float = 1e-3
    lr_dt: float | None = None     # lr of log_dt (None: the base lr; the configs' ``lr: {dt: null, ...}``)
    ssm_lr: float = 1e-3           # lr of A, B (the configs' ``layer.lr``)
    weight_decay: float = 0.05
    prenorm: bool = False
    norm: str = "batch"
    pool: str = "mean"             # decoder ``mode``: pool (mean) or last
    n_ssm: int | None = None       # None: one (A, B) per channel (``n_ssm: null`` or ``${..d_model}``)
    warmup_steps: int = 1000       # cosine_warmup ``num_warmup_steps`` (default 1000 when the file sets none)
    schedule_steps: int = 0        # cosine_warmup ``num_training_steps``: the horizon of the lr decay
    tie_dropout: bool = False      # ``model.tie_dropout``: dropout masks tied over the sequence, residual + layer
    # pixel tasks: model input (x - pixel_mean) / pixel_std of the uint8 pixel x. Image: the official greyscale
    # CIFAR normalisation, mean 122.6, std 61 (in /255 units: src/dataloaders/basic.py, ``grayscale: true`` in
    # v3-s4-cifar.yaml); Pathfinder / Path-X: x / 255 in [0, 1] (``center: False``, configs/dataset/pathfinder.yaml)
    pixel_mean: float = 0.0
    pixel_std: float = 255.0


LRA_TASKS: dict[str, LRATask] = {t.name: t for t in (
    LRATask("listops", lra_data.LISTOPS_DIR, 2048, 10, len(listops.VOCAB), False, 8, 128, 64, 50, 0.01, 40,
            schedule_steps=80_000),
    LRATask("text", lra_data.IMDB_DIR, 4096, 2, BYTE_VOCAB, False, 6, 256, 64, 16, 0.01, 32, prenorm=True,
            schedule_steps=50_000),
    LRATask("retrieval", lra_data.RETRIEVAL_DIR, 4000, 2, BYTE_VOCAB, True, 6, 256, 64, 64, 0.01, 20, prenorm=True,
            warmup_steps=2500, schedule_steps=50_000),
    LRATask("image", cifar.C10_DIR, 1024, 10, 0, False, 6, 512, 64, 50, 0.01, 200, dropout=0.1, norm="layer",
            n_ssm=2, warmup_steps=900, tie_dropout=True, pixel_mean=122.6, pixel_std=61.0, schedule_steps=180_000),
    LRATask("pathfinder", lra_data.PATHFINDER_DIR, 1024, 2, 0, False, 6, 256, 64, 64, 0.004, 200, prenorm=True,
            weight_decay=0.03, pool="last", lr_dt=1e-3, warmup_steps=2500, schedule_steps=500_000),
    # Path-X: the file sets lr 0.001 and 50,000 warmup steps, with a comment that the S4D paper used 5e-4 and
    # one epoch of warmup (10,000 steps at batch 16): we run the paper's values (README)
    LRATask("pathx", lra_stream.PATHX_DIR, 16384, 2, 0, False, 6, 256, 64, 16, 5e-4, 50, dt_min=1e-4,
            prenorm=True, lr_dt=5e-4, ssm_lr=5e-4, warmup_steps=10_000, schedule_steps=500_000),
)}


def lra_task(name: str) -> LRATask:
    if name not in LRA_TASKS:
        raise UnknownNameError(f"unknown LRA task {name!r}; use one of {tuple(LRA_TASKS)}")
    return LRA_TASKS[name]


def _write_fixture(task: LRATask, root: Path) -> None:
    d = root / task.folder
    if task.name == "listops":
        lra_data.write_fixture_listops(d)
    elif task.name == "text":
        lra_data.write_fixture_text(d)
    elif task.name == "retrieval":
        lra_data.write_fixture_retrieval(d)
    elif task.name == "image":
        cifar.write_fixture_cifar10(d)
    else:
        lra_data.write_fixture_pathfinder(d, side=int(round(task.seq_len ** 0.5)), per_file=6)


def _val_from_train(train: ArrayDataset, frac: float = 0.1, seed: int = 42) -> tuple[ArrayDataset, ArrayDataset]:
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(frac * len(train)))
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])


def _read(name: str, folder: Path, cache: bool = True) -> Splits:
    """In-memory train/val/test splits of task ``name`` from its folder (the release formats)."""
    task = lra_task(name)
    if name == "listops":
        return lra_data.load_listops(folder, max_len=task.seq_len)
    if name == "text":
        s = lra_data.load_text(folder, max_len=task.seq_len)
        return {"train": s["train"], "val": s["test"], "test": s["test"]}
    if name == "retrieval":
        return lra_data.load_retrieval(folder, max_len=task.seq_len)
    if name == "image":
        s = lra_data.load_image(folder)
        tr, va = _val_from_train(s["train"])
        return {"train": tr, "val": va, "test": s["test"]}
    return lra_data.load_pathfinder(folder, cache=cache)


def load_lra(name: str, data_root: Path | None, fixture: bool = False) -> Splits:
    """train/val/test splits of LRA task ``name`` read from ``data_root`` in the release formats, in memory.

    Text has no validation split (IMDB): the test split doubles as validation, as in the S4 code;
    Image holds out 10% of CIFAR-10 train (seed 42). ``fixture=True`` writes tiny files in the same
    formats under ``data_root`` first (tests; provenance then says stand-in). The full run reads
    through :func:`open_lra`.
    """
    task = lra_task(name)
    if data_root is None:
        raise ConfigError(f"LRA task {name}: no data root; pass --data-root or set $SUITE_DATA "
                          f"(expects {task.folder}/ under it)")
    root = Path(data_root)
    if fixture:
        _write_fixture(task, root)
    out = _read(name, root / task.folder, cache=not fixture)
    if fixture:
        out = {k: ArrayDataset(v.x, v.y, DatasetRef(f"{v.ref.name}-fixture", "stand-in"), v.extra)
               for k, v in out.items()}
    return out


CATALOG = {"listops": "lra-listops", "text": "lra-text", "retrieval": "lra-retrieval", "image": "lra-image",
           "pathfinder": "lra-pathfinder"}
STREAMED = ("text", "retrieval", "pathx")  # larger than memory at full length: DiskSplits


def open_lra(name: str, ctx) -> dict[str, ArrayDataset | DiskSplit]:
    """train/val/test of LRA task ``name`` for the full run: found under the data root (in a dry run
    without it, the published-format fixture is written in the data-root layout and labelled
    ``<name>-fixture``, stand-in). Text, Retrieval and Path-X come back as DiskSplits (encoded once
    into the cache, read per batch); ListOps, Image and Pathfinder-32 are small and in memory.
    Same splits and values as :func:`load_lra`."""
    task = lra_task(name)
    if name == "pathx":
        folder, ref = lra_stream.locate_pathx(ctx)
        fixture = ref.provenance != "paper" or catalog.is_fixture(folder)
    else:
        folder = catalog.paper_root(ctx, CATALOG[name])
        fixture = catalog.is_fixture(folder)
    out: dict[str, ArrayDataset | DiskSplit]
    if name == "text":
        s = lra_stream.text_splits(folder, max_len=task.seq_len)
        out = {"train": s["train"], "val": s["test"], "test": s["test"]}
    elif name == "retrieval":
        out = dict(lra_stream.retrieval_splits(folder, max_len=task.seq_len))
    elif name == "pathx":
        out = dict(lra_stream.pathfinder_splits(folder, name="lra-pathx"))
    else:
        out = dict(_read(name, folder, cache=not fixture))
    if fixture:
        for v in out.values():
            if not v.ref.name.endswith("-fixture"):
                v.ref = DatasetRef(f"{v.ref.name}-fixture", "stand-in")
    return out


def head(ds: ArrayDataset | DiskSplit, n: int) -> torch.Tensor:
    """The inputs of the first ``n`` examples (in memory or read from disk)."""
    return stream.head(ds, n)[0] if isinstance(ds, DiskSplit) else ds.x[:n]


def lra_inputs(x: torch.Tensor, task: LRATask) -> torch.Tensor:
    """Model inputs of a batch: token ids as long; uint8 pixels -> (x - pixel_mean) / pixel_std (Image: the
    official greyscale normalisation; Pathfinder / Path-X: [0, 1])."""
    if task.vocab > 0:
        return x.long()
    return (x.float() - task.pixel_mean) / task.pixel_std


__all__ = ["memory_task", "LRATask", "LRA_TASKS", "lra_task", "load_lra", "open_lra", "head", "lra_inputs"]
