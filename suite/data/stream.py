"""Splits larger than memory (issue 16): decoded once into an on-disk array, read per batch.

At full scale some splits do not fit in memory as one tensor (WILDS Camelyon17's train split is
~300,000 patches of 96x96x3: 8 GB as uint8, 33 GB as float32; LRA Path-X is 16,384 pixels per
example). The full-scale loaders therefore decode each split once, chunk by chunk, into a ``.npy``
file in the cache (:func:`disk_array`) and open it memory-mapped; a :class:`DiskSplit` reads the
rows of one minibatch at a time, and :func:`loader` wraps it in a ``torch.utils.data.DataLoader``
(workers, pinned memory on CUDA). Labels and per-sample side arrays are small and stay in memory.

Nothing here holds a whole split in RAM: the peak is one decoding chunk while building, one batch
while reading (``suite/data/test_stream.py`` measures it).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from suite.data.base import DatasetRef
from suite.data.cache import cache_path

CHUNK = 4096  # rows decoded / encoded per step while building a disk array


def disk_array(name: str, key: Mapping[str, Any], shape: Sequence[int], dtype: Any,
               fill: Callable[[int, int], np.ndarray], chunk: int = CHUNK) -> np.ndarray:
    """A read-only memory-mapped array of ``shape``, built once by ``fill(start, stop)`` (rows
    ``start:stop``) and cached as ``$SUITE_CACHE/stream/<name>-<hash(key, shape, dtype)>.npy``.

    The file is written to a temporary name and renamed when complete, so an interrupted build
    leaves nothing that a later run would read."""
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    path = cache_path(name, {**dict(key), "shape": shape, "dtype": dtype.str}, ".npy", kind="stream")
    if path.exists():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.shape == shape and arr.dtype == dtype:
                return arr
        except (ValueError, OSError):
            pass
        path.unlink(missing_ok=True)  # damaged or of another shape: rebuild
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for s in range(0, shape[0], chunk):
            e = min(s + chunk, shape[0])
            block = np.asarray(fill(s, e))
            if block.shape != (e - s,) + shape[1:]:
                raise ValueError(f"{name}: fill({s}, {e}) gave shape {block.shape}, expected {(e - s,) + shape[1:]}")
            out[s:e] = block
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r")


def decode_to_disk(root: Path, relpaths: Sequence[str], mode: str = "RGB",
                   size: tuple[int, int] | None = None) -> np.ndarray:
    """Images ``root/relpaths[i]`` as a memory-mapped uint8 array (N, H, W[, C]), decoded once in
    chunks (the streaming counterpart of :func:`suite.data.images.decode_images`). ``size`` (H, W)
    is required: every image must have it."""
    from suite.data.images import _decode

    if size is None:
        raise ValueError("decode_to_disk needs size=(H, W): the array is allocated before decoding")
    root = Path(root)
    paths = [root / p for p in relpaths]
    h = hashlib.sha256(str(root.resolve()).encode())
    for p, rel in zip(paths, relpaths):
        h.update(rel.encode())
        h.update(str(p.stat().st_size).encode())  # raises FileNotFoundError for a missing file
    shape = (len(paths), *size) + ((3,) if mode == "RGB" else ())
    workers = min(8, os.cpu_count() or 1)

    def fill(s: int, e: int) -> np.ndarray:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            return np.stack(list(pool.map(lambda p: _decode(p, mode, size), paths[s:e])))  # checks the size

    return disk_array("images", {"files": h.hexdigest(), "mode": mode}, shape, np.uint8, fill)


class DiskSplit(Dataset):
    """One split whose inputs live on disk: ``x`` a (memory-mapped) array, rows read per batch.

    ``y`` and per-sample ``extra`` tensors are in memory (first dimension = ``len(x)``). ``rows``
    selects a subset without reading anything. ``channels_first`` turns (N, H, W, C) images into
    (B, C, H, W) batches. Indexed with a list of positions it returns one batch
    ``(x, y, *extra[k] for k in batch_extra)``; :func:`loader` feeds it whole index lists."""

    def __init__(self, x: np.ndarray, y: torch.Tensor, ref: DatasetRef, extra: Mapping[str, Any] | None = None,
                 rows: np.ndarray | None = None, channels_first: bool = False,
                 batch_extra: Sequence[str] = ()) -> None:
        self.x, self.y, self.ref = x, y, ref
        self.extra = dict(extra or {})
        self.rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.channels_first = channels_first
        self.batch_extra = tuple(batch_extra)
        if len(y) != len(x):
            raise ValueError(f"DiskSplit: {len(y)} labels for {len(x)} rows")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> torch.Tensor:
        """The labels of this split's rows (in memory)."""
        return self.y[torch.from_numpy(self.rows)]

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "DiskSplit":
        """Positions ``idx`` of this split, still on disk."""
        pos = torch.as_tensor(idx, dtype=torch.long).numpy()
        return DiskSplit(self.x, self.y, self.ref, self.extra, self.rows[pos], self.channels_first, self.batch_extra)

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, ...]:
        pos = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        r = self.rows[pos]
        xb = torch.from_numpy(np.asarray(self.x[r]))  # one copy: the batch's rows, in the sampler's order
        if self.channels_first:
            xb = xb.permute(0, 3, 1, 2).contiguous()
        rt = torch.from_numpy(r)
        return (xb, self.y[rt], *(self.extra[k][rt] for k in self.batch_extra))


def loader(split: DiskSplit, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
           drop_last: bool = False, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches of ``split`` read from disk: each worker reads whole batches (one index list per
    read, no per-sample collation); ``pin_memory`` for asynchronous copies to a GPU."""
    sampler = RandomSampler(split, generator=generator) if shuffle else SequentialSampler(split)
    return DataLoader(split, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0)


def head(split: DiskSplit, n: int) -> tuple[torch.Tensor, ...]:
    """The first ``n`` rows of ``split`` as one batch, read from disk."""
    return split[np.arange(min(n, len(split)))]


def batches(split: DiskSplit, batch_size: int, n: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """The first ``n`` (default all) rows of ``split`` in order, ``batch_size`` rows per read (evaluation)."""
    stop = len(split) if n is None else min(n, len(split))
    for i in range(0, stop, batch_size):
        yield split[np.arange(i, min(i + batch_size, stop))]


class EpochLoader:
    """Shuffled batches ``(x, y)`` of a DiskSplit for :func:`suite.train.fit`, read by a
    :func:`loader` (``workers`` processes, pinned memory for a CUDA device).

    Each pass builds a fresh loader whose order is drawn from ``generator`` only: ``fit`` finds the
    generator as ``.generator``, saves its state at every epoch start and restores it on resume, so a
    resumed epoch replays the same batches. (The DataLoader's worker base seed is drawn from the
    global RNG when an iterator starts: that draw is isolated, so a resume does not shift dropout or
    masking randomness.) ``drop_last``: the last partial batch of every epoch is left out (a loader
    built with ``drop_last=True``); the order of the full batches is the same."""

    def __init__(self, split: DiskSplit, batch_size: int, generator: torch.Generator, workers: int = 0,
                 pin_memory: bool = False, shuffle: bool = True, drop_last: bool = False) -> None:
        self.split, self.batch_size, self.generator = split, int(batch_size), generator
        self.workers, self.pin_memory, self.shuffle = int(workers), bool(pin_memory), shuffle
        self.drop_last = bool(drop_last)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        dl = loader(self.split, self.batch_size, shuffle=self.shuffle, generator=self.generator,
                    drop_last=self.drop_last, workers=self.workers, pin_memory=self.pin_memory)
        with torch.random.fork_rng(devices=[]):
            return iter(dl)


def loader_options(device: Any, workers: int) -> dict[str, Any]:
    """``workers`` and ``pin_memory`` for a run on ``device``: reader processes and pinned host
    memory on CUDA; on a CPU the main process reads (no copy to overlap)."""
    cuda = torch.device(device).type == "cuda"
    return {"workers": int(workers) if cuda else 0, "pin_memory": cuda}
