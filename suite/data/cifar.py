"""CIFAR-10 / CIFAR-100 (and CIFAR-20 = CIFAR-100's 20 superclasses) from the python pickle batches.

Layouts (as unpacked from the published archives of https://www.cs.toronto.edu/~kriz/cifar.html):
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` with keys ``b'data'`` (N, 3072
uint8, channel-major) and ``b'labels'``; ``cifar-100-python/{train, test, meta}`` with ``b'data'``,
``b'fine_labels'``, ``b'coarse_labels'``. Images come back as uint8 (N, 3, 32, 32).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, atomic_write_bytes, corrupt, require_files

C10_DIR, C100_DIR = "cifar-10-batches-py", "cifar-100-python"
C10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
C10_FILES = C10_TRAIN + ["test_batch", "batches.meta"]
C100_FILES = ["train", "test", "meta"]
HOW10 = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
         "unpack it in the data root (gives cifar-10-batches-py/)")
HOW100 = ("download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
          "unpack it in the data root (gives cifar-100-python/)")
MD5 = {  # published per-file checksums (as listed by torchvision)
    C10_DIR: {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
              "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
              "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
              "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
    C100_DIR: {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
               "meta": "7973b15100ade9c7d40fb424638fde48"},
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickler for the CIFAR batches: dicts, lists, bytes and numpy arrays, nothing else. A file
    that names any other global (e.g. ``os.system``) is refused before it can run: these pickles come
    from a shared data root, and the published MD5s cannot vouch for fixtures or re-packed copies."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name} (a CIFAR batch holds only arrays)")


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as fh:
            d = _ArraysOnly(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError, TypeError,
            KeyError) as err:
        raise corrupt(path, f"not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise corrupt(path, "pickle does not hold a dict")
    return d


def _batch(path: Path, label_keys: tuple[bytes, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    d = _unpickle(path)
    missing = [k for k in (b"data",) + label_keys if k not in d]
    if missing:
        raise corrupt(path, f"missing keys {missing}")
    data = np.asarray(d[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise corrupt(path, f"b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    labels = [np.asarray(d[k], dtype=np.int64) for k in label_keys]
    if any(len(l) != len(data) for l in labels):
        raise corrupt(path, f"{[len(l) for l in labels]} labels for {len(data)} images")
    return data, labels


def _names(path: Path, key: bytes) -> list[str]:
    d = _unpickle(path)
    if key not in d:
        raise corrupt(path, f"missing key {key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in d[key]]


def _images(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))


def load_cifar10(root: Path, name: str = "cifar-10") -> Splits:
    """CIFAR-10 train (batches 1-5 in order) and test splits from ``cifar-10-batches-py``."""
    root = Path(root)
    require_files(root, C10_FILES, name, HOW10)
    ref = DatasetRef(name, "paper")
    classes = _names(root / "batches.meta", b"label_names")
    out: Splits = {}
    for split, files in (("train", C10_TRAIN), ("test", ["test_batch"])):
        parts = [_batch(root / f, (b"labels",)) for f in files]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1][0] for p in parts])
        if y.size and (y.min() < 0 or y.max() >= 10):
            raise corrupt(root / files[0], "labels outside 0..9")
        out[split] = ArrayDataset(_images(x), torch.from_numpy(y), ref, {"class_names": classes})
    return out


def load_cifar100(root: Path, labels: Literal["fine", "coarse"] = "fine") -> Splits:
    """CIFAR-100 (``labels='fine'``, 100 classes) or CIFAR-20 (``'coarse'``, 20 superclasses).

    Both label sets are kept in ``extra`` (``fine``, ``coarse``) whichever is ``y``.
    """
    root = Path(root)
    name = "cifar-100" if labels == "fine" else "cifar-20"
    require_files(root, C100_FILES, name, HOW100)
    ref = DatasetRef(name, "paper")
    names = _names(root / "meta", b"fine_label_names" if labels == "fine" else b"coarse_label_names")
    out: Splits = {}
    for split in ("train", "test"):
        x, (fine, coarse) = _batch(root / split, (b"fine_labels", b"coarse_labels"))
        if fine.size and (fine.max() >= 100 or coarse.max() >= 20 or min(fine.min(), coarse.min()) < 0):
            raise corrupt(root / split, "labels outside 0..99 / 0..19")
        fine_t, coarse_t = torch.from_numpy(fine), torch.from_numpy(coarse)
        y = fine_t if labels == "fine" else coarse_t
        out[split] = ArrayDataset(_images(x), y, ref, {"fine": fine_t, "coarse": coarse_t, "class_names": names})
    return out


def load_cifar20(root: Path) -> Splits:
    """CIFAR-100 images with the 20 superclass (``coarse``) labels as ``y``."""
    return load_cifar100(root, labels="coarse")


def _dump(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, pickle.dumps(obj, protocol=2))


def write_fixture_cifar10(root: Path, n_per_batch: int = 10, seed: int = 0) -> Path:
    """A tiny ``cifar-10-batches-py`` folder (same pickle keys as the real batches)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for f in C10_TRAIN + ["test_batch"]:
        _dump(root / f, {b"batch_label": f.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                         b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                         b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)]})
    _dump(root / "batches.meta", {b"num_cases_per_batch": n_per_batch, b"num_vis": 3072,
                                  b"label_names": [f"class{i}".encode() for i in range(10)]})
    return root


def write_fixture_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """A tiny ``cifar-100-python`` folder; coarse label = fine // 5 (a fixture mapping)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        _dump(root / split, {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": split.encode(),
                             b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
                             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)})
    _dump(root / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                          b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return root
