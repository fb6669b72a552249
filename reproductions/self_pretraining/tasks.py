"""Data of the self-pretraining reproduction.

CPU (spec §6): ListOps-mini from the procedural generator of ``suite.data.listops`` (ops MAX, MIN,
MED, SM, max depth 4, max args 5) and "sDigits" (scikit-learn's 8x8 digits as 64 tokens, pixel
value 0..16 -> id 1..17). Full (§5): the LRA tasks read from the LRA release formats through
``suite.data`` (fixtures in the same formats, written in the data-root layout, in a dry run without
the data). Text, Retrieval and Path-X stream from disk at full length (``suite.data.lra_stream``):
their ``x_train``/``x_test`` are DiskSplits of int16 byte ids / uint8 pixels read per batch, and
:func:`model_input` turns a batch into what the models read (long ids, pixels in [0, 1]).

Token ids: 0 is ``<pad>``; ``<mask>`` is one id past the task's vocabulary (pad and mask differ,
spec §7). Pixel tasks carry values in [0, 1] and no ids; Pathfinder and Path-X (``normalize``) are read by
the models in [-1, 1] (:func:`normalize_pixels`, the official loaders' ``Normalize(mean=0.5, std=0.5)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.data import catalog, digits, listops, lra_stream
from suite.data.base import BYTE_VOCAB
from suite.data.catalog import load_dataset
from suite.data.stream import DiskSplit
from suite.errors import ConfigError, UnknownNameError
from suite.spec import DatasetRef

PAD_ID = 0


@dataclass
class TaskData:
    """Inputs/labels of one classification task. ``kind``: 'tokens' (ids, ``vocab`` includes pad
    and ``<mask>`` = ``mask_id``) or 'pixels' (float values, (N, L)); ``dual``: x is (N, 2, L).
    ``x_train``/``x_test`` are tensors, or DiskSplits read per batch (full-length LRA Text,
    Retrieval, Path-X; a batch goes through :func:`model_input`). ``lm_loss``: the pretraining loss
    (official ``dataset.lm_loss``): ``'ce'`` (token ids, or the 256 intensity classes of a pixel task)
    or ``'l1'`` (pixel values; the official code uses it for Image only). ``normalize``: the models read the
    pixels as ``(x - 0.5) / 0.5`` in [-1, 1] (pretraining input before masking, so masked pixels read 0, and
    fine-tuning input; the CE targets stay the 256 classes of the raw pixels): official ``PathFinder`` /
    ``PathFinderLMDataset`` (``normalize: True``), not Image."""

    name: str
    x_train: torch.Tensor | DiskSplit
    y_train: torch.Tensor
    x_test: torch.Tensor | DiskSplit
    y_test: torch.Tensor
    n_classes: int
    kind: str
    vocab: int
    mask_id: int | None
    dual: bool
    ref: DatasetRef
    lm_loss: str = "ce"
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.lm_loss not in ("ce", "l1") or (self.kind == "tokens" and self.lm_loss != "ce"):
            raise ConfigError(f"task {self.name!r} ({self.kind}): lm_loss {self.lm_loss!r} is not supported; use 'ce' "
                              f"(tokens or pixel intensity classes) or 'l1' (pixels)")

    @property
    def seq_len(self) -> int:
        x = self.x_train.x if isinstance(self.x_train, DiskSplit) else self.x_train
        return int(x.shape[-1])

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
    # pretraining loss of the official ``*-lra-<task>-mlm.yaml`` (``dataset.lm_loss`` / ``task.loss``): cross-entropy
    # everywhere (Pathfinder / Path-X: over the 256 pixel intensities) except Image (``lm_loss: l1``, ``masked_mae``)
    lm_loss: str = "ce"
    # official src/dataloaders/lra.py: PathFinder (fine-tuning) and PathFinderLMDataset (pretraining, ``normalize:
    # True``) map pixels to [-1, 1] with Normalize(mean=0.5, std=0.5); the CIFAR (Image) pipeline is not changed here
    normalize: bool = False


LRA_TASKS: dict[str, LRASpec] = {t.name: t for t in (
    LRASpec("listops", "lra-listops", 2048, 10, "tokens"),
    LRASpec("text", "lra-text", 4096, 2, "tokens"),
    LRASpec("retrieval", "lra-retrieval", 4000, 2, "tokens", dual=True),
    LRASpec("image", "lra-image", 1024, 10, "pixels", lm_loss="l1"),
    LRASpec("pathfinder", "lra-pathfinder", 1024, 2, "pixels", normalize=True),
    LRASpec("pathx", "", 16384, 2, "pixels", normalize=True),
)}
PATHX_DIR = lra_stream.PATHX_DIR
STREAMED = ("text", "retrieval", "pathx")  # larger than memory at full length: DiskSplits


def model_input(x: torch.Tensor) -> torch.Tensor:
    """A batch as the models read it: streamed int16 byte ids -> long, streamed uint8 pixels -> float
    in [0, 1] (what the in-memory loaders hold already: those tensors pass unchanged)."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype in (torch.int16, torch.int32):
        return x.long()
    return x


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> [-1, 1]: ``(x - 0.5) / 0.5`` (torchvision ``Normalize(mean=0.5, std=0.5)``)."""
    return (x - 0.5) / 0.5


def _streamed(name: str, ctx) -> dict[str, DiskSplit]:
    """Text / Retrieval / Path-X splits on disk, from the data root (a dry run without it writes the
    published-format fixture in the data-root layout: catalog, or ``external.locate`` for Path-X)."""
    t = LRA_TASKS[name]
    if name == "pathx":
        folder, ref = lra_stream.locate_pathx(ctx)
        fixture = ref.provenance != "paper" or catalog.is_fixture(folder)
        s = lra_stream.pathfinder_splits(folder, name="lra-pathx")  # the Pathfinder rules, named Path-X
    else:
        folder = catalog.paper_root(ctx, t.dataset)
        fixture = catalog.is_fixture(folder)
        read = lra_stream.text_splits if name == "text" else lra_stream.retrieval_splits
        s = read(folder, max_len=t.seq_len)
    if fixture:  # a fixture is never the paper's data
        for v in s.values():
            v.ref = DatasetRef(f"{v.ref.name}-fixture", "stand-in")
    return s


def load_lra(name: str, ctx) -> TaskData:
    """LRA task ``name`` from the release formats under ``ctx.data_root`` (fixtures in a dry run).

    Text (IMDB) and Image (CIFAR-10) have no validation split here; train/test are used."""
    if name not in LRA_TASKS:
        raise UnknownNameError(f"unknown LRA task {name!r}; use one of {tuple(LRA_TASKS)}")
    t = LRA_TASKS[name]
    if name in STREAMED:
        s = _streamed(name, ctx)
        tr, te = s["train"], s["test"]
        if t.kind == "tokens":
            return TaskData(name, tr, tr.labels, te, te.labels, t.n_classes, "tokens", BYTE_VOCAB + 1, BYTE_VOCAB,
                            t.dual, tr.ref)
        return TaskData(name, tr, tr.labels, te, te.labels, t.n_classes, "pixels", 0, None, False, tr.ref, t.lm_loss,
                        t.normalize)
    if name == "listops":
        s = load_dataset(ctx, t.dataset, max_len=t.seq_len)
    else:
        s = load_dataset(ctx, t.dataset)
    tr, te = s["train"], s["test"]
    ref = tr.ref  # set by the loader (catalog fixtures come back as "<name>-fixture", stand-in)
    if t.kind == "tokens":
        return _token_task(name, tr.x, tr.y, te.x, te.y, t.n_classes, len(listops.VOCAB), t.dual, ref)
    if tr.x.dim() != 2:
        raise ConfigError(f"LRA {name}: expected pixel sequences (N, L), got {tuple(tr.x.shape)}")
    return TaskData(name, tr.x.float() / 255.0, tr.y.long(), te.x.float() / 255.0, te.y.long(), t.n_classes,
                    "pixels", 0, None, False, ref, t.lm_loss, t.normalize)


__all__ = ["TaskData", "PAD_ID", "listops_mini", "sdigits", "LRASpec", "LRA_TASKS", "STREAMED", "model_input",
           "normalize_pixels", "load_lra"]
