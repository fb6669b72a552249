"""LRA Text, Retrieval and Path-X streamed from disk at full length (issue 16).

At full scale these three splits are larger than one would hold as a tensor: IMDB train is 25,000 x
4096 byte ids, AAN Retrieval train 147,086 x 2 x 4000 (2.4 GB as int16), Path-X 160,000 x 16,384
pixels (2.6 GB). The loaders here read the SAME published files as :mod:`suite.data.lra` with its
readers and encoders (``encode_bytes``, ``_metadata_files``, the CSV dialect, the 80/10/10 split by
``randperm(seed 42)``, the known blank image), but encode chunk by chunk into a memory-mapped
:func:`suite.data.stream.disk_array` and return :class:`~suite.data.stream.DiskSplit` s whose rows
are read per batch. The encoded values equal what ``lra.load_*`` produce on the same files
(``suite/data/test_lra_stream.py``). ListOps, Image and Pathfinder-32 are small and stay in memory.

:class:`EpochLoader` feeds a DiskSplit to :func:`suite.train.fit` through :func:`stream.loader`
(workers, pinned memory) with an exact resume: the shuffle generator is exposed as ``.generator``, so
``fit`` saves its state at every epoch start and a resumed run replays the interrupted epoch's order.

Path-X (``lra_release/pathfinder128``) has no catalog entry: :func:`locate_pathx` finds it under the
data root through :func:`suite.data.external.locate`, whose dry run writes :func:`write_fixture_pathx`
there in the published layout.
"""
from __future__ import annotations

import csv
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from suite.data import lra
from suite.data.base import DatasetRef, corrupt, encode_bytes, not_found_message, require_files
from suite.data.stream import CHUNK, DiskSplit, disk_array
from suite.errors import DataNotFoundError

PATHX_DIR = "lra_release/pathfinder128"
DIFFICULTY = "curv_contour_length_14"
PATHX_FILES = (f"{DIFFICULTY}/metadata", f"{DIFFICULTY}/imgs")


def _files_key(root: Path, rel: list[str]) -> str:
    """Content key of a file list: folder, names, sizes and modification times."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    for r in rel:
        st = (Path(root) / r).stat()
        h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- Text (IMDB)

def text_splits(root: Path, max_len: int = 4096, chunk: int = CHUNK) -> dict[str, DiskSplit]:
    """LRA Text from ``aclImdb``: ``train``/``test`` DiskSplits of byte ids (N, max_len) int16 with
    EOS, y = 1 for pos; files in the order of :func:`lra.load_text` (neg then pos, sorted)."""
    root = Path(root)
    require_files(root, [f"{s}/{c}" for s in ("train", "test") for c in ("neg", "pos")], "lra-text", lra.IMDB_HOW)
    ref = DatasetRef("lra-text", "paper")
    out: dict[str, DiskSplit] = {}
    for split in ("train", "test"):
        rel: list[str] = []
        labels: list[int] = []
        for label, c in enumerate(("neg", "pos")):
            files = sorted((root / split / c).glob("*.txt"))
            if not files:
                raise DataNotFoundError(not_found_message("lra-text", [f"{split}/{c}/*.txt"], root, lra.IMDB_HOW))
            rel += [f"{split}/{c}/{p.name}" for p in files]
            labels += [label] * len(files)

        def fill(s: int, e: int, rel: list[str] = rel) -> np.ndarray:
            texts = []
            for r in rel[s:e]:
                try:
                    texts.append((root / r).read_text(encoding="utf-8"))
                except UnicodeDecodeError as err:
                    raise corrupt(root / r, f"not UTF-8 ({err})") from None
            return encode_bytes(texts, max_len, eos=True).numpy()

        x = disk_array("lra-text", {"files": _files_key(root, rel), "max_len": max_len}, (len(rel), max_len),
                       np.int16, fill, chunk)
        out[split] = DiskSplit(x, torch.tensor(labels), ref)
    return out


# --------------------------------------------------------------------------- Retrieval (AAN)

def _iter_tsv(path: Path, n_cols: int) -> Iterator[list[str]]:
    """Rows of a headerless TSV, one at a time (the dialect and checks of ``lra._read_tsv``)."""
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, r in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)):
                if len(r) != n_cols:
                    raise corrupt(path, f"line {i + 1} has {len(r)} fields, expected {n_cols} (truncated?)")
                yield r
    except (UnicodeDecodeError, csv.Error) as err:
        raise corrupt(path, f"unreadable TSV ({err})") from None


def retrieval_splits(root: Path, max_len: int = 4000, chunk: int = CHUNK) -> dict[str, DiskSplit]:
    """LRA Retrieval (AAN pairs): ``train``/``val``/``test`` DiskSplits of x int16 (N, 2, max_len), y in
    {0, 1}, extra ``ids`` (the document id pairs). A first pass reads labels and ids; the texts are
    encoded in a second pass, ``chunk`` rows at a time."""
    root = Path(root)
    require_files(root, lra.RETRIEVAL_FILES.values(), "lra-retrieval", lra.LRA_HOW)
    ref = DatasetRef("lra-retrieval", "paper")
    out: dict[str, DiskSplit] = {}
    for split, f in lra.RETRIEVAL_FILES.items():
        path = root / f
        labels, ids = [], []
        for r in _iter_tsv(path, 5):
            try:
                labels.append(int(float(r[0])))
            except ValueError as err:
                raise corrupt(path, f"label column is not a number ({err})") from None
            ids.append((r[1], r[2]))
        rows = _iter_tsv(path, 5)  # consumed in order: disk_array fills rows 0.., chunk by chunk

        def fill(s: int, e: int, rows: Iterator[list[str]] = rows) -> np.ndarray:
            block = [next(rows) for _ in range(e - s)]
            return torch.stack([encode_bytes([r[3] for r in block], max_len),
                                encode_bytes([r[4] for r in block], max_len)], 1).numpy()

        x = disk_array("lra-retrieval", {"files": _files_key(root, [f]), "max_len": max_len},
                       (len(labels), 2, max_len), np.int16, fill, chunk)
        rows.close()
        out[split] = DiskSplit(x, torch.tensor(labels, dtype=torch.long), ref, {"ids": ids})
    return out


# --------------------------------------------------------------------------- Pathfinder / Path-X

def _pathfinder_index(root: Path, difficulty: str) -> tuple[list[str], list[int]]:
    """Image paths and labels from ``metadata/<k>.npy`` (the rules of :func:`lra.load_pathfinder`)."""
    folder = root / difficulty
    meta = lra._metadata_files(folder)
    if not meta:
        raise DataNotFoundError(not_found_message("lra-pathfinder", [f"{difficulty}/metadata/<k>.npy"], root,
                                                  lra.LRA_HOW))
    rel, labels = [], []
    for m in meta:
        for ln, line in enumerate(m.read_text().splitlines()):
            f = line.split()
            if not f:
                continue
            if len(f) < 4 or f[3] not in ("0", "1"):
                raise corrupt(m, f"line {ln + 1}: expected '<dir> <file> <n> <label 0/1> ...', got {line[:60]!r}")
            path = f"{f[0]}/{f[1]}"
            if f"{difficulty}/{path}" in lra.BLANK_IMAGES:
                continue
            rel.append(path)
            labels.append(int(f[3]))
    return rel, labels


def pathfinder_splits(root: Path, difficulty: str = DIFFICULTY, seed: int = 42, name: str = "lra-pathfinder",
                      chunk: int = CHUNK) -> dict[str, DiskSplit]:
    """LRA Pathfinder at any resolution (Path-X: ``pathfinder128``) as ``train``/``val``/``test``
    DiskSplits of x uint8 (N, H*W) over one decoded array, the 80/10/10 split of
    :func:`lra.load_pathfinder` (``randperm(n, seed)``); extra ``side``."""
    from suite.data.images import _decode

    root = Path(root)
    require_files(root, [f"{difficulty}/metadata", f"{difficulty}/imgs"], name, lra.LRA_HOW)
    folder = root / difficulty
    rel, labels = _pathfinder_index(root, difficulty)
    paths = [folder / r for r in rel]
    try:
        key = _files_key(folder, rel)
        side = int(_decode(paths[0], "L", None).shape[0]) if paths else 0
    except FileNotFoundError as err:
        raise DataNotFoundError(not_found_message(name, [str(err.filename)], root, lra.LRA_HOW)) from None
    workers = min(8, os.cpu_count() or 1)

    def fill(s: int, e: int) -> np.ndarray:
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            imgs = list(pool.map(lambda p: _decode(p, "L", (side, side)), paths[s:e]))  # checks the size
        return np.stack(imgs).reshape(e - s, side * side)

    x = disk_array("lra-pathfinder", {"files": key}, (len(rel), side * side), np.uint8, fill, chunk)
    y = torch.tensor(labels)
    n = len(y)
    n_val, n_test = int(0.1 * n), int(0.1 * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = n - n_val - n_test
    parts = {"train": perm[:n_train], "val": perm[n_train: n - n_test], "test": perm[n - n_test:]}
    ref = DatasetRef(name, "paper")
    return {s: DiskSplit(x, y, ref, {"side": side}, rows=i) for s, i in parts.items()}


def write_fixture_pathx(folder: Path) -> None:
    """A tiny Path-X (``pathfinder128/curv_contour_length_14``) in the published layout: 10 PNGs of
    128x128 with text metadata files."""
    lra.write_fixture_pathfinder(folder, n_files=2, per_file=5, side=128)


def locate_pathx(ctx: Any) -> tuple[Path, DatasetRef]:
    """``<data root>/lra_release/pathfinder128`` (a dry run without it writes :func:`write_fixture_pathx`
    in that layout, which the rehearsal gathers into its data root)."""
    from suite.data.external import locate

    return locate(ctx, "lra-pathx", PATHX_DIR, PATHX_FILES, lra.LRA_HOW, fixture=write_fixture_pathx)


__all__ = ["PATHX_DIR", "PATHX_FILES", "text_splits", "retrieval_splits", "pathfinder_splits", "write_fixture_pathx",
           "locate_pathx"]
