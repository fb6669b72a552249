"""TinyImageNet streamed from disk (issue 16): the full-scale path never holds a split as one tensor.

:func:`tiny_splits` lists the published layout with :func:`suite.data.tinyimagenet.index` (paths and labels,
nothing decoded), decodes each split once into a memory-mapped uint8 array
(:func:`suite.data.stream.decode_to_disk`; train: 100,000 x 64x64x3 = 1.2 GB) and returns
:class:`suite.data.stream.DiskSplit` s. The stage splits take lazy subsets of them (``DiskSplit.subset``),
training reads shuffled batches through a DataLoader (:class:`suite.data.stream.EpochLoader`, workers and
pinned memory on CUDA) and encoding reads sequential ones (:func:`batches`). In-memory data (sklearn digits, CIFAR-100) keeps
its tensors: :func:`fit_data` and :func:`batches` hand those back unchanged.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from suite.data import stream, tinyimagenet
from suite.data.base import not_found_message
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.train import DATA_ORDER_OFFSET

DiskSplit = stream.DiskSplit


def tiny_splits(ctx: Any) -> dict[str, DiskSplit]:
    """TinyImageNet-200 train / val as on-disk splits (labels = sorted-wnid index, as the in-memory loader)."""
    root, ref = locate(ctx, tinyimagenet.NAME, tinyimagenet.SUBDIR, tinyimagenet.FILES, tinyimagenet.HOW,
                       fixture=tinyimagenet.write_fixture)  # the data layer's ref (a fixture is a stand-in)
    _, parts = tinyimagenet.index(root)
    out = {}
    for s, (rel, y) in parts.items():
        try:
            x = stream.decode_to_disk(root, rel, "RGB", (64, 64))
        except FileNotFoundError as err:
            raise DataNotFoundError(not_found_message(tinyimagenet.NAME, [str(err.filename)], root,
                                                      tinyimagenet.HOW)) from None
        out[s] = DiskSplit(x, torch.tensor(y, dtype=torch.long), ref, channels_first=True)
    return out


def take(x: torch.Tensor | DiskSplit, idx: Any) -> torch.Tensor | DiskSplit:
    """Rows ``idx`` (positions or a bool mask) of a tensor, or a lazy subset of an on-disk split."""
    if isinstance(x, DiskSplit):
        t = torch.as_tensor(idx)
        return x.subset(torch.nonzero(t).flatten() if t.dtype == torch.bool else t)
    return x[idx]


def relabel(x: torch.Tensor | DiskSplit, y: torch.Tensor) -> torch.Tensor | DiskSplit:
    """An on-disk split with labels ``y`` (one per row of the split); a tensor is returned as is."""
    if isinstance(x, DiskSplit):
        full = x.y.clone()
        full[torch.from_numpy(x.rows)] = y
        return DiskSplit(x.x, full, x.ref, x.extra, x.rows, x.channels_first, x.batch_extra)
    return x


WORKERS = 4  # DataLoader reader processes on CUDA (none on a CPU: suite.data.stream.loader_options)


def fit_data(x: torch.Tensor | DiskSplit, y: torch.Tensor | None, batch_size: int, ctx: Any) -> Any:
    """What :func:`suite.train.fit` trains on: the tensors (``(x, y)`` or ``x``), or for an on-disk split the
    shuffled batches ``(x, y)`` of :class:`suite.data.stream.EpochLoader` (last partial batch dropped, as the
    official loaders and ``TrainConfig.drop_last`` for tensors), drawn from fit's default data-order
    generator (which fit checkpoints, so a resumed run reads the same batches)."""
    if isinstance(x, DiskSplit):
        return stream.EpochLoader(x, batch_size, ctx.generator(DATA_ORDER_OFFSET), drop_last=True,
                                  **stream.loader_options(ctx.device, WORKERS))
    return (x, y) if y is not None else x


def batches(x: torch.Tensor | DiskSplit, batch: int, device: Any) -> Iterator[torch.Tensor]:
    """Sequential input batches of a tensor (slices) or of an on-disk split (a DataLoader)."""
    if isinstance(x, DiskSplit):
        for b in stream.loader(x, batch, **stream.loader_options(device, WORKERS)):
            yield b[0]
    else:
        for i in range(0, len(x), batch):
            yield x[i:i + batch]
