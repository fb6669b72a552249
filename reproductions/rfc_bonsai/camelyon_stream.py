"""The WILDS Camelyon17 splits streamed from disk (issue 16): the full-scale protocol never holds a split
as one tensor (the train split is ~300,000 patches of 96x96x3: 8 GB as uint8, 33 GB as float32).

:func:`load_splits` reads ``metadata.csv`` with :func:`suite.data.camelyon17.read_metadata`, selects each
WILDS split's rows exactly as :func:`suite.data.camelyon17.load` does (same seeded ``max_per_split``
subset), decodes its PNG patches once into a memory-mapped uint8 array (:func:`suite.data.stream.decode_to_disk`)
and returns :class:`suite.data.stream.DiskSplit` s whose per-sample extras are ``hospital``, ``slide`` and
``env`` (the hospital as an environment id 0..n-1, what the OoD objectives split by).

Two ways to read one:

* :func:`loader`: a ``torch.utils.data.DataLoader`` over whole-batch reads (workers and pinned memory on
  CUDA): every full pass (featurising, evaluation) goes through it;
* :class:`Rows`: ``rows[idx]`` reads the images of ``idx`` (a slice or an index tensor) from the map. The
  shared OoD helpers (:mod:`suite.ood.bonsai`, :func:`suite.ood.training.train_ood`) draw their random
  minibatches by indexing ``x`` (``x[idx]``, ``len(x)``); a ``Rows`` as ``x`` makes them read one batch
  from disk per step instead of slicing an in-memory tensor.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from suite.data import camelyon17 as C
from suite.data import stream
from suite.data.base import not_found_message
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.ood import EnvData

SIZE = (96, 96)


def load_splits(ctx: Any, splits: tuple[str, ...] = C.SPLITS, max_per_split: int | None = None,
                seed: int = 0) -> dict[str, stream.DiskSplit]:
    """The requested WILDS splits as on-disk splits (rows, labels, hospital ids as :func:`C.load` gives them)."""
    root, ref = locate(ctx, C.NAME, C.SUBDIR, C.FILES, C.HOW, fixture=C.write_fixture)  # ref: the data layer's
    df = C.read_metadata(root)
    rng = np.random.default_rng(seed)  # the same draws as suite.data.camelyon17.load's max_per_split subset
    out: dict[str, stream.DiskSplit] = {}
    for s in splits:
        idx = np.flatnonzero(df["wilds_split"].to_numpy() == s)
        if max_per_split is not None and len(idx) > max_per_split:
            idx = np.sort(rng.choice(idx, max_per_split, replace=False))
        sub = df.iloc[idx]
        try:
            x = stream.decode_to_disk(root, C.patch_paths(sub), "RGB", SIZE)
        except FileNotFoundError as err:
            raise DataNotFoundError(not_found_message(C.NAME, [str(err.filename)], root, C.HOW)) from None
        hosp = torch.from_numpy(sub["center"].to_numpy(np.int64, copy=True))
        extra = {"hospital": hosp, "slide": torch.from_numpy(sub["slide"].to_numpy(np.int64, copy=True)),
                 "env": torch.searchsorted(torch.unique(hosp), hosp)}
        out[s] = stream.DiskSplit(x, torch.from_numpy(sub["tumor"].to_numpy(np.int64, copy=True)), ref, extra,
                                  channels_first=True, batch_extra=("env",))
    return out


class Rows:
    """The images of a :class:`DiskSplit` as something the OoD helpers can index: ``rows[i:j]`` or
    ``rows[idx]`` reads those rows from disk as a uint8 (B, 3, H, W) host tensor; nothing else is held."""

    device = torch.device("cpu")  # where index tensors must live (the helpers do ``idx.to(x.device)``)

    def __init__(self, split: stream.DiskSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.split), 3, *self.split.x.shape[1:3])

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, slice):
            pos = np.arange(len(self))[idx]
        else:
            t = torch.as_tensor(idx)
            pos = (torch.nonzero(t).flatten() if t.dtype == torch.bool else t.reshape(-1)).cpu().numpy()
        if len(pos) == 0:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        return self.split[pos][0]


def env_data(split: stream.DiskSplit) -> EnvData:
    """The split as :class:`EnvData` (hospital = environment) whose ``x`` reads from disk (:class:`Rows`)."""
    env = split.extra["env"][torch.from_numpy(split.rows)]
    n_envs = int(torch.unique(split.extra["env"]).numel())
    return EnvData(Rows(split), split.labels.float(), env, n_envs)  # type: ignore[arg-type]


def workers(device: Any) -> int:
    """DataLoader workers: several on CUDA (decoding overlaps the GPU), none on the CPU (tests, rehearsals)."""
    return min(4, os.cpu_count() or 1) if torch.device(device).type == "cuda" else 0


def loader(split: stream.DiskSplit, batch_size: int, device: Any) -> torch.utils.data.DataLoader:
    """Sequential batches ``(x uint8 (B, 3, H, W), y, env)`` of ``split`` through a DataLoader (pinned on CUDA)."""
    return stream.loader(split, batch_size, shuffle=False, workers=workers(device),
                         pin_memory=torch.device(device).type == "cuda")


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Any) -> torch.Tensor:
    """Outputs (N, out) of ``model`` in eval mode over an iterable of ``(x, ...)`` batches, on the host."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    outs = [model(b[0].to(dev, non_blocking=True)).reshape(len(b[0]), -1).cpu() for b in batches]
    model.train(was)
    return torch.cat(outs) if outs else torch.zeros(0, 1)
