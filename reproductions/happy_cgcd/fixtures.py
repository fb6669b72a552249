"""A CIFAR-100 fixture with every class present, in the published python-pickle format.

The catalog's fixture (``suite.data.cifar.write_fixture_cifar100``) draws 40 train images over 100 random
classes: the full protocol (50 old classes, stage 0 on 80 % of each, k-means with |seen| + N_t clusters at
every later stage, a shared radius from per-class variances) cannot run on it. This writer gives each of the
100 classes ``per_class_train`` train and ``per_class_test`` test images, so a dry run and a rehearsal of the
full path (``suite run happy_cgcd --scale full --rehearse``) run every stage. The files are what
``cifar-100-python.tar.gz`` unpacks to: ``train`` / ``test`` pickles (protocol 2) with ``b'filenames'``,
``b'batch_label'``, ``b'fine_labels'``, ``b'coarse_labels'``, ``b'data'`` (N, 3072) uint8 channel-major, and
``meta`` with ``b'fine_label_names'`` / ``b'coarse_label_names'``; read by ``suite.data.cifar.load_cifar100``.
Pixels are random; coarse label = fine // 5 (a fixture mapping, as in the catalog's fixture).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from suite.io import atomic_write_bytes

N_CLASSES = 100


def write_cifar100_fixture(root: Path, per_class_train: int = 3, per_class_test: int = 1, seed: int = 0) -> Path:
    """Write a ``cifar-100-python`` folder at ``root`` with every class ``per_class_*`` times (shuffled)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        n = N_CLASSES * per
        fine = rng.permutation(np.repeat(np.arange(N_CLASSES), per))
        obj = {b"filenames": [f"fixture_{split}_{i}.png".encode() for i in range(n)], b"batch_label": split.encode(),
               b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
               b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        atomic_write_bytes(root / split, pickle.dumps(obj, protocol=2))
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(N_CLASSES)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    atomic_write_bytes(root / "meta", pickle.dumps(meta, protocol=2))
    return root
