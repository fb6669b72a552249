"""CIFAR-10/100/20 pickle batches: real keys, layout, corrupt and missing files."""
import pickle

import numpy as np
import pytest

from suite.data import cifar, lra
from suite.errors import CorruptDataError, DataNotFoundError


def test_cifar10(tmp_path):
    cifar.write_fixture_cifar10(tmp_path, n_per_batch=4)
    s = cifar.load_cifar10(tmp_path)
    assert s["train"].x.shape == (20, 3, 32, 32) and s["test"].x.shape == (4, 3, 32, 32)
    with open(tmp_path / "data_batch_2", "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    assert np.array_equal(s["train"].x[4:8].reshape(4, -1).numpy(), d[b"data"])  # channel-major rows
    assert s["train"].y[4:8].tolist() == d[b"labels"]


def test_cifar100_and_20(tmp_path):
    cifar.write_fixture_cifar100(tmp_path)
    fine, coarse = cifar.load_cifar100(tmp_path), cifar.load_cifar20(tmp_path)
    assert fine["train"].ref.name == "cifar-100" and coarse["train"].ref.name == "cifar-20"
    assert (coarse["train"].y == fine["train"].y // 5).all()  # the fixture's mapping
    assert len(coarse["train"].extra["class_names"]) == 20


def test_lra_image_greyscale(tmp_path):
    cifar.write_fixture_cifar10(tmp_path, n_per_batch=2)
    img, rgb = lra.load_image(tmp_path)["test"], cifar.load_cifar10(tmp_path)["test"]
    assert img.x.shape == (2, 1024)
    r, g, b = rgb.x[0, :, 0, 0].double().tolist()
    assert img.x[0, 0].item() == round(0.2989 * r + 0.587 * g + 0.114 * b)


def test_truncated_batch_is_corrupt(tmp_path):
    cifar.write_fixture_cifar10(tmp_path)
    p = tmp_path / "data_batch_3"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(CorruptDataError, match="data_batch_3"):
        cifar.load_cifar10(tmp_path)


def test_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"train, test, meta under .*cifar\.html"):
        cifar.load_cifar100(tmp_path)


class _Planted:
    """Unpickling this runs a command that writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_planted_pickle_is_refused_not_run(tmp_path):
    cifar.write_fixture_cifar10(tmp_path, n_per_batch=2)
    marker = tmp_path / "pwned"
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": _Planted(marker)}, protocol=2))
    with pytest.raises(CorruptDataError, match="refusing global"):
        cifar.load_cifar10(tmp_path)
    assert not marker.exists()
