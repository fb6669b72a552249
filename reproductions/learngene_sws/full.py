"""Full scale (spec §5): ImageNet-1K in the DeiT ImageFolder layout, streamed from disk.

<data_root>/imagenet/{train,val}/<wnid>/*.JPEG  (val sorted into class folders, as DeiT's ImageFolder reads it).
Dry run without the data: a tiny fixture in that layout (real JPEG files) builds the same pipeline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from suite.data.external import locate

HOW = ("download ILSVRC2012 from https://image-net.org and arrange train/ and val/ as <wnid>/*.JPEG class folders "
       "(e.g. with the standard valprep.sh)")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolder(Dataset):
    """<split>/<wnid>/*.JPEG -> (3x224x224 normalised float tensor, class index); class index = sorted wnid order.
    Train: random-resized-crop + horizontal flip; val: resize 256 + centre crop 224 (DeiT eval transform).
    Random erasing, mixup / CutMix and label smoothing act on the batch (``experiment.augmenter``); DeiT's
    RandAugment and repeated augmentation are left out (README)."""

    def __init__(self, root: Path, classes: list[str], train: bool, size: int = 224) -> None:
        self.items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).glob("*.JPEG"))]
        self.train, self.size = train, size

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
            a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
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


def load(ctx: Any, batch_size: int, workers: int = 8) -> tuple[DataLoader, DataLoader, int, Any]:
    folder, ref = locate(ctx, "imagenet-1k", "imagenet", ["train", "val"], HOW, fixture=write_fixture)
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    tr, va = ImageFolder(folder / "train", classes, True), ImageFolder(folder / "val", classes, False)
    g = ctx.generator(0) if hasattr(ctx, "generator") else None
    train = DataLoader(tr, batch_size=batch_size, shuffle=True, drop_last=len(tr) > batch_size,
                       num_workers=workers, generator=g, persistent_workers=workers > 0)
    val = DataLoader(va, batch_size=batch_size, shuffle=False, num_workers=workers)
    return train, val, len(classes), ref
