"""Instance sets: generated (CPU protocol, spec §6) or MPS files listed under the data root (spec §5).

On-disk layout (full scale): ``<data_root>/forge/pretrain.txt`` and ``test_clusters.txt``, one instance
per line, ``<relative path> [label]`` (paths relative to ``<data_root>/forge``; the label defaults to
the name of the file's parent folder, e.g. ``dmiplib/ca_easy/x.mps.gz`` → ``ca_easy``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reproductions.forge.generators import TYPES, generate
from reproductions.forge.instance import MIPInstance
from reproductions.forge.mps import read_instance, write_instance
from suite.errors import ConfigError, DataNotFoundError
from suite.io import atomic_write_text

SUBDIR = "forge"
LISTS = ("pretrain.txt", "test_clusters.txt")
HOW = ("get the instances of skadio/forge data/configs/all.txt and test_clusters.txt (MIPLIB 2017, "
       "D-MIPLIB, StrIPLib) as .mps/.mps.gz and list them in pretrain.txt / test_clusters.txt")


@dataclass
class InstanceSet:
    train: list[MIPInstance]
    test: list[MIPInstance]
    test_labels: np.ndarray  # (n_test,) int64
    label_names: tuple[str, ...]
    test_unseen: np.ndarray  # (n_test,) bool: instance size not seen in pre-training
    test_groups: np.ndarray  # (n_test,) int64: type × size group (type–difficulty pairs of D-MIPLIB)


def generated(types: tuple[str, ...], n_train: int, n_test: int, seed: int, noise: float = 0.0) -> InstanceSet:
    """Pre-train on ``n_train`` per type at sizes 0/1 (alternating; the list sorted by nnz, smallest first,
    as the official list is by file size); test on ``n_test`` unseen per type, the first half at sizes 0/1
    and the rest at the unseen larger size 2. Seeds never overlap.
    ``noise`` > 0: overlapping types (jittered sizes, perturbed rows and variables; generators.perturb)."""
    for t in types:
        if t not in TYPES:
            raise ConfigError(f"unknown MIP type {t!r} in types; use a subset of {TYPES}")
    train, test, lab, unseen, group = [], [], [], [], []
    base = 10_000_000 * (seed + 1)
    for k, t in enumerate(types):
        train += [generate(t, i % 2, base + 10_000 * k + i, noise) for i in range(n_train)]
        half = (n_test + 1) // 2
        for i in range(n_test):
            size = i % 2 if i < half else 2
            test.append(generate(t, size, base + 10_000 * k + 5_000 + i, noise))
            lab.append(k)
            unseen.append(size == 2)
            group.append(3 * k + size)
    train = sorted(train, key=lambda i: len(i.vals))  # smallest first, as the official list (nnz ~ file size)
    return InstanceSet(train, test, np.asarray(lab), tuple(types), np.asarray(unseen), np.asarray(group))


def _read_list(root: Path, name: str) -> list[tuple[Path, str]]:
    out = []
    for line in (root / name).read_text().splitlines():
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        p = root / tok[0]
        out.append((p, tok[1] if len(tok) > 1 else p.parent.name))
    if not out:
        raise ConfigError(f"{root / name} lists no instances; {HOW}")
    return out


def on_disk(root: Path, max_nodes: int, log=print) -> InstanceSet:
    """Read the listed MPS instances (the pre-training list sorted by file size, smallest first, as the
    official code); instances with more than ``max_nodes`` nodes are skipped (§3)."""
    missing = [f for f in LISTS if not (root / f).exists()]
    if missing:
        raise DataNotFoundError(f"dataset forge: expected {', '.join(missing)} under {root}; {HOW}")

    def load(name: str, by_size: bool = False) -> tuple[list[MIPInstance], list[str]]:
        insts, labels = [], []
        listed = _read_list(root, name)
        if by_size:  # official pre-training order: files sorted by size, smallest first (processor.py)
            listed = sorted(listed, key=lambda pl: pl[0].stat().st_size if pl[0].exists() else -1)
        for path, lab in listed:
            inst = read_instance(path)
            if inst.m + inst.n > max_nodes:
                log(f"forge: skip {path.name} ({inst.m + inst.n} nodes > {max_nodes})")
                continue
            insts.append(inst)
            labels.append(lab)
        return insts, labels

    train, _ = load(LISTS[0], by_size=True)
    test, labels = load(LISTS[1])
    names = tuple(sorted(set(labels)))
    y = np.asarray([names.index(s) for s in labels])
    return InstanceSet(train, test, y, names, np.zeros(len(y), bool), y)


def write_fixture(root: Path, per_type: int = 2) -> Path:
    """Tiny instances of every generator as .mps.gz in the on-disk layout (dry runs and tests)."""
    train, test = [], []
    for k, t in enumerate(TYPES):
        for i in range(2 * per_type):
            rel = f"{t}/{t}_{i}.mps.gz"
            write_instance(generate(t, 0, 77 + 100 * k + i), root / rel)
            (train if i < per_type else test).append(rel)
    atomic_write_text(root / LISTS[0], "\n".join(train) + "\n")
    atomic_write_text(root / LISTS[1], "\n".join(test) + "\n")
    return root
