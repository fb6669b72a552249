"""Long Range Arena (Tay et al. 2021) tasks from the published files (``lra_release.gz`` + IMDB + CIFAR-10).

Folders under the data root:
- ListOps: ``lra_release/listops-1000/basic_{train,val,test}.tsv`` (header ``Source\\tTarget``).
- Text: ``aclImdb/{train,test}/{pos,neg}/*.txt`` (IMDB), byte-level, EOS appended, len 4096.
- Retrieval: ``lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv`` (no header; label, id1,
  id2, text1, text2), byte-level, each text cut to 4000 -> x (N, 2, 4000).
- Image: CIFAR-10 python batches (``cifar-10-batches-py``) as greyscale sequences (N, 1024) uint8.
- Pathfinder: ``lra_release/pathfinder32/curv_contour_length_14/{metadata/<k>.npy, imgs/...png}``;
  metadata files are text lines ``<dir> <file> <?> <label> ...``, read in numeric order of the stem;
  80/10/10 split by ``torch.randperm(n, seed 42)`` (the S4 code's random_split); the known empty
  image ``curv_baseline/imgs/0/sample_172.png`` is skipped. x = (N, H*W) uint8.
Byte ids: 0 pad, 1 EOS, byte b -> b + 2 (vocab 258).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch

from suite.data import cifar, listops
from suite.data.base import (ArrayDataset, DatasetRef, Splits, atomic_write_bytes, corrupt, encode_bytes,
                             not_found_message, require_files)
from suite.data.images import decode_images, write_png
from suite.errors import DataNotFoundError

LRA_HOW = ("download lra_release.gz from https://storage.googleapis.com/long-range-arena/lra_release.gz "
           "and unpack it in the data root (gives lra_release/)")
IMDB_HOW = ("download aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/ and unpack it "
            "in the data root (gives aclImdb/)")
LISTOPS_DIR, RETRIEVAL_DIR, IMDB_DIR = "lra_release/listops-1000", "lra_release/tsv_data", "aclImdb"
PATHFINDER_DIR = "lra_release/pathfinder32"
LISTOPS_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
RETRIEVAL_FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv",
                   "test": "new_aan_pairs.test.tsv"}
BLANK_IMAGES = {"curv_baseline/imgs/0/sample_172.png"}


def _read_tsv(path: Path, n_cols: int, header: bool) -> list[list[str]]:
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (UnicodeDecodeError, csv.Error) as err:
        raise corrupt(path, f"unreadable TSV ({err})") from None
    if header:
        if not rows or [c.strip() for c in rows[0][:2]] != ["Source", "Target"]:
            raise corrupt(path, "first line is not the header 'Source<TAB>Target'")
        rows = rows[1:]
    for i, r in enumerate(rows):
        if len(r) != n_cols:
            raise corrupt(path, f"line {i + 1 + header} has {len(r)} fields, expected {n_cols} (truncated?)")
    return rows


def load_listops(root: Path, max_len: int = 2048) -> Splits:
    """LRA ListOps: ids (N, max_len) over :data:`listops.VOCAB`, y = value 0..9, extra lengths."""
    root = Path(root)
    require_files(root, LISTOPS_FILES.values(), "lra-listops", LRA_HOW)
    ref = DatasetRef("lra-listops", "paper")
    out: Splits = {}
    for split, f in LISTOPS_FILES.items():
        rows = _read_tsv(root / f, 2, header=True)
        try:
            x, lengths = listops.tokenize([r[0] for r in rows], max_len)
            y = torch.tensor([int(r[1]) for r in rows], dtype=torch.long)
        except (KeyError, ValueError) as err:
            raise corrupt(root / f, f"bad token or target ({err})") from None
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise corrupt(root / f, "target outside 0..9")
        out[split] = ArrayDataset(x, y, ref, {"lengths": lengths, "vocab": listops.VOCAB})
    return out


def load_retrieval(root: Path, max_len: int = 4000) -> Splits:
    """LRA Retrieval (AAN pairs): x int16 (N, 2, max_len) byte ids, y in {0, 1}."""
    root = Path(root)
    require_files(root, RETRIEVAL_FILES.values(), "lra-retrieval", LRA_HOW)
    ref = DatasetRef("lra-retrieval", "paper")
    out: Splits = {}
    for split, f in RETRIEVAL_FILES.items():
        rows = _read_tsv(root / f, 5, header=False)
        try:
            y = torch.tensor([int(float(r[0])) for r in rows], dtype=torch.long)
        except ValueError as err:
            raise corrupt(root / f, f"label column is not a number ({err})") from None
        x = torch.stack([encode_bytes([r[3] for r in rows], max_len), encode_bytes([r[4] for r in rows], max_len)], 1)
        out[split] = ArrayDataset(x, y, ref, {"ids": [(r[1], r[2]) for r in rows]})
    return out


def load_text(root: Path, max_len: int = 4096) -> Splits:
    """LRA Text = IMDB from ``aclImdb``: byte ids (N, max_len) with EOS, y = 1 for pos."""
    root = Path(root)
    dirs = [f"{s}/{c}" for s in ("train", "test") for c in ("neg", "pos")]
    require_files(root, dirs, "lra-text", IMDB_HOW)
    ref = DatasetRef("lra-text", "paper")
    out: Splits = {}
    for split in ("train", "test"):
        texts: list[str] = []
        labels: list[int] = []
        for label, c in enumerate(("neg", "pos")):
            files = sorted((root / split / c).glob("*.txt"))
            if not files:
                raise DataNotFoundError(not_found_message("lra-text", [f"{split}/{c}/*.txt"], root, IMDB_HOW))
            for p in files:
                try:
                    texts.append(p.read_text(encoding="utf-8"))
                except UnicodeDecodeError as err:
                    raise corrupt(p, f"not UTF-8 ({err})") from None
            labels += [label] * len(files)
        out[split] = ArrayDataset(encode_bytes(texts, max_len, eos=True), torch.tensor(labels), ref)
    return out


def load_image(root: Path) -> Splits:
    """LRA Image: CIFAR-10 (``cifar-10-batches-py``) as greyscale pixel sequences (N, 1024) uint8.

    Greyscale = round(0.2989 R + 0.587 G + 0.114 B) (torchvision's rgb_to_grayscale weights).
    """
    src = cifar.load_cifar10(root, name="lra-image")
    w = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)
    out: Splits = {}
    for split, ds in src.items():
        grey = (ds.x.float() * w).sum(1).round().clamp(0, 255).to(torch.uint8).reshape(len(ds), -1)
        out[split] = ArrayDataset(grey, ds.y, ds.ref, {"class_names": ds.extra.get("class_names")})
    return out


def _metadata_files(folder: Path) -> list[Path]:
    files = [p for p in (folder / "metadata").glob("*.npy") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def load_pathfinder(root: Path, difficulty: str = "curv_contour_length_14", seed: int = 42,
                    cache: bool = True) -> Splits:
    """LRA Pathfinder from ``pathfinder<res>/<difficulty>``; 80/10/10 train/val/test split."""
    root = Path(root)
    require_files(root, [f"{difficulty}/metadata", f"{difficulty}/imgs"], "lra-pathfinder", LRA_HOW)
    folder = root / difficulty
    meta = _metadata_files(folder)
    if not meta:
        raise DataNotFoundError(not_found_message("lra-pathfinder", [f"{difficulty}/metadata/<k>.npy"], root, LRA_HOW))
    rel, labels = [], []
    for m in meta:
        for ln, line in enumerate(m.read_text().splitlines()):
            f = line.split()
            if not f:
                continue
            if len(f) < 4 or f[3] not in ("0", "1"):
                raise corrupt(m, f"line {ln + 1}: expected '<dir> <file> <n> <label 0/1> ...', got {line[:60]!r}")
            path = f"{f[0]}/{f[1]}"
            if f"{difficulty}/{path}" in BLANK_IMAGES:
                continue
            rel.append(path)
            labels.append(int(f[3]))
    try:
        imgs = decode_images(folder, rel, "L", None, cache=cache)
    except FileNotFoundError as err:
        raise DataNotFoundError(not_found_message("lra-pathfinder", [str(err.filename)], root, LRA_HOW)) from None
    x = torch.from_numpy(np.ascontiguousarray(imgs)).reshape(len(rel), -1)
    y = torch.tensor(labels)
    n = len(y)
    n_val, n_test = int(0.1 * n), int(0.1 * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = {"train": perm[: n - n_val - n_test], "val": perm[n - n_val - n_test: n - n_test], "test": perm[n - n_test:]}
    ref = DatasetRef("lra-pathfinder", "paper")
    side = int(imgs.shape[1]) if imgs.ndim == 3 else 0
    return {s: ArrayDataset(x[i], y[i], ref, {"side": side}) for s, i in parts.items()}


# ---- fixtures in the exact published layouts --------------------------------------------------

def write_fixture_listops(root: Path, n: int = 12, seed: int = 0) -> Path:
    root = Path(root)
    for i, f in enumerate(LISTOPS_FILES.values()):
        src, tgt = listops.generate(listops.ListOpsConfig(n=n, max_depth=3, max_args=3, min_length=3,
                                                          max_length=40, seed=seed + i))
        atomic_write_bytes(root / f, ("Source\tTarget\n" + "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt))).encode())
    return root


def write_fixture_retrieval(root: Path, n: int = 6, seed: int = 0) -> Path:
    root, rng = Path(root), np.random.default_rng(seed)
    for f in RETRIEVAL_FILES.values():
        lines = [f"{int(rng.integers(0, 2))}\taan/{i}.txt\taan/{i + 1}.txt\tpaper {i} text \u00e9\tcited paper {i}\n"
                 for i in range(n)]
        atomic_write_bytes(root / f, "".join(lines).encode())
    return root


def write_fixture_text(root: Path, n: int = 3) -> Path:
    root = Path(root)
    for split in ("train", "test"):
        for c in ("neg", "pos"):
            for i in range(n):
                atomic_write_bytes(root / split / c / f"{i}_{7 if c == 'pos' else 2}.txt",
                                   f"A {c} review number {i}. <br /><br />Fine.".encode())
    return root


def write_fixture_pathfinder(root: Path, n_files: int = 2, per_file: int = 10, side: int = 32,
                             difficulty: str = "curv_contour_length_14", seed: int = 0) -> Path:
    """``pathfinder<side>/<difficulty>`` with text metadata ``.npy`` files and greyscale PNGs."""
    root, rng = Path(root), np.random.default_rng(seed)
    folder = root / difficulty
    for k in range(n_files):
        lines = []
        for j in range(per_file):
            write_png(folder / "imgs" / str(k) / f"sample_{j}.png", rng.integers(0, 256, (side, side), dtype=np.uint8))
            lines.append(f"imgs/{k} sample_{j}.png {j} {int(rng.integers(0, 2))} 1.0 6.0 1.5 2 1\n")
        atomic_write_bytes(folder / "metadata" / f"{k}.npy", "".join(lines).encode())
    return root
