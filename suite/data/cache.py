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


def cached(name: str, config: Mapping[str, Any], builder: Callable[[], T]) -> T:
    """``builder()``'s result, loaded from the cache if this (name, config) was built before.

    The file is ``$SUITE_CACHE/datasets/<name>-<hash(config)>.pt``; an unreadable cache file is
    rebuilt. Only our own files are loaded (``weights_only=False`` to allow ArrayDataset).
    """
    path = cache_path(name, config)
    if path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a damaged cache entry: rebuild it
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
