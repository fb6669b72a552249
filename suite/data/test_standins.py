"""Stand-ins and shared pieces: sklearn digits, manifolds, cached(), ArrayDataset.subset."""
import pytest
import torch

from suite.data import cached, digits, manifolds
from suite.data.base import ArrayDataset
from suite.data.cache import cache_path
from suite.spec import DatasetRef


def test_digits():
    s = digits.load(seed=0)
    assert len(s["train"]) + len(s["test"]) == 1797 and s["train"].x.shape[1:] == (1, 8, 8)
    assert s["train"].x.max() <= 1 and s["train"].ref == DatasetRef("sklearn-digits", "stand-in")
    assert torch.equal(digits.load(seed=0)["test"].y, s["test"].y)


def test_manifolds_on_their_subspaces():
    cfg = manifolds.ManifoldConfig(kind="subspaces", k=4, n_per=50, ambient=20, dim=3, seed=2)
    ds = manifolds.union_of_manifolds(cfg)
    assert ds.x.shape == (200, 20) and ds.y.bincount().tolist() == [50] * 4
    b = ds.extra["bases"]
    for c in range(4):  # points of cluster c lie in span(B_c) and not in span(B_other)
        xc = ds.x[ds.y == c]
        resid = lambda B: (xc - xc @ B @ B.T).norm() / xc.norm()
        assert resid(b[c]) < 1e-5 and resid(b[(c + 1) % 4]) > 0.5
    sph = manifolds.generate(manifolds.ManifoldConfig(kind="spheres", k=3, n_per=40, ambient=10, dim=2, radius=2.0))
    for c in range(3):
        xc = sph.x[sph.y == c]
        assert torch.allclose((xc - xc.mean(0)).norm(dim=1).mean(), torch.tensor(2.0), atol=0.3)


def test_cached_keys_on_config(tmp_path):
    calls = []

    def build(v):
        calls.append(v)
        return ArrayDataset(torch.arange(3) * v, torch.zeros(3), DatasetRef("t", "stand-in"))

    a = cached("toy", {"v": 2}, lambda: build(2))
    b = cached("toy", {"v": 2}, lambda: build(2))
    c = cached("toy", {"v": 3}, lambda: build(3))
    assert calls == [2, 3] and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert str(cache_path("toy", {"v": 2})).startswith(str(tmp_path))
    cache_path("toy", {"v": 2}).write_bytes(b"garbage")  # a damaged entry is rebuilt
    cached("toy", {"v": 2}, lambda: build(2))
    assert calls == [2, 3, 2]


def test_subset_indexes_per_sample_extras():
    ds = ArrayDataset(torch.arange(5), torch.arange(5) * 2, DatasetRef("t", "stand-in"),
                      {"g": torch.arange(5) + 10, "names": list("abcde"), "meta": "keep"})
    s = ds.subset([4, 1])
    assert s.x.tolist() == [4, 1] and s.extra["g"].tolist() == [14, 11] and s.extra["names"] == ["e", "b"]
    assert s.extra["meta"] == "keep"


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_planted_cache_entry_is_rebuilt_never_run(tmp_path):
    """A shared cache is writable by others: an entry holding code is deleted and rebuilt."""
    marker = tmp_path / "pwned"
    path = cache_path("toy", {"v": 9})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": _Planted(marker)}, path)
    out = cached("toy", {"v": 9}, lambda: ArrayDataset(torch.ones(2), torch.zeros(2), DatasetRef("t", "stand-in")))
    assert not marker.exists() and isinstance(out, ArrayDataset)


def _tiny(which):
    from suite.data import gsm8k, listops, manifolds, pathfinder

    return {"listops": lambda: listops.procedural_listops(listops.ListOpsConfig(n=8, max_length=40)),
            "gsm8k": lambda: gsm8k.gsm_standin(gsm8k.GSMConfig(n=5)),
            "manifolds": lambda: manifolds.union_of_manifolds(manifolds.ManifoldConfig(k=2, n_per=5)),
            "pathfinder": lambda: pathfinder.procedural_pathfinder(pathfinder.PathfinderConfig(n=4))}[which]


@pytest.mark.parametrize("which", ["listops", "gsm8k", "manifolds", "pathfinder"])
def test_every_cached_generator_reloads_safely(which):
    """What each generator caches loads back with weights_only=True (else every run would rebuild)."""
    from suite.data import cache

    _tiny(which)()
    files = list((cache.default_cache_dir() / "datasets").glob("*.pt"))
    assert files, "the generator cached nothing"
    for f in files:
        cache.load_cached(f)


def test_numpy_arrays_reload_safely(tmp_path):
    import numpy as np

    from suite.data import cache

    obj = (np.arange(4, dtype=np.float32), np.arange(4))
    torch.save(obj, tmp_path / "t.pt")
    back = cache.load_cached(tmp_path / "t.pt")
    assert np.array_equal(back[0], obj[0]) and back[1].dtype == obj[1].dtype
