"""WILDS Camelyon17 v1.0: ``metadata.csv`` + ``patches/`` PNGs, with the WILDS hospital splits.

Layout (``camelyon17_v1.0/``): ``metadata.csv`` (index column, then ``patient, node, x_coord,
y_coord, tumor, slide, center, split``) and
``patches/patient_XXX_node_N/patch_patient_XXX_node_N_x_X_y_Y.png`` (96x96 RGB).
Splits as in WILDS: ``train`` = centres 0, 3, 4 with split 0; ``id_val`` = those centres with
split 1; ``val`` (OOD validation) = centre 1; ``test`` = centre 2. ``y`` = tumor; extra holds
``hospital`` (centre), ``slide``. Patches are decoded once and cached (uint8 (N, 3, 96, 96)).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, corrupt, not_found_message, require_files
from suite.data.images import decode_images
from suite.errors import DataNotFoundError

NAME = "camelyon17"
SUBDIR = "camelyon17_v1.0"
FILES = ["metadata.csv", "patches"]
COLUMNS = ["patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split"]
HOW = ("download camelyon17_v1.0 with the `wilds` package (wilds.get_dataset('camelyon17', "
       "download=True)) or from https://worksheets.codalab.org/ and put camelyon17_v1.0/ in the data root")
TRAIN_CENTERS, VAL_CENTER, TEST_CENTER = (0, 3, 4), 1, 2
SPLITS = ("train", "id_val", "val", "test")


def read_metadata(root: Path):
    """``metadata.csv`` as a DataFrame with WILDS' columns checked and a ``wilds_split`` column."""
    import pandas as pd

    path = Path(root) / "metadata.csv"
    try:
        df = pd.read_csv(path, index_col=0, dtype={"patient": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise corrupt(path, f"unreadable CSV ({err})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise corrupt(path, f"missing columns {missing} (expected {COLUMNS})")
    if df[COLUMNS].isna().any().any():
        raise corrupt(path, "empty fields (truncated file?)")
    center = df["center"].to_numpy()
    split = np.full(len(df), "", dtype=object)
    in_train = np.isin(center, TRAIN_CENTERS)
    split[in_train & (df["split"].to_numpy() == 0)] = "train"
    split[in_train & (df["split"].to_numpy() == 1)] = "id_val"
    split[center == VAL_CENTER] = "val"
    split[center == TEST_CENTER] = "test"
    df = df.assign(wilds_split=split)
    return df


def patch_paths(df) -> list[str]:
    """Relative PNG paths of the rows of ``df`` (WILDS naming, patient zero-padded to 3 digits)."""
    p = df["patient"].astype(int).map("{:03d}".format).to_numpy()
    n, x, y = (df[c].astype(int).astype(str).to_numpy() for c in ("node", "x_coord", "y_coord"))
    folder = "patient_" + p + "_node_" + n
    return list("patches/" + folder + "/patch_" + folder + "_x_" + x + "_y_" + y + ".png")


def load(root: Path, splits: Sequence[str] = SPLITS, max_per_split: int | None = None,
         seed: int = 0, cache: bool = True) -> Splits:
    """The requested WILDS splits; ``max_per_split`` keeps a seeded random subset of each."""
    root = Path(root)
    require_files(root, FILES, NAME, HOW)
    df = read_metadata(root)
    rng = np.random.default_rng(seed)
    ref = DatasetRef(NAME, "paper")
    out: Splits = {}
    for s in splits:
        idx = np.flatnonzero(df["wilds_split"].to_numpy() == s)
        if max_per_split is not None and len(idx) > max_per_split:
            idx = np.sort(rng.choice(idx, max_per_split, replace=False))
        sub = df.iloc[idx]
        try:
            imgs = decode_images(root, patch_paths(sub), "RGB", (96, 96), cache=cache)
        except FileNotFoundError as err:
            raise DataNotFoundError(not_found_message(NAME, [str(err.filename)], root, HOW)) from None
        x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).contiguous()
        out[s] = ArrayDataset(x, torch.from_numpy(sub["tumor"].to_numpy(np.int64, copy=True)), ref,
                              {"hospital": torch.from_numpy(sub["center"].to_numpy(np.int64, copy=True)),
                               "slide": torch.from_numpy(sub["slide"].to_numpy(np.int64, copy=True))})
    return out


def write_fixture(root: Path, per_center: int = 4, seed: int = 0) -> Path:
    """A tiny camelyon17_v1.0 folder: metadata.csv in WILDS' format + 96x96 PNG patches."""
    import pandas as pd

    from suite.data.images import write_png

    root, rng = Path(root), np.random.default_rng(seed)
    rows = []
    for c in range(5):
        for k in range(per_center):
            patient, node = 10 * c + 4, k % 2
            rows.append({"patient": f"{patient:03d}", "node": node, "x_coord": 3200 + 96 * k, "y_coord": 1056 + 32 * c,
                         "tumor": int(k % 2 == 0), "slide": 2 * c + node, "center": c, "split": int(k == per_center - 1)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    for rel in patch_paths(df):
        write_png(root / rel, rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    (root / "metadata.csv").write_text(df.to_csv(index=True))
    return root
