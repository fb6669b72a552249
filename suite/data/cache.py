"""Disk cache for generated datasets and decoded images, keyed by a hash of the generator config.

Files live under ``suite.context.default_cache_dir()`` (``$SUITE_CACHE``) and are written
atomically (``torch.save`` / ``np.save`` to a temp file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import torch

from suite.context import default_cache_dir
from suite.io import atomic_torch_save, atomic_write

T = TypeVar("T")


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able config (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(name: str, config: Mapping[str, Any], suffix: str = ".pt", kind: str = "datasets") -> Path:
    return default_cache_dir() / kind / f"{name}-{config_key(config)}{suffix}"


def _np_reconstruct() -> Any:
    try:  # numpy >= 2 moved the pickling helper to numpy._core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _safe_globals() -> list[Any]:
    """What a cache entry may hold besides tensors and plain containers: our dataset records and
    numpy arrays. Nothing that can run code (a shared cache on a cluster is writable by others)."""
    from suite.data.base import ArrayDataset, DatasetRef

    dtypes = [type(np.dtype(t)) for t in ("bool", "int8", "uint8", "int16", "int32", "int64",
                                          "float16", "float32", "float64", "complex64", "complex128")]
    return [ArrayDataset, DatasetRef, np.ndarray, np.dtype, _np_reconstruct(), *dtypes]


def load_cached(path: Path) -> Any:
    """Load one cache entry with ``weights_only=True`` (only tensors, containers and the classes of
    :func:`_safe_globals`); raises on anything else, e.g. a planted pickle that would run code."""
    with torch.serialization.safe_globals(_safe_globals()):
        return torch.load(path, weights_only=True)


def cached(name: str, config: Mapping[str, Any], builder: Callable[[], T]) -> T:
    """``builder()``'s result, loaded from the cache if this (name, config) was built before.

    The file is ``$SUITE_CACHE/datasets/<name>-<hash(config)>.pt``. An entry that does not load
    safely (damaged, or holding anything but tensors, containers, numpy arrays and our dataset
    records) is deleted and rebuilt, never executed.
    """
    path = cache_path(name, config)
    if path.exists():
        try:
            return load_cached(path)
        except Exception:  # a damaged or unsafe cache entry: rebuild it
            path.unlink(missing_ok=True)
    obj = builder()
    atomic_torch_save(obj, path)
    return obj


def cached_array(name: str, config: Mapping[str, Any], builder: Callable[[], np.ndarray]) -> np.ndarray:
    """Like :func:`cached` for one big numpy array, stored as ``.npy`` and memory-mapped on load."""
    path = cache_path(name, config, ".npy", kind="decoded")
    if path.exists():
        try:
            return np.load(path, mmap_mode="c")
        except Exception:
            path.unlink(missing_ok=True)
    arr = builder()

    atomic_write(path, lambda fh: np.save(fh, arr))
    return np.load(path, mmap_mode="c")
