"""CIFAR-10-C (<corruption>.npy of 5 stacked severities + labels.npy) and CIFAR-10.2 (npz) layouts:
severity slicing, labels, streaming from a memory map, the locator's provenance, malformed files."""
import pickle

import numpy as np
import pytest
import torch

from suite.context import for_tests
from suite.data import cifar10c as C
from suite.errors import ConfigError, CorruptDataError, DataNotFoundError

N = 4
BASE_LABELS = np.array([3, 1, 4, 1], dtype=np.uint8)


def _coded(k: int) -> np.ndarray:
    """5 x N images of corruption k, every pixel of image i at severity s = 40 s + 10 k + i."""
    v = np.array([40 * s + 10 * k + i for s in C.SEVERITIES for i in range(N)], dtype=np.uint8)
    return np.broadcast_to(v[:, None, None, None], (5 * N, 32, 32, 3)).copy()


def _write_coded(root, corruptions=("gaussian_noise", "fog")):
    root.mkdir(parents=True, exist_ok=True)
    for k, c in enumerate(corruptions):
        np.save(root / f"{c}.npy", _coded(k))
    np.save(root / "labels.npy", np.tile(BASE_LABELS, 5))
    return root


def test_severity_slicing_labels_and_batches(tmp_path):
    root = _write_coded(tmp_path / "CIFAR-10-C")
    ds = C.open_cifar10c(root, ("gaussian_noise", "fog"))
    assert ds.n == N and all(isinstance(a, np.memmap) for a in ds.arrays.values())  # nothing read yet
    for k, c in enumerate(("gaussian_noise", "fog")):
        for s in C.SEVERITIES:
            sp = ds.split(c, s)
            assert sp.x.shape == (N, 3, 32, 32) and sp.x.dtype == torch.uint8
            want = torch.tensor([40 * s + 10 * k + i for i in range(N)], dtype=torch.uint8)
            assert (sp.x == want[:, None, None, None]).all()
            assert sp.y.dtype == torch.long and sp.y.tolist() == BASE_LABELS.tolist()
            assert sp.extra == {"corruption": c, "severity": s}
            got = list(ds.batches(c, s, batch_size=3))  # a full and a partial batch
            assert [len(b[1]) for b in got] == [3, 1]
            x = torch.cat([b[0] for b in got])
            assert x.dtype == torch.float32 and torch.allclose(x, sp.x.float() / 255)
            assert torch.cat([b[1] for b in got]).tolist() == BASE_LABELS.tolist()


def test_fixture_writer_is_the_published_layout(tmp_path):
    root = C.write_fixture_cifar10c(tmp_path / "CIFAR-10-C", ("snow", "pixelate"), n=N)
    raw, labels = np.load(root / "snow.npy"), np.load(root / "labels.npy")
    assert raw.shape == (5 * N, 32, 32, 3) and raw.dtype == np.uint8 and labels.shape == (5 * N,)
    assert (labels[:N] == labels[N:2 * N]).all()  # the same test labels at every severity
    ds = C.open_cifar10c(root, ("snow", "pixelate"))
    sp = ds.split("snow", 3)
    assert (sp.x.permute(0, 2, 3, 1).numpy() == raw[2 * N:3 * N]).all()
    assert sp.y.tolist() == labels[2 * N:3 * N].tolist()
    s1 = ds.split("snow", 1).x.float()
    s5 = ds.split("snow", 5).x.float()
    assert (s5 - s1).abs().mean() > 10  # the fixture's corruption grows with the severity


def test_cifar102_npz(tmp_path):
    root = C.write_fixture_cifar102(tmp_path / "cifar-10.2", n_test=6, n_train=5)
    z = np.load(root / "cifar102_test.npz")
    assert set(z.files) == {"images", "labels", "label_names", "ti_indices", "keywords"}
    ds = C.load_cifar102(root / "cifar102_test.npz")
    assert ds.x.shape == (6, 3, 32, 32) and ds.x.dtype == torch.uint8 and ds.y.dtype == torch.long
    assert (ds.x.permute(0, 2, 3, 1).numpy() == z["images"]).all() and ds.y.tolist() == z["labels"].tolist()
    assert len(C.load_cifar102(root / "cifar102_train.npz")) == 5
    assert ds.ref.name == "cifar-10.2" and ds.ref.provenance == "paper"


def test_locator_provenance(tmp_path):
    ctx = for_tests(data_root=tmp_path / "empty", dry_run=True)
    ds = C.locate_cifar10c(ctx, ("fog", "contrast"))
    assert ds.ref.provenance == "stand-in" and ds.ref.name == "cifar-10-c-fixture" and ds.corruptions == ("fog", "contrast")
    c102 = C.locate_cifar102(ctx)
    assert c102.ref.provenance == "stand-in" and c102.ref.name == "cifar-10.2-fixture"
    _write_coded(tmp_path / "root" / "CIFAR-10-C", ("fog",))
    C.write_fixture_cifar102(tmp_path / "root" / "cifar-10.2")
    ctx = for_tests(data_root=tmp_path / "root")
    assert C.locate_cifar10c(ctx, ("fog",)).ref.provenance == "paper"
    assert C.locate_cifar102(ctx).ref.provenance == "paper"
    with pytest.raises(DataNotFoundError, match=r"contrast\.npy.*zenodo"):
        C.locate_cifar10c(ctx, ("fog", "contrast"))  # not a dry run: no fixture


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_malformed_cifar10c_is_one_line_naming_the_fix(tmp_path):
    root = _write_coded(tmp_path / "c")
    np.save(root / "fog.npy", _coded(1).transpose(0, 3, 1, 2).copy())  # CHW instead of the published HWC
    with pytest.raises(CorruptDataError, match=r"fog\.npy.*expected uint8 \(20, 32, 32, 3\).*untar CIFAR-10-C\.tar") as e:
        C.open_cifar10c(root, ("gaussian_noise", "fog"))
    _one_line(e)
    np.save(root / "fog.npy", _coded(1)[:15])  # a severity short
    with pytest.raises(CorruptDataError, match="as many rows as labels.npy"):
        C.open_cifar10c(root, ("fog",))
    np.save(root / "fog.npy", _coded(1).astype(np.float32))
    with pytest.raises(CorruptDataError, match="dtype float32"):
        C.open_cifar10c(root, ("fog",))
    (root / "fog.npy").write_bytes(b"<html>not found</html>")  # a failed download
    with pytest.raises(CorruptDataError, match=r"not a readable \.npy array.*untar") as e:
        C.open_cifar10c(root, ("fog",))
    _one_line(e)
    np.save(root / "fog.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)  # pickled: refused
    with pytest.raises(CorruptDataError, match=r"not a readable \.npy array"):
        C.open_cifar10c(root, ("fog",))
    np.save(root / "fog.npy", _coded(1))
    np.save(root / "labels.npy", np.tile(BASE_LABELS, 5)[:-1])
    with pytest.raises(CorruptDataError, match=r"labels\.npy.*\(5 x n,\)"):
        C.open_cifar10c(root, ("fog",))
    np.save(root / "labels.npy", np.tile(BASE_LABELS, 5) + 10)
    with pytest.raises(CorruptDataError, match=r"labels span 11\.\.14"):
        C.open_cifar10c(root, ("fog",))
    (root / "labels.npy").unlink()
    with pytest.raises(DataNotFoundError, match=r"labels\.npy.*zenodo\.org/record/2535967") as e:
        C.open_cifar10c(root, ("fog",))
    _one_line(e)


def test_bad_requests(tmp_path):
    root = _write_coded(tmp_path / "c")
    with pytest.raises(ConfigError, match="unknown CIFAR-10-C corruption.*'rain'.*gaussian_noise"):
        C.open_cifar10c(root, ("fog", "rain"))
    ds = C.open_cifar10c(root, ("fog",))
    with pytest.raises(ConfigError, match="severity 6 does not exist; use 1..5"):
        ds.split("fog", 6)
    with pytest.raises(Exception, match="'gaussian_noise' was not opened"):
        ds.split("gaussian_noise", 1)


def test_malformed_cifar102_is_one_line_naming_the_fix(tmp_path):
    p = tmp_path / "cifar102_test.npz"
    np.savez(p, images=np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(CorruptDataError, match=r"lacks key\(s\) \['labels'\].*modestyachts/cifar-10\.2") as e:
        C.load_cifar102(p)
    _one_line(e)
    np.savez(p, images=np.zeros((3, 3, 32, 32), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(CorruptDataError, match=r"expected uint8 \(n, 32, 32, 3\)"):
        C.load_cifar102(p)
    np.savez(p, images=np.zeros((3, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(CorruptDataError, match="expected 3 integer labels"):
        C.load_cifar102(p)
    # the repository's first release: a pickled dict in a .npy (renamed here) is refused, not unpickled
    with open(p, "wb") as fh:
        np.save(fh, np.array({"images": 0, "labels": 0}, dtype=object), allow_pickle=True)
    with pytest.raises(CorruptDataError, match="not a readable npz archive") as e:
        C.load_cifar102(p)
    _one_line(e)
    p.write_bytes(pickle.dumps({"images": 0}))
    with pytest.raises(CorruptDataError, match="not a readable npz archive"):
        C.load_cifar102(p)
    with pytest.raises(DataNotFoundError, match="cifar102_train.npz.*npz release"):
        C.load_cifar102(tmp_path / "cifar102_train.npz")
