"""WILDS Camelyon17: metadata.csv columns, patch paths, hospital splits, errors."""
import pandas as pd
import pytest

from suite.data import camelyon17
from suite.errors import CorruptDataError, DataNotFoundError


def test_hospital_splits(tmp_path):
    root = camelyon17.write_fixture(tmp_path, per_center=4)
    df = pd.read_csv(root / "metadata.csv")
    assert list(df.columns[1:]) == camelyon17.COLUMNS
    assert (root / "patches/patient_004_node_0/patch_patient_004_node_0_x_3200_y_1056.png").exists()
    s = camelyon17.load(root)
    assert set(s["train"].extra["hospital"].tolist()) == {0, 3, 4} and len(s["train"]) == 9
    assert set(s["id_val"].extra["hospital"].tolist()) == {0, 3, 4} and len(s["id_val"]) == 3
    assert s["val"].extra["hospital"].unique().tolist() == [1] and s["test"].extra["hospital"].unique().tolist() == [2]
    assert s["train"].x.shape[1:] == (3, 96, 96)
    sub = camelyon17.load(root, splits=("test",), max_per_split=2)
    assert list(sub) == ["test"] and len(sub["test"]) == 2


def test_truncated_csv_and_png(tmp_path):
    root = camelyon17.write_fixture(tmp_path)
    text = (root / "metadata.csv").read_text()
    (root / "metadata.csv").write_text(text[: len(text) - 9])
    with pytest.raises(CorruptDataError, match="metadata.csv"):
        camelyon17.load(root)
    (root / "metadata.csv").write_text(text)
    png = next((root / "patches").rglob("*.png"))
    png.write_bytes(png.read_bytes()[:100])
    with pytest.raises(CorruptDataError, match=png.name):
        camelyon17.load(root, cache=False)


def test_missing_patch(tmp_path):
    root = camelyon17.write_fixture(tmp_path)
    next((root / "patches").rglob("*.png")).unlink()
    with pytest.raises(DataNotFoundError, match="patch_patient"):
        camelyon17.load(root)
