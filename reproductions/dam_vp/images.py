"""Full-scale image data of DAM-VP (spec §5): the paper's meta-training sources and downstream sets in their
published formats, read from disk and streamed, and the per-batch input transform of the official pipeline.

Nothing here holds a whole split as float or at 224 px: array datasets (STL-10, SVHN; CIFAR comes from
suite.data) stay uint8 at their native resolution, file datasets (JPEG/PPM trees with split lists) are a
list of paths decoded per image when a batch is drawn (``FileImages``, a torch Dataset, so a DataLoader's
workers decode in parallel). ``InputTransform`` then brings each batch, on the device, to the backbone's
input: [0, 1] → resize (shorter side) + centre crop → mean/std normalisation, as the official
``data_utils/transforms.py`` does (Resize(256), CenterCrop(224), ToTensor, Normalize with the ImageNet
mean/std for IN-1k backbones, 0.5/0.5 for ``vit-b-22k``). Prompts are added after it, in normalised space
(official ``task_adapting/adapter.py``: the prompter is applied to the loader's normalised tensor).

Each dataset is located with ``suite.data.external.locate`` (provenance ``paper`` when every listed file is
under the data root); a dry run or rehearsal without the data writes a tiny fixture in the same format.
Layouts (folder under the data root → what the loader reads) follow the official ``data_utils/datasets``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suite.data.base import corrupt
from suite.spec import DatasetRef

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None, "imagenet": (IMAGENET_MEAN, IMAGENET_STD), "half": ((0.5,) * 3, (0.5,) * 3)}


def resized_hw(h: int, w: int, resize: int) -> tuple[int, int]:
    """torchvision Resize(int) on a PIL image: the shorter side becomes ``resize``, the longer one scales
    (truncated)."""
    if h <= w:
        return resize, int(resize * w / h)
    return int(resize * h / w), resize


def crop_box(h: int, w: int, size: int) -> tuple[int, int]:
    """Top-left corner of torchvision's CenterCrop(size)."""
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


class InputTransform(nn.Module):
    """One batch (uint8 or float in [0, 1], any H×W) → the backbone's normalised ``size``×``size`` input, on
    the batch's device (official transforms.py test path; ``resize`` = 0: straight to ``size``)."""

    def __init__(self, size: int, resize: int = 0, norm: str = "none") -> None:
        super().__init__()
        if norm not in NORMS:
            from suite.errors import ConfigError
            raise ConfigError(f"norm={norm!r} is unknown; use one of {', '.join(NORMS)}")
        self.size, self.resize = size, resize
        ms = NORMS[norm]
        self.register_buffer("mean", torch.tensor(ms[0] if ms else (0.0,)).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(ms[1] if ms else (1.0,)).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        h, w = x.shape[-2:]
        if (h, w) != (self.size, self.size):
            if self.resize:
                nh, nw = resized_hw(h, w, self.resize)
                x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
                t, l = crop_box(nh, nw, self.size)
                x = x[..., t:t + self.size, l:l + self.size]
            else:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


class FileImages(torch.utils.data.Dataset):
    """Images decoded from their files on access: RGB, shorter side resized to ``resize`` (PIL bilinear),
    centre crop ``size`` → uint8 (3, size, size). ``x[i]`` is one image, ``x[idx]`` (tensor, list or slice)
    a stacked batch; ``subset(idx)`` another FileImages (nothing decoded)."""

    def __init__(self, paths: Sequence[Path | str], size: int, resize: int) -> None:
        self.paths, self.size, self.resize = [str(p) for p in paths], size, max(resize, size)
        self.shape = (len(self.paths), 3, size, size)

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
            nh, nw = resized_hw(im.height, im.width, self.resize)
            im = im.resize((nw, nh), Image.BILINEAR)
            t, l = crop_box(nh, nw, self.size)
            im = im.crop((l, t, l + self.size, t + self.size))
            return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()

    def _index(self, idx: Any) -> list[int]:
        if isinstance(idx, slice):
            return list(range(len(self)))[idx]
        return [int(i) for i in torch.as_tensor(idx).reshape(-1).tolist()]

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):
            return self._one(int(idx))
        rows = self._index(idx)
        if not rows:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return torch.stack([self._one(i) for i in rows])

    def subset(self, idx: Any) -> "FileImages":
        return FileImages([self.paths[i] for i in self._index(idx)], self.size, self.resize)


Images = torch.Tensor | FileImages
Parts = dict[str, tuple[Images, torch.Tensor]]  # split → (images, labels)


@dataclass(frozen=True)
class Published:
    """One dataset of the paper in its published layout: ``subdir`` under the data root holding ``files``;
    ``read(folder, size, resize)`` → {split: (images, labels)} and the class count; ``write(folder)`` a tiny
    fixture in the same format."""

    name: str
    subdir: str
    files: tuple[str, ...]
    how: str
    read: Callable[[Path, int, int], tuple[Parts, int]]
    write: Callable[[Path], None]
    role: str  # "source" (meta-training, §3) or "target" (downstream, §5)


def load(ctx: Any, name: str, size: int, resize: int) -> tuple[Parts, int, DatasetRef]:
    """({split: (images, labels)}, number of classes, ref) of dataset ``name``, located like paper data (a
    folder of the fixture cache, as a rehearsal's data root is, reads as ``<name>-fixture``, stand-in)."""
    from suite.data.catalog import is_fixture
    from suite.data.external import locate

    d = PUBLISHED[name]
    folder, ref = locate(ctx, name, d.subdir, list(d.files), d.how, fixture=d.write)
    if is_fixture(folder):
        ref = DatasetRef(f"{name}-fixture", "stand-in")
    parts, n_cls = d.read(folder, size, resize)
    return parts, n_cls, ref


# --------------------------------------------------------------------------- fixture helpers

def _jpeg(path: Path, rng: np.random.Generator, hw: tuple[int, int] = (40, 52), fmt: str = "JPEG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path, fmt)


def _labels(values: Sequence[Any]) -> tuple[torch.Tensor, list[Any]]:
    """Contiguous ids of ``values`` in sorted order (the official loaders' ``sorted(set(...))``)."""
    keys = sorted(set(values))
    pos = {k: i for i, k in enumerate(keys)}
    return torch.tensor([pos[v] for v in values], dtype=torch.long), keys


# --------------------------------------------------------------------------- meta-training sources (§3)

STL_SIDE = 96


def _read_stl10(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``stl10_binary/{train,test}_{X,y}.bin``: uint8 images stored column-major (N, 3, 96, 96), labels 1..10
    (official stl10/dataset.py; ``train`` = the 5000 labelled images)."""
    out: Parts = {}
    for split in ("train", "test"):
        raw = np.fromfile(folder / f"{split}_X.bin", dtype=np.uint8)
        if raw.size % (3 * STL_SIDE * STL_SIDE):
            raise corrupt(folder / f"{split}_X.bin", f"{raw.size} bytes is not a whole number of 3x96x96 images")
        x = torch.from_numpy(raw.reshape(-1, 3, STL_SIDE, STL_SIDE).transpose(0, 1, 3, 2).copy())
        y = torch.from_numpy(np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1)
        if len(y) != len(x):
            raise corrupt(folder / f"{split}_y.bin", f"{len(y)} labels for {len(x)} images")
        out[split] = (x, y)
    return out, 10


def _write_stl10(folder: Path, n: int = 12, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rng.integers(0, 256, n * 3 * STL_SIDE * STL_SIDE, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")


EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")


def _read_eurosat(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``eurosat/2750/<Class>/*.jpg`` (EuroSAT RGB, 64×64); the official loader uses the whole folder."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(f, c) for c in classes for f in sorted((folder / c).glob("*.jpg"))]
    y, _ = _labels([c for _, c in files])
    return {"train": (FileImages([f for f, _ in files], size, resize), y)}, len(classes)


def _write_eurosat(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for c in EUROSAT_CLASSES:
        for i in (1, 2):
            _jpeg(folder / c / f"{c}_{i}.jpg", rng, (64, 64))


def _read_pets(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``oxford-iiit-pet/{images/<id>.jpg, annotations/{trainval,test}.txt}``, lines ``<id> <class 1..37>
    <species> <breed>`` (official oxfordpet/dataset.py: train = trainval)."""
    out: Parts = {}
    for split, f in (("train", "trainval"), ("test", "test")):
        rows = [ln.split() for ln in (folder / "annotations" / f"{f}.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
        out[split] = (FileImages([folder / "images" / f"{r[0]}.jpg" for r in rows], size, resize),
                      torch.tensor([int(r[1]) - 1 for r in rows], dtype=torch.long))
    return out, int(max(int(out["train"][1].max()), int(out["test"][1].max()))) + 1


def _write_pets(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    breeds = ("Abyssinian", "Bengal", "beagle")
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for f, ids in (("trainval", (1, 2, 3)), ("test", (4,))):
        lines = []
        for k, b in enumerate(breeds):
            for i in ids:
                _jpeg(folder / "images" / f"{b}_{i}.jpg", rng, (50 + 7 * i, 40))
                lines.append(f"{b}_{i} {k + 1} {1 + (b[0].islower())} {k + 1}")
        (folder / "annotations" / f"{f}.txt").write_text("\n".join(lines) + "\n")


def _read_sun397(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``SUN397/{ClassName.txt, <letter>/<class>[/<sub>]/sun_*.jpg}``; ClassName.txt lines ``/a/abbey``;
    every image is in ``train`` (official sun397/dataset.py)."""
    classes = [c[3:].strip() for c in (folder / "ClassName.txt").read_text().splitlines() if c.strip()]
    pos = {c: i for i, c in enumerate(classes)}
    files = sorted(folder.rglob("sun_*.jpg"))
    try:
        y = torch.tensor([pos["/".join(p.relative_to(folder).parts[1:-1])] for p in files], dtype=torch.long)
    except KeyError as exc:
        raise corrupt(folder, f"an image folder {exc} is not listed in ClassName.txt") from None
    return {"train": (FileImages(files, size, resize), y)}, len(classes)


def _write_sun397(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    classes = ("/a/abbey", "/b/bakery/shop", "/c/canyon")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ClassName.txt").write_text("\n".join(classes) + "\n")
    for c in classes:
        for i in range(3):
            _jpeg(folder / c.strip("/") / f"sun_{c[3:].replace('/', '')}{i}.jpg", rng, (60, 80))


def _vegfru(kind: str) -> tuple[Callable[[Path, int, int], tuple[Parts, int]], Callable[[Path], None]]:
    """VegFru lists as the official fru92/veg200 txt_dataset.py reads them: ``<kind>_lists/<short>_{train,
    val,test}.txt`` lines ``<class dir>/<image> <label>``, images under ``<kind>_images/``; class ids are the
    sorted label strings."""
    short = kind[:3]

    def read(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
        out: Parts = {}
        rows = {s: [ln.split() for ln in (folder / f"{kind}_lists" / f"{short}_{s}.txt").read_text().splitlines()
                    if ln.strip()] for s in ("train", "val", "test")}
        _, keys = _labels([r[1] for r in rows["train"]])
        pos = {k: i for i, k in enumerate(keys)}
        for s, rs in rows.items():
            out[s] = (FileImages([folder / f"{kind}_images" / r[0] for r in rs], size, resize),
                      torch.tensor([pos[r[1]] for r in rs], dtype=torch.long))
        return out, len(keys)

    def write(folder: Path, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        (folder / f"{kind}_lists").mkdir(parents=True, exist_ok=True)
        for s, n in (("train", 3), ("val", 1), ("test", 1)):
            lines = []
            for k in range(3):
                for i in range(n):
                    rel = f"{short}_c{k}/{s}_{i}.jpg"
                    _jpeg(folder / f"{kind}_images" / rel, rng, (45, 45 + 10 * k))
                    lines.append(f"{rel} {k}")
            (folder / f"{kind}_lists" / f"{short}_{s}.txt").write_text("\n".join(lines) + "\n")

    return read, write


# --------------------------------------------------------------------------- downstream sets (§5)

def _read_dtd(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``dtd/{images/<class>/<img>.jpg, labels/{train,val,test}1.txt}`` (partition 1), lines ``<class>/<img>``."""
    rows = {s: [ln.strip() for ln in (folder / "labels" / f"{s}1.txt").read_text().splitlines() if ln.strip()]
            for s in ("train", "val", "test")}
    _, keys = _labels([r.split("/")[0] for r in rows["train"]])
    pos = {k: i for i, k in enumerate(keys)}
    parts: Parts = {s: (FileImages([folder / "images" / r for r in rs], size, resize),
                        torch.tensor([pos[r.split("/")[0]] for r in rs], dtype=torch.long)) for s, rs in rows.items()}
    return parts, len(keys)


def _write_dtd(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for s, n in (("train", 3), ("val", 1), ("test", 2)):
        lines = []
        for c in ("banded", "blotchy", "braided"):
            for i in range(n):
                _jpeg(folder / "images" / c / f"{c}_{s}{i}.jpg", rng, (70, 55))
                lines.append(f"{c}/{c}_{s}{i}.jpg")
        (folder / "labels" / f"{s}1.txt").write_text("\n".join(lines) + "\n")


def _read_food101(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``food-101/{meta/{train,test}.json, images/<class>/<id>.jpg}``; json = {class: ["<class>/<id>", ...]}."""
    out: Parts = {}
    classes: list[str] = []
    for s in ("train", "test"):
        meta = json.loads((folder / "meta" / f"{s}.json").read_text())
        classes = classes or sorted(meta)
        pos = {c: i for i, c in enumerate(classes)}
        items = [(rel, pos[c]) for c in sorted(meta) for rel in meta[c]]
        out[s] = (FileImages([folder / "images" / f"{r}.jpg" for r, _ in items], size, resize),
                  torch.tensor([k for _, k in items], dtype=torch.long))
    return out, len(classes)


def _write_food101(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    for s, n in (("train", 4), ("test", 2)):
        meta = {}
        for c in ("apple_pie", "baby_back_ribs", "baklava"):
            meta[c] = [f"{c}/{s}{i}" for i in range(n)]
            for rel in meta[c]:
                _jpeg(folder / "images" / f"{rel}.jpg", rng, (48, 64))
        (folder / "meta" / f"{s}.json").write_text(json.dumps(meta))


def _read_svhn(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``svhn/{train,test}_32x32.mat``: X (32, 32, 3, N) uint8, y (N, 1) with 10 for the digit 0."""
    from scipy.io import loadmat

    out: Parts = {}
    for s in ("train", "test"):
        m = loadmat(folder / f"{s}_32x32.mat")
        x, y = np.asarray(m["X"]), np.asarray(m["y"]).astype(np.int64).reshape(-1)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
            raise corrupt(folder / f"{s}_32x32.mat", f"X is {x.dtype} {x.shape} for {len(y)} labels, expected "
                          "uint8 (32, 32, 3, N)")
        y[y == 10] = 0
        out[s] = (torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y))
    return out, 10


def _write_svhn(folder: Path, n: int = 12, seed: int = 0) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in ("train", "test"):
        savemat(folder / f"{s}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                            "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})


def _read_gtsrb(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``gtsrb/{GTSRB/Training/<00000..00042>/*.ppm, GTSRB/Final_Test/Images/*.ppm, GT-final_test.csv}``
    (official gtsrb/dataset.py: train = the class folders, test labels from the csv, ``;``-separated)."""
    train = folder / "GTSRB" / "Training"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files = [(f, c) for c in classes for f in sorted((train / c).glob("*.ppm"))]
    y, _ = _labels([c for _, c in files])
    with open(folder / "GT-final_test.csv") as fh:
        rows = list(csv.DictReader(fh, delimiter=";", skipinitialspace=True))
    test = folder / "GTSRB" / "Final_Test" / "Images"
    return {"train": (FileImages([f for f, _ in files], size, resize), y),
            "test": (FileImages([test / r["Filename"] for r in rows], size, resize),
                     torch.tensor([int(r["ClassId"]) for r in rows], dtype=torch.long))}, len(classes)


def _write_gtsrb(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k in range(3):
        for i in range(3):
            _jpeg(folder / "GTSRB" / "Training" / f"{k:05d}" / f"00000_{i:05d}.ppm", rng, (30, 31), "PPM")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(4):
        _jpeg(folder / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", rng, (33, 29), "PPM")
        rows.append(f"{i:05d}.ppm;29;33;5;5;24;28;{i % 3}")
    (folder / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def _read_aircraft(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
    """``fgvc-aircraft-2013b/data/{variants.txt, images_variant_{train,val,test}.txt, images/<id>.jpg}``; list
    lines ``<7-digit id> <variant>`` (official fgvc_aircraft/txt_dataset.py: classes = sorted variants)."""
    data = folder / "data"
    keys = sorted(ln.strip() for ln in (data / "variants.txt").read_text().splitlines() if ln.strip())
    pos = {k: i for i, k in enumerate(keys)}
    out: Parts = {}
    for s in ("train", "val", "test"):
        rows = [(ln.strip()[:7], ln.strip()[8:]) for ln in (data / f"images_variant_{s}.txt").read_text()
                .splitlines() if ln.strip()]
        out[s] = (FileImages([data / "images" / f"{i}.jpg" for i, _ in rows], size, resize),
                  torch.tensor([pos[v] for _, v in rows], dtype=torch.long))
    return out, len(keys)


def _write_aircraft(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    variants = ("707-320", "727-200", "A300B4")
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    n = 0
    for s, per in (("train", 3), ("val", 1), ("test", 2)):
        lines = []
        for v in variants:
            for _ in range(per):
                _jpeg(data / "images" / f"{1000000 + n}.jpg", rng, (60, 90))
                lines.append(f"{1000000 + n} {v}")
                n += 1
        (data / f"images_variant_{s}.txt").write_text("\n".join(lines) + "\n")


def _fgvc_json(image_dir: str) -> tuple[Callable[[Path, int, int], tuple[Parts, int]], Callable[[Path], None]]:
    """VPT's FGVC json splits as the official fgvc/json_dataset.py reads them: ``{train,val,test}.json`` =
    {image path relative to ``image_dir``: class id}; contiguous ids = the sorted train ids."""

    def read(folder: Path, size: int, resize: int) -> tuple[Parts, int]:
        anno = {s: json.loads((folder / f"{s}.json").read_text()) for s in ("train", "val", "test")}
        keys = sorted(set(anno["train"].values()))
        pos = {k: i for i, k in enumerate(keys)}
        out: Parts = {}
        for s, a in anno.items():
            missing = sorted(set(a.values()) - set(pos))
            if missing:
                raise corrupt(folder / f"{s}.json", f"class ids {missing[:3]} do not occur in train.json")
            out[s] = (FileImages([folder / image_dir / p for p in a], size, resize),
                      torch.tensor([pos[v] for v in a.values()], dtype=torch.long))
        return out, len(keys)

    def write(folder: Path, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        for s, n in (("train", 3), ("val", 1), ("test", 2)):
            anno = {}
            for k in (1, 2, 3):
                for i in range(n):
                    rel = f"{k:03d}.class/{s}_{i}.jpg"
                    _jpeg(folder / image_dir / rel, rng, (50, 66))
                    anno[rel] = k
            (folder / f"{s}.json").write_text(json.dumps(anno))

    return read, write


def _json_entry(name: str, subdir: str, image_dir: str, how: str) -> Published:
    r, w = _fgvc_json(image_dir)
    files = ("train.json", "val.json", "test.json") + ((image_dir,) if image_dir else ())
    return Published(name, subdir, files, how, r, w, "target")


VTAB_HOW = "see https://github.com/KMnP/vpt (FGVC json splits) and put the dataset with its json files there"
_fru, _fru_w = _vegfru("fru92")
_veg, _veg_w = _vegfru("veg200")
PUBLISHED: dict[str, Published] = {d.name: d for d in (
    # meta-training sources (official arguments.py META_TRAIN_DATASETS)
    Published("sun397", "SUN397", ("ClassName.txt",), "extract SUN397.tar.gz (vision.princeton.edu/projects/2010/SUN)",
              _read_sun397, _write_sun397, "source"),
    Published("stl10", "stl10_binary", ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"),
              "extract stl10_binary.tar.gz (cs.stanford.edu/~acoates/stl10)", _read_stl10, _write_stl10, "source"),
    Published("fru92", "vegfru-dataset", ("fru92_lists/fru_train.txt", "fru92_lists/fru_val.txt",
                                          "fru92_lists/fru_test.txt", "fru92_images"),
              "VegFru (github.com/ustc-vim/vegfru) with the DAM-VP fru92_lists/veg200_lists", _fru, _fru_w, "source"),
    Published("veg200", "vegfru-dataset", ("veg200_lists/veg_train.txt", "veg200_lists/veg_val.txt",
                                           "veg200_lists/veg_test.txt", "veg200_images"),
              "VegFru (github.com/ustc-vim/vegfru) with the DAM-VP fru92_lists/veg200_lists", _veg, _veg_w, "source"),
    Published("oxford-iiit-pets", "oxford-iiit-pet", ("images", "annotations/trainval.txt", "annotations/test.txt"),
              "extract images.tar.gz and annotations.tar.gz (robots.ox.ac.uk/~vgg/data/pets)", _read_pets,
              _write_pets, "source"),
    Published("eurosat", "eurosat/2750", EUROSAT_CLASSES, "extract EuroSAT.zip (RGB, github.com/phelber/eurosat)",
              _read_eurosat, _write_eurosat, "source"),
    # downstream (official arguments.py TASK_ADAPT_DATASETS; CIFAR-10/100 come from suite.data's catalog)
    _json_entry("cub200", "CUB_200_2011", "images", VTAB_HOW),
    _json_entry("nabirds", "nabirds", "images", VTAB_HOW),
    _json_entry("oxford-flowers", "OxfordFlower", "", VTAB_HOW),
    _json_entry("stanford-dogs", "Stanford-dogs", "Images", VTAB_HOW),
    _json_entry("stanford-cars", "Stanford-cars", "", VTAB_HOW),
    Published("fgvc-aircraft", "fgvc-aircraft-2013b", ("data/variants.txt", "data/images_variant_train.txt",
                                                       "data/images_variant_val.txt", "data/images_variant_test.txt",
                                                       "data/images"),
              "extract fgvc-aircraft-2013b.tar.gz (robots.ox.ac.uk/~vgg/data/fgvc-aircraft)", _read_aircraft,
              _write_aircraft, "target"),
    Published("food101", "food-101", ("meta/train.json", "meta/test.json", "images"),
              "extract food-101.tar.gz (data.vision.ee.ethz.ch/cvl/datasets_extra/food-101)", _read_food101,
              _write_food101, "target"),
    Published("dtd", "dtd", ("labels/train1.txt", "labels/val1.txt", "labels/test1.txt", "images"),
              "extract dtd-r1.0.1.tar.gz (robots.ox.ac.uk/~vgg/data/dtd)", _read_dtd, _write_dtd, "target"),
    Published("svhn", "svhn", ("train_32x32.mat", "test_32x32.mat"),
              "download train_32x32.mat and test_32x32.mat (ufldl.stanford.edu/housenumbers)", _read_svhn,
              _write_svhn, "target"),
    Published("gtsrb", "gtsrb", ("GTSRB/Training", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
              "extract GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip "
              "(benchmark.ini.rub.de)", _read_gtsrb, _write_gtsrb, "target"),
)}
SOURCES = tuple(n for n, d in PUBLISHED.items() if d.role == "source")
CATALOG_TARGETS = ("cifar-10", "cifar-100")  # read by suite.data.catalog
TARGETS = CATALOG_TARGETS + tuple(n for n, d in PUBLISHED.items() if d.role == "target")

