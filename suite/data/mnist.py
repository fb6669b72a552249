"""MNIST in the published IDX format (LeCun et al.), gzipped or not, parsed with ``np.frombuffer``.

Layout under the dataset folder (``<data root>/mnist``): ``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``.
Images come back as uint8 tensors (N, 1, 28, 28), labels as int64.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, atomic_write_bytes, corrupt, require_files

NAME = "mnist"
SUBDIR = "mnist"
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FILES = [(f, f + ".gz") for pair in SPLITS.values() for f in pair]
HOW = ("download the four *-ubyte.gz files of http://yann.lecun.com/exdb/mnist/ (or a mirror) into "
       "<data root>/mnist/; for a real offline subset run `suite data fetch-mnist-subset`")
# published MD5 of the gzipped files (as listed by torchvision)
MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
       "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
       "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
       "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
SIZES = {"train": 60000, "test": 10000}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (``.gz`` is decompressed); CorruptDataError on any inconsistency."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise corrupt(path, f"cannot decompress ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise corrupt(path, "bad IDX magic number")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise corrupt(path, "truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - head != expected:
        raise corrupt(path, f"holds {len(raw) - head} data bytes, header {dims} says {expected} (truncated?)")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)


def write_idx(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped when ``path`` ends in ``.gz``), atomically."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, mtime=0)
    atomic_write_bytes(Path(path), raw)


def load_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise corrupt(images_path, f"expected images (N,H,W) and labels (N,), got {images.shape}, {labels.shape}")
    if len(images) != len(labels):
        raise corrupt(labels_path, f"{len(labels)} labels for {len(images)} images")
    if labels.size and labels.max() > 9:
        raise corrupt(labels_path, f"label {int(labels.max())} outside 0..9")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load(root: Path, name: str = NAME, provenance: str = "paper") -> Splits:
    """MNIST train/test splits from the IDX files in ``root``."""
    root = Path(root)
    paths = require_files(root, FILES, name, HOW)
    pairs = {split: load_idx_pair(paths[2 * i], paths[2 * i + 1]) for i, split in enumerate(SPLITS)}
    if provenance == "paper" and any(len(pairs[s][1]) < n for s, n in SIZES.items()):
        provenance = "paper-subset"  # fewer images than the published splits: a real subset
    ref = DatasetRef(name, provenance)  # type: ignore[arg-type]
    return {split: ArrayDataset(x, y, ref) for split, (x, y) in pairs.items()}


def write_fixture(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    """A tiny MNIST in the exact IDX layout: random 28x28 uint8 images, labels cycling 0..9."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        img_f, lab_f = SPLITS[split]
        sfx = ".gz" if gz else ""
        write_idx(root / (img_f + sfx), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / (lab_f + sfx), np.arange(n, dtype=np.uint8) % 10)
    return root


def validate(root: Path) -> None:
    """Parse all four files (CorruptDataError if any is bad) and check the published sizes."""
    splits = load(root)
    for split, n in SIZES.items():
        if len(splits[split]) != n:
            raise corrupt(root, f"{split} has {len(splits[split])} images, MNIST has {n}")
