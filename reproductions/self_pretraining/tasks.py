"""Data of the self-pretraining reproduction.

CPU (spec §6): ListOps-mini from the procedural generator of ``suite.data.listops`` (ops MAX, MIN,
MED, SM, max depth 4, max args 5) and "sDigits" (scikit-learn's 8x8 digits as 64 tokens, pixel
value 0..16 -> id 1..17). Full (§5): the LRA tasks read from the LRA release formats through
``suite.data`` (fixtures in the same formats in a dry run without the data).

Token ids: 0 is ``<pad>``; ``<mask>`` is one id past the task's vocabulary (pad and mask differ,
spec §7). Pixel tasks carry values in [0, 1] and no ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import digits, listops
from suite.data import lra as lra_data
from suite.data.base import BYTE_VOCAB
from suite.context import default_data_root
from suite.data.catalog import load_dataset
from suite.errors import ConfigError, DataNotFoundError, UnknownNameError
from suite.spec import DatasetRef

PAD_ID = 0


@dataclass
class TaskData:
    """Inputs/labels of one classification task. ``kind``: 'tokens' (ids, ``vocab`` includes pad
    and ``<mask>`` = ``mask_id``) or 'pixels' (float values, (N, L)); ``dual``: x is (N, 2, L)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    kind: str
    vocab: int
    mask_id: int | None
    dual: bool
    ref: DatasetRef

    @property
    def seq_len(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def pad_id(self) -> int | None:
        return PAD_ID if self.kind == "tokens" else None


def _token_task(name: str, xtr, ytr, xte, yte, n_classes: int, base_vocab: int, dual: bool,
                ref: DatasetRef) -> TaskData:
    return TaskData(name, xtr.long(), ytr.long(), xte.long(), yte.long(), n_classes, "tokens",
                    base_vocab + 1, base_vocab, dual, ref)


def _trim(x: torch.Tensor) -> torch.Tensor:
    """Crop trailing all-pad columns (shorter sequences are cheaper; results unchanged)."""
    used = (x != PAD_ID).reshape(-1, x.shape[-1]).any(0).nonzero()
    return x[..., : int(used.max()) + 1] if len(used) else x


def listops_mini(n_train: int, n_test: int, seed: int, min_length: int = 32, max_length: int = 256,
                 max_depth: int = 4, max_args: int = 5) -> TaskData:
    """Procedural ListOps-mini (spec §6 (a)): disjoint train/test draws (generator seeds differ)."""
    cfg = dict(max_depth=max_depth, max_args=max_args, min_length=min_length, max_length=max_length,
               value_p=0.25, parens=False)
    tr = listops.procedural_listops(listops.ListOpsConfig(n=n_train, seed=1000 * seed + 1, **cfg))
    te = listops.procedural_listops(listops.ListOpsConfig(n=n_test, seed=1000 * seed + 2, **cfg))
    L = max(int(_trim(tr.x).shape[-1]), int(_trim(te.x).shape[-1]))
    return _token_task("listops-mini", tr.x[:, :L], tr.y, te.x[:, :L], te.y, 10, len(listops.VOCAB), False,
                       tr.ref)


def sdigits(seed: int) -> TaskData:
    """sDigits (spec §6 (b)): 8x8 digits as 64 tokens, id = pixel value (0..16) + 1 (0 = pad)."""
    s = digits.load(seed=seed)
    ids = {k: (v.x.reshape(len(v), 64) * 16).round().long() + 1 for k, v in s.items()}
    return _token_task("sdigits", ids["train"], s["train"].y, ids["test"], s["test"].y, 10, 18, False,
                       s["train"].ref)


# --------------------------------------------------------------------------- LRA (§5)

@dataclass(frozen=True)
class LRASpec:
    """One LRA task: catalog dataset, shape, and this reproduction's full-scale budgets."""

    name: str
    dataset: str  # suite.data.catalog name ('' = pathfinder128 read directly)
    seq_len: int
    n_classes: int
    kind: str
    dual: bool = False


LRA_TASKS: dict[str, LRASpec] = {t.name: t for t in (
    LRASpec("listops", "lra-listops", 2048, 10, "tokens"),
    LRASpec("text", "lra-text", 4096, 2, "tokens"),
    LRASpec("retrieval", "lra-retrieval", 4000, 2, "tokens", dual=True),
    LRASpec("image", "lra-image", 1024, 10, "pixels"),
    LRASpec("pathfinder", "lra-pathfinder", 1024, 2, "pixels"),
    LRASpec("pathx", "", 16384, 2, "pixels"),
)}
PATHX_DIR = "lra_release/pathfinder128"


def _pathx(ctx) -> dict:
    base = ctx.data_root if ctx.data_root is not None else default_data_root()
    root = Path(base) / PATHX_DIR if base is not None else None
    if root is None or not (root / "curv_contour_length_14").exists():
        if not ctx.dry_run:
            raise DataNotFoundError(f"dataset lra-pathx: expected {PATHX_DIR}/curv_contour_length_14/"
                                    f"{{metadata,imgs}} under the data root; {lra_data.LRA_HOW}")
        root = Path(ctx.run_dir) / "fixture-data" / PATHX_DIR
        lra_data.write_fixture_pathfinder(root, n_files=2, per_file=5, side=128)
        s = lra_data.load_pathfinder(root, cache=False)
        for v in s.values():  # a fixture written here is never the paper's data
            v.ref = DatasetRef("lra-pathx-fixture", "stand-in")
        return s
    s = lra_data.load_pathfinder(root)
    for v in s.values():  # the Pathfinder loader's ref (its provenance) under Path-X's name
        v.ref = v.ref.renamed("lra-pathx")
    return s


def load_lra(name: str, ctx) -> TaskData:
    """LRA task ``name`` from the release formats under ``ctx.data_root`` (fixtures in a dry run).

    Text (IMDB) and Image (CIFAR-10) have no validation split here; train/test are used."""
    if name not in LRA_TASKS:
        raise UnknownNameError(f"unknown LRA task {name!r}; use one of {tuple(LRA_TASKS)}")
    t = LRA_TASKS[name]
    if name == "pathx":
        s = _pathx(ctx)
    elif name == "listops":
        s = load_dataset(ctx, t.dataset, max_len=t.seq_len)
    elif name in ("text", "retrieval"):
        s = load_dataset(ctx, t.dataset, max_len=t.seq_len)
    else:
        s = load_dataset(ctx, t.dataset)
    tr, te = s["train"], s["test"]
    ref = tr.ref  # set by the loader (catalog fixtures come back as "<name>-fixture", stand-in)
    if t.kind == "tokens":
        base = len(listops.VOCAB) if name == "listops" else BYTE_VOCAB
        return _token_task(name, tr.x, tr.y, te.x, te.y, t.n_classes, base, t.dual, ref)
    if tr.x.dim() != 2:
        raise ConfigError(f"LRA {name}: expected pixel sequences (N, L), got {tuple(tr.x.shape)}")
    return TaskData(name, tr.x.float() / 255.0, tr.y.long(), te.x.float() / 255.0, te.y.long(), t.n_classes,
                    "pixels", 0, None, False, ref)


__all__ = ["TaskData", "PAD_ID", "listops_mini", "sdigits", "LRASpec", "LRA_TASKS", "load_lra"]
