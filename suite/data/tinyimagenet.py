"""TinyImageNet-200 in its published folder layout (``tiny-imagenet-200.zip`` unpacked).

``tiny-imagenet-200/wnids.txt``, ``train/<wnid>/images/<wnid>_<k>.JPEG``,
``val/images/val_<k>.JPEG`` + ``val/val_annotations.txt`` (file, wnid, box). The test split has
no labels and is not loaded. Labels index the sorted wnids (torchvision ImageFolder order).
Images (64x64 RGB; a few are greyscale JPEGs and are converted) are decoded once and cached:
uint8 (N, 3, 64, 64).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, corrupt, not_found_message, require_files
from suite.data.images import decode_images
from suite.errors import DataNotFoundError

NAME = "tiny-imagenet-200"
SUBDIR = "tiny-imagenet-200"
FILES = ["wnids.txt", "train", "val/images", "val/val_annotations.txt"]
HOW = ("download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it in the data root "
       "(gives tiny-imagenet-200/)")


def _decode(root: Path, rel: list[str], cache: bool) -> torch.Tensor:
    try:
        arr = decode_images(root, rel, "RGB", (64, 64), cache=cache)
    except FileNotFoundError as err:
        raise DataNotFoundError(not_found_message(NAME, [str(err.filename)], root, HOW)) from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()


def index(root: Path) -> tuple[list[str], dict[str, tuple[list[str], list[int]]]]:
    """(sorted wnids, {split: (relative image paths, labels)}) without decoding any image."""
    root = Path(root)
    require_files(root, FILES, NAME, HOW)
    wnids = sorted(w for w in (root / "wnids.txt").read_text().split() if w)
    if not wnids:
        raise corrupt(root / "wnids.txt", "lists no wnids")
    idx = {w: i for i, w in enumerate(wnids)}
    train_rel: list[str] = []
    train_y: list[int] = []
    for w in wnids:
        files = sorted(p.name for p in (root / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise DataNotFoundError(not_found_message(NAME, [f"train/{w}/images/*.JPEG"], root, HOW))
        train_rel += [f"train/{w}/images/{f}" for f in files]
        train_y += [idx[w]] * len(files)
    val_rel, val_y = [], []
    for ln, line in enumerate((root / "val" / "val_annotations.txt").read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in idx:
            raise corrupt(root / "val" / "val_annotations.txt", f"line {ln + 1}: expected 'file<TAB>wnid...', "
                          f"got {line[:60]!r}")
        val_rel.append(f"val/images/{parts[0]}")
        val_y.append(idx[parts[1]])
    return wnids, {"train": (train_rel, train_y), "val": (val_rel, val_y)}


def load(root: Path, cache: bool = True) -> Splits:
    """Train and val splits (val = the official labelled validation set)."""
    root = Path(root)
    wnids, parts = index(root)
    ref = DatasetRef(NAME, "paper")
    return {s: ArrayDataset(_decode(root, rel, cache), torch.tensor(y), ref, {"wnids": wnids})
            for s, (rel, y) in parts.items()}


def write_fixture(root: Path, n_classes: int = 3, n_train: int = 4, n_val: int = 2, seed: int = 0) -> Path:
    """A tiny tiny-imagenet-200 folder with real JPEG files in the published layout."""
    from PIL import Image

    root, rng = Path(root), np.random.default_rng(seed)
    wnids = [f"n{1440764 + 17 * i:08d}" for i in range(n_classes)]
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    (root / "test" / "images").mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tclass {i}\n" for i, w in enumerate(wnids)))
    ann = []
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True, exist_ok=True)
        boxes = []
        for k in range(n_train):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / w / "images" / f"{w}_{k}.JPEG", format="JPEG")
            boxes.append(f"{w}_{k}.JPEG\t0\t0\t63\t63\n")
        (root / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    for k in range(n_val * n_classes):
        mode_gray = k == 0  # one greyscale JPEG, as in the real val set
        img = rng.integers(0, 256, (64, 64) if mode_gray else (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "val" / "images" / f"val_{k}.JPEG", format="JPEG")
        ann.append(f"val_{k}.JPEG\t{wnids[k % n_classes]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(ann))
    return root
