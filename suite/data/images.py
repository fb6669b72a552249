"""Decode PNG/JPEG files once (Pillow) and cache them as one uint8 array per file list."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from suite.data.base import corrupt
from suite.data.cache import cached_array


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                raise ValueError(f"image is {im.size[1]}x{im.size[0]}, expected {size[0]}x{size[1]}")
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except Exception as err:  # PIL raises many types on truncated/bad files
        raise corrupt(path, f"cannot decode image ({type(err).__name__}: {err})") from None


def decode_images(root: Path, relpaths: Sequence[str], mode: str = "RGB",
                  size: tuple[int, int] | None = None, cache: bool = True) -> np.ndarray:
    """Images ``root/relpaths[i]`` as one uint8 array (N, H, W[, C]), decoded once and cached.

    ``mode`` is a Pillow mode ("RGB" or "L"); ``size`` (H, W) is checked if given. The cache key
    is the folder, the file list and the file sizes, so replaced files are decoded again.
    """
    root = Path(root)
    paths = [root / p for p in relpaths]

    def build() -> np.ndarray:
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            imgs = list(pool.map(lambda p: _decode(p, mode, size), paths, chunksize=64))
        if not imgs:
            return np.zeros((0,) + (size or (0, 0)) + ((3,) if mode == "RGB" else ()), np.uint8)
        shapes = {im.shape for im in imgs}
        if len(shapes) > 1:
            raise corrupt(root, f"images have different sizes {sorted(shapes)[:3]}")
        return np.stack(imgs)

    if not cache:
        return build()
    h = hashlib.sha256(str(root.resolve()).encode())
    for p in paths:
        h.update(str(p.relative_to(root)).encode())
        h.update(str(p.stat().st_size).encode())  # raises FileNotFoundError for missing files
    return cached_array("images", {"files": h.hexdigest(), "mode": mode, "size": size}, build)


def write_png(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array (H, W) or (H, W, 3) as PNG (for fixtures)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).save(path, format="PNG")
