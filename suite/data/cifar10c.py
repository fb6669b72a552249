"""CIFAR-10-C and CIFAR-10.2: the two shifted CIFAR-10 test sets, read in their published layouts.

**CIFAR-10-C** (Hendrycks & Dietterich, ICLR 2019; ``CIFAR-10-C.tar`` of https://zenodo.org/record/2535967,
untarred in the data root: ``CIFAR-10-C/``): one ``<corruption>.npy`` per corruption, uint8
(50000, 32, 32, 3) HWC = the 10,000 CIFAR-10 test images corrupted at severity 1, then the same images
at severity 2, ..., severity 5 (rows ``(s-1)*10000 : s*10000``), and ``labels.npy`` (50000,), the label
of every row (the test labels repeated five times). The benchmark has 15 corruptions (:data:`CORRUPTIONS`);
the archive holds 4 more that the benchmark keeps for validation (:data:`EXTRA_CORRUPTIONS`).
A corruption file is 150 MB and 15 of them do not belong in memory at once: every file is opened with
``np.load(mmap_mode='r')`` and only the requested severity's rows are read, one (corruption, severity)
(:meth:`CifarC.split`, 10,000 images) or one batch (:meth:`CifarC.batches`) at a time.

**CIFAR-10.2** (Lu et al., "Harder or Different? A Closer Look at Distribution Shift in Dataset
Reproduction", 2020; https://github.com/modestyachts/cifar-10.2 since its 2021 'npy -> npz' commit, in
``<data root>/cifar-10.2/``): ``cifar102_test.npz`` (2,000 images) and ``cifar102_train.npz`` (10,000)
with keys ``images`` uint8 (n, 32, 32, 3), ``labels`` int64 (n,), ``label_names``, ``ti_indices`` and
``keywords``. The repository's first release (``cifar102_*.npy``, a pickled dict) is not read: unpickling
a file from a shared data root can run code.

Images come back channel-first like :mod:`suite.data.cifar`: uint8 (N, 3, 32, 32) in an
``ArrayDataset``, float in [0, 1] from :meth:`CifarC.batches`. ``locate_cifar10c`` / ``locate_cifar102``
find the folders through :func:`suite.data.external.locate`, which sets the provenance (``paper`` from
the data root, a ``*-fixture`` stand-in written by :func:`write_fixture_cifar10c` /
:func:`write_fixture_cifar102` in a dry run or rehearsal).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from suite.data.base import ArrayDataset, corrupt, require_files
from suite.errors import ConfigError, DataNotFoundError, UnknownNameError
from suite.io import atomic_write
from suite.spec import DatasetRef

C_NAME, C_DIR = "cifar-10-c", "CIFAR-10-C"
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
C_LABELS = "labels.npy"
C_HOW = ("download CIFAR-10-C.tar from https://zenodo.org/record/2535967 and untar it in the data root "
         "(gives CIFAR-10-C/<corruption>.npy and CIFAR-10-C/labels.npy)")
C_REFETCH = "untar CIFAR-10-C.tar (https://zenodo.org/record/2535967) again"

C102_NAME, C102_DIR = "cifar-10.2", "cifar-10.2"
C102_HOW = ("copy cifar102_test.npz and cifar102_train.npz of https://github.com/modestyachts/cifar-10.2 "
            "(the npz release) into <data root>/cifar-10.2/")
C102_REFETCH = "copy the npz release of https://github.com/modestyachts/cifar-10.2 again"
C102_SPLITS = ("test", "train")
HW = (32, 32, 3)


def c_files(corruptions: Sequence[str]) -> list[str]:
    """The files of CIFAR-10-C that ``corruptions`` need (one .npy each, plus the labels)."""
    return [f"{c}.npy" for c in corruptions] + [C_LABELS]


def c102_file(split: str) -> str:
    if split not in C102_SPLITS:
        raise UnknownNameError(f"CIFAR-10.2 has no split {split!r}; use one of {C102_SPLITS}")
    return f"cifar102_{split}.npz"


def check_corruptions(corruptions: Sequence[str]) -> tuple[str, ...]:
    """``corruptions`` as a tuple; an empty list or an unknown name is a one-line ConfigError."""
    known = CORRUPTIONS + EXTRA_CORRUPTIONS
    bad = [c for c in corruptions if c not in known]
    if bad:
        raise ConfigError(f"unknown CIFAR-10-C corruption(s) {bad}; use some of {', '.join(known)}")
    if not corruptions:
        raise ConfigError(f"no CIFAR-10-C corruption requested; name some of {', '.join(CORRUPTIONS)}")
    return tuple(corruptions)


def _open_npy(path: Path, fix: str) -> np.ndarray:
    """A memory map of a .npy file (the header is read, no data); anything else is a one-line error."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise corrupt(path, f"not a readable .npy array ({why})", fix) from None


@dataclass
class CifarC:
    """An opened CIFAR-10-C folder: every requested corruption memory-mapped and checked, nothing read yet.

    ``n`` is the number of images per severity (10,000 in the release); rows ``(s-1)*n : s*n`` of each
    ``<corruption>.npy`` and of ``labels.npy`` are severity ``s``.
    """

    root: Path
    corruptions: tuple[str, ...]
    ref: DatasetRef
    n: int
    arrays: dict[str, np.ndarray]
    labels: np.ndarray

    def _rows(self, corruption: str, severity: int) -> slice:
        if corruption not in self.arrays:
            raise UnknownNameError(f"corruption {corruption!r} was not opened; open CIFAR-10-C with it "
                                   f"(opened: {', '.join(self.corruptions)})")
        if severity not in SEVERITIES:
            raise ConfigError(f"CIFAR-10-C severity {severity} does not exist; use 1..5")
        return slice((severity - 1) * self.n, severity * self.n)

    def split(self, corruption: str, severity: int) -> ArrayDataset:
        """The ``n`` test images of one (corruption, severity): uint8 (n, 3, 32, 32) and their labels."""
        rows = self._rows(corruption, severity)
        x = torch.from_numpy(np.array(self.arrays[corruption][rows])).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(np.array(self.labels[rows], dtype=np.int64))
        return ArrayDataset(x, y, self.ref, {"corruption": corruption, "severity": severity})

    def batches(self, corruption: str, severity: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) batches of one (corruption, severity), read from the memory map batch by batch: x float
        in [0, 1] (b, 3, 32, 32) on the host, y int64 (b,)."""
        rows = self._rows(corruption, severity)
        arr = self.arrays[corruption]
        for i in range(rows.start, rows.stop, batch_size):
            j = min(i + batch_size, rows.stop)
            x = torch.from_numpy(np.array(arr[i:j])).permute(0, 3, 1, 2).float().div_(255.0)
            yield x.contiguous(), torch.from_numpy(np.array(self.labels[i:j], dtype=np.int64))


def open_cifar10c(root: Path, corruptions: Sequence[str] = CORRUPTIONS, ref: DatasetRef | None = None) -> CifarC:
    """Memory-map ``<root>/<corruption>.npy`` for each of ``corruptions`` and ``<root>/labels.npy``,
    checking every header (uint8, (5n, 32, 32, 3), as many rows as labels) and the labels (integers
    0..9, 5n of them) before any image is read: a missing file is a DataNotFoundError, a malformed one
    a CorruptDataError, each one line that names the fix."""
    root = Path(root)
    corruptions = check_corruptions(corruptions)
    require_files(root, c_files(corruptions), C_NAME, C_HOW)
    labels = _open_npy(root / C_LABELS, C_REFETCH)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) == 0 or len(labels) % len(SEVERITIES):
        raise corrupt(root / C_LABELS, f"shape {labels.shape} dtype {labels.dtype}; expected integer labels "
                                       f"(5 x n,) = n test labels for each of the 5 severities", C_REFETCH)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi > 9:
        raise corrupt(root / C_LABELS, f"labels span {lo}..{hi}; CIFAR-10 labels are 0..9", C_REFETCH)
    arrays = {}
    for c in corruptions:
        a = _open_npy(root / f"{c}.npy", C_REFETCH)
        if a.dtype != np.uint8 or a.ndim != 4 or tuple(a.shape[1:]) != HW or len(a) != len(labels):
            raise corrupt(root / f"{c}.npy", f"shape {a.shape} dtype {a.dtype}; expected uint8 "
                                             f"({len(labels)}, 32, 32, 3) (5 severities x n images, HWC, as many "
                                             f"rows as labels.npy)", C_REFETCH)
        arrays[c] = a
    return CifarC(root, corruptions, ref or DatasetRef(C_NAME, "paper"), len(labels) // len(SEVERITIES),
                  arrays, labels)


def load_cifar102(path: Path, ref: DatasetRef | None = None) -> ArrayDataset:
    """One CIFAR-10.2 split (``cifar102_test.npz`` or ``cifar102_train.npz``): uint8 (n, 3, 32, 32) and
    int64 labels; a missing file, a file that is not an npz, or ``images`` / ``labels`` of the wrong
    kind is a one-line error that names the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"dataset {C102_NAME}: {path} not found; to get it: {C102_HOW}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise corrupt(path, f"not a readable npz archive ({why})", C102_REFETCH) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise corrupt(path, "is a plain .npy array, not an npz archive with keys images and labels", C102_REFETCH)
    with z:
        missing = [k for k in ("images", "labels") if k not in z.files]
        if missing:
            raise corrupt(path, f"lacks key(s) {missing} (has {z.files}); expected images and labels", C102_REFETCH)
        try:
            images, labels = z["images"], z["labels"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise corrupt(path, f"images/labels are not readable arrays ({why})", C102_REFETCH) from None
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != HW:
        raise corrupt(path, f"images have shape {images.shape} dtype {images.dtype}; expected uint8 (n, 32, 32, 3)",
                      C102_REFETCH)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise corrupt(path, f"labels have shape {labels.shape} dtype {labels.dtype}; expected {len(images)} "
                            f"integer labels", C102_REFETCH)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise corrupt(path, f"labels span {labels.min()}..{labels.max()}; CIFAR-10 labels are 0..9", C102_REFETCH)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return ArrayDataset(x, torch.from_numpy(labels.astype(np.int64)), ref or DatasetRef(C102_NAME, "paper"))


# --------------------------------------------------------------------------- found under the data root

def locate_cifar10c(ctx: Any, corruptions: Sequence[str] = CORRUPTIONS) -> CifarC:
    """CIFAR-10-C under ``<data root>/CIFAR-10-C`` (a fixture with the same corruptions in a dry run)."""
    from suite.data.external import locate

    corruptions = check_corruptions(corruptions)
    folder, ref = locate(ctx, C_NAME, C_DIR, c_files(corruptions), C_HOW,
                         fixture=lambda d: write_fixture_cifar10c(d, corruptions))
    return open_cifar10c(folder, corruptions, ref)


def locate_cifar102(ctx: Any, split: str = "test") -> ArrayDataset:
    """A CIFAR-10.2 split under ``<data root>/cifar-10.2`` (a fixture in a dry run)."""
    from suite.data.external import locate

    name = c102_file(split)
    folder, ref = locate(ctx, C102_NAME, C102_DIR, [name], C102_HOW, fixture=write_fixture_cifar102)
    return load_cifar102(folder / name, ref)


# --------------------------------------------------------------------------- fixtures (tests, dry runs)

def write_fixture_cifar10c(root: Path, corruptions: Sequence[str] = ("gaussian_noise", "fog"), n: int = 4,
                           seed: int = 0) -> Path:
    """A tiny CIFAR-10-C folder in the published layout: per corruption a uint8 (5n, 32, 32, 3) .npy of
    ``n`` base images corrupted at severities 1..5 (stacked in severity order, noise growing with the
    severity), and ``labels.npy`` uint8 (5n,) = the ``n`` base labels repeated five times."""
    root, rng = Path(root), np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, *HW), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    for k, c in enumerate(corruptions):
        sev = [np.clip(base.astype(np.int16) + rng.normal(0, 12 * s + k, base.shape).round(), 0, 255)
               for s in SEVERITIES]
        arr = np.concatenate(sev).astype(np.uint8)
        atomic_write(root / f"{c}.npy", lambda fh, a=arr: np.save(fh, a))
    atomic_write(root / C_LABELS, lambda fh: np.save(fh, np.tile(y, len(SEVERITIES))))
    return root


def write_fixture_cifar102(root: Path, n_test: int = 8, n_train: int = 8, seed: int = 0) -> Path:
    """Tiny ``cifar102_test.npz`` / ``cifar102_train.npz`` with the published keys (images uint8
    (n, 32, 32, 3), labels int64, label_names, ti_indices, keywords)."""
    root, rng = Path(root), np.random.default_rng(seed)
    names = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    for split, n in (("test", n_test), ("train", n_train)):
        labels = rng.integers(0, 10, n).astype(np.int64)
        arrays = {"images": rng.integers(0, 256, (n, *HW), dtype=np.uint8), "labels": labels,
                  "label_names": names, "ti_indices": rng.integers(0, 79_302_017, n).astype(np.int64),
                  "keywords": names[labels]}
        atomic_write(root / c102_file(split), lambda fh, a=arrays: np.savez(fh, **a))
    return root
