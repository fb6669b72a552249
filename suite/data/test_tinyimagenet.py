"""TinyImageNet-200 folder layout (JPEG), decode cache, corrupt and missing files."""
import pytest

from suite.data import tinyimagenet
from suite.errors import CorruptDataError, DataNotFoundError


def test_layout_and_cache(tmp_path):
    root = tinyimagenet.write_fixture(tmp_path / "tiny-imagenet-200")
    s = tinyimagenet.load(root)
    assert s["train"].x.shape == (12, 3, 64, 64) and s["val"].x.shape == (6, 3, 64, 64)
    assert s["train"].y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and s["val"].y.tolist() == [0, 1, 2] * 2
    again = tinyimagenet.load(root)  # from the decode cache
    assert (again["train"].x == s["train"].x).all()


def test_truncated_jpeg_is_corrupt(tmp_path):
    root = tinyimagenet.write_fixture(tmp_path)
    p = root / "val" / "images" / "val_1.JPEG"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(CorruptDataError, match="val_1.JPEG"):
        tinyimagenet.load(root, cache=False)


def test_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="wnids.txt.*tiny-imagenet-200.zip"):
        tinyimagenet.load(tmp_path)
