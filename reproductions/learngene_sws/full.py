"""Full scale (spec §5): ImageNet-1K in the DeiT ImageFolder layout, streamed from disk.

<data_root>/imagenet/{train,val}/<wnid>/*.JPEG  (val sorted into class folders, as DeiT's ImageFolder reads it).
Dry run without the data: a tiny fixture in that layout (real JPEG files) builds the same pipeline.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from suite import distributed as D
from suite.data.external import locate
from suite.data.randaugment import RandAugment

from .samplers import RepeatedAugSampler, ra_count

HOW = ("download ILSVRC2012 from https://image-net.org and arrange train/ and val/ as <wnid>/*.JPEG class folders "
       "(e.g. with the standard valprep.sh)")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolder(Dataset):
    """<split>/<wnid>/*.JPEG -> (3x224x224 normalised float tensor, class index); class index = sorted wnid order.
    Train: random-resized-crop (bicubic) + horizontal flip, then timm's RandAugment when ``rand_augment`` names
    one (official ``--aa rand-m9-mstd0.5-inc1``; timm ``transforms_imagenet_train`` order: crop, flip, RandAugment,
    ToTensor, normalise; with RandAugment on timm adds no colour jitter); val: resize 256 + centre crop 224 (DeiT
    eval transform). Random erasing, mixup / CutMix and label smoothing act on the batch (``experiment.augmenter``).
    """

    def __init__(self, root: Path, classes: list[str], train: bool, size: int = 224, rand_augment: str = "") -> None:
        self.items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).glob("*.JPEG"))]
        self.train, self.size = train, size
        # timm create_transform: ImageNet-mean fill, the training interpolation (bicubic), translate 0.45
        self.randaug = RandAugment(rand_augment) if train and rand_augment else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, y = self.items[k]
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            if self.train:   # random resized crop, scale (0.08, 1), ratio (3/4, 4/3)
                area = w * h * np.random.uniform(0.08, 1.0)
                r = np.exp(np.random.uniform(np.log(3 / 4), np.log(4 / 3)))
                cw, ch = min(w, int(round((area * r) ** 0.5))), min(h, int(round((area / r) ** 0.5)))
                x0, y0 = np.random.randint(0, w - cw + 1), np.random.randint(0, h - ch + 1)
                im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((self.size, self.size), Image.BICUBIC)
                if np.random.rand() < 0.5:
                    im = im.transpose(Image.FLIP_LEFT_RIGHT)
            else:
                s = int(self.size / 0.875) / min(w, h)
                im = im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BICUBIC)
                w, h = im.size
                x0, y0 = (w - self.size) // 2, (h - self.size) // 2
                im = im.crop((x0, y0, x0 + self.size, y0 + self.size))
            a = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)
        if self.randaug is not None:
            a = self.randaug(a)
        a = a.float() / 255.0
        return (a - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None], y


def write_fixture(root: Path, n_classes: int = 3, n_per: int = 2) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(n_classes):
            d = root / split / f"n{1440764 + 17 * i:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n_per):
                Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(d / f"im_{k}.JPEG")


def _seed_worker(worker_id: int, rank: int) -> None:
    """Rank r > 0: move the worker's RNGs (torch, numpy, random: the per-image augmentation) off rank 0's streams.
    Every rank shares the loader's generator (one permutation for the repeated-augmentation split), so the workers'
    base seed is the same on every rank; DeiT seeds each rank with seed + rank, so the copies of an image that
    repeated augmentation sends to different ranks are augmented differently."""
    if rank > 0:
        s = (torch.initial_seed() + 1_000_003 * rank) % 2 ** 63
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2 ** 32)


def train_loader(ds: Dataset, batch_size: int, workers: int, generator: torch.Generator | None,
                 repeated_aug: int = 0, multiple: int = 256) -> DataLoader:
    """The training DataLoader: shuffled by ``generator`` (which ``suite.train.fit`` saves at each epoch start and
    restores on resume), or, with ``repeated_aug`` >= 2, DeiT's RASampler (``samplers.py``) drawing from the same
    generator. Workers are not persistent: a persistent loader draws its workers' base seed from the generator
    only at its first epoch, so the draws per epoch, and with them a resumed epoch's order, would depend on
    whether the loader is fresh; fresh workers every epoch make the order and the workers' augmentation seeds a
    function of the generator's state at the epoch start."""
    g = generator if generator is not None or repeated_aug < 2 else torch.Generator().manual_seed(0)
    sampler = RepeatedAugSampler(len(ds), repeated_aug, g, multiple=multiple) if repeated_aug >= 2 else None
    n = ra_count(len(ds), sampler.num_replicas, multiple) if sampler is not None else len(ds)
    return DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=n > batch_size,
                      num_workers=workers, generator=g,
                      worker_init_fn=functools.partial(_seed_worker, rank=D.rank()) if workers > 0 else None)


def load(ctx: Any, batch_size: int, workers: int = 8, rand_augment: str = "", repeated_aug: int = 0,
         repeated_aug_multiple: int = 256) -> tuple[DataLoader, DataLoader, int, Any]:
    folder, ref = locate(ctx, "imagenet-1k", "imagenet", ["train", "val"], HOW, fixture=write_fixture)
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    tr = ImageFolder(folder / "train", classes, True, rand_augment=rand_augment)
    va = ImageFolder(folder / "val", classes, False)
    g = ctx.generator(0) if hasattr(ctx, "generator") else None
    train = train_loader(tr, batch_size, workers, g, repeated_aug, repeated_aug_multiple)
    val = DataLoader(va, batch_size=batch_size, shuffle=False, num_workers=workers)
    return train, val, len(classes), ref
