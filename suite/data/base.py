"""Common pieces of the dataset layer: the ArrayDataset container, file checks, atomic writes.

Every loader returns ``dict[str, ArrayDataset]`` (one entry per split or environment) and every
generator returns one ``ArrayDataset``; ``x``/``y`` are plain tensors (``x`` is a list of strings
for text datasets such as GSM8K) and ``ref`` says which data it is and where it came from.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from suite.errors import CorruptDataError, DataNotFoundError
from suite.io import atomic_write_bytes
from suite.spec import DatasetRef

Splits = dict[str, "ArrayDataset"]


@dataclass
class ArrayDataset:
    """Inputs ``x``, targets ``y`` (first dimension = samples), provenance ``ref``, side arrays ``extra``.

    ``extra`` holds per-sample side information (same first dimension, e.g. ``hospital``,
    ``color``, ``digit``) and free-form metadata (``class_names``, ...).
    """

    x: Any
    y: torch.Tensor
    ref: DatasetRef
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "ArrayDataset":
        """The samples at ``idx`` (per-sample ``extra`` entries are indexed too)."""
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        n = len(self)
        extra = {k: _take(v, idx_t) if _per_sample(v, n) else v for k, v in self.extra.items()}
        return ArrayDataset(_take(self.x, idx_t), self.y[idx_t], self.ref, extra)


def _per_sample(v: Any, n: int) -> bool:
    return (isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n) or (
        isinstance(v, list) and len(v) == n)


def _take(v: Any, idx: torch.Tensor) -> Any:
    if isinstance(v, list):
        return [v[i] for i in idx.tolist()]
    return v[idx]


def require_files(root: Path, files: Iterable[str | tuple[str, ...]], name: str, how: str) -> list[Path]:
    """Paths of the expected ``files`` under ``root`` (a tuple = alternatives, first found wins).

    Raises DataNotFoundError (one line: which files, where looked, how to get them) if any is missing.
    """
    root = Path(root)
    found: list[Path] = []
    missing: list[str] = []
    for f in files:
        alts = (f,) if isinstance(f, str) else tuple(f)
        hit = next((root / a for a in alts if (root / a).exists()), None)
        if hit is None:
            missing.append(" or ".join(alts))
        else:
            found.append(hit)
    if missing:
        raise DataNotFoundError(not_found_message(name, missing, root, how))
    return found


def not_found_message(name: str, missing: Sequence[str], root: Path, how: str) -> str:
    shown = ", ".join(missing[:4]) + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
    return (f"dataset {name}: expected {shown} under {root} (data root from --data-root or "
            f"$SUITE_DATA); to get it: {how}")


def corrupt(path: Path | str, why: str, how: str = "") -> CorruptDataError:
    """A one-line CorruptDataError naming the file and what is wrong with it."""
    fix = f"; {how}" if how else "; delete it and obtain the file again"
    return CorruptDataError(f"corrupt dataset file {path}: {why}{fix}")


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def seeded_perm(n: int, seed: int) -> torch.Tensor:
    """A permutation of ``range(n)`` from a CPU generator seeded with ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


# byte-level text tokens shared by LRA Text / Retrieval: 0 = pad, 1 = EOS, byte b -> b + 2
PAD_ID, EOS_ID, BYTE_OFFSET, BYTE_VOCAB = 0, 1, 2, 258


def encode_bytes(texts: Sequence[str], max_len: int, eos: bool = False) -> torch.Tensor:
    """UTF-8 bytes of each text as ids (b + 2), truncated/padded to ``max_len`` (pad 0, EOS 1)."""
    out = torch.zeros(len(texts), max_len, dtype=torch.int16)
    import numpy as np

    arr = out.numpy()
    keep = max_len - 1 if eos else max_len
    for i, t in enumerate(texts):  # one numpy copy per document (file reading is per document anyway)
        b = np.frombuffer(t.encode("utf-8"), dtype=np.uint8)[:keep]
        arr[i, : len(b)] = b.astype(np.int16) + BYTE_OFFSET
        if eos:
            arr[i, len(b)] = EOS_ID
    return out


__all__ = ["ArrayDataset", "Splits", "DatasetRef", "require_files", "not_found_message", "corrupt",
           "atomic_write_bytes", "md5sum", "seeded_perm", "encode_bytes"]
