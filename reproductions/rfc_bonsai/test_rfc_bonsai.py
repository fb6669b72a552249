"""rfc_bonsai: the spec §6 smoke assertions through run(), teeth, missing-data error, Camelyon17 on fixtures."""
import dataclasses

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import DataNotFoundError

SLUG = "rfc_bonsai"


def _run(scale="smoke", seed=0, **over):
    r = registry.get(SLUG)
    cfg = dataclasses.replace(config.resolve(r, scale), **over)
    torch.manual_seed(seed)
    out = r.run(cfg, for_tests(scale, seed))
    return r, out, {c.id: c.check(out.metrics, "smoke")["verdict"] for c in r.claims}


LIGHT = {"methods": ("erm",), "inits": ("bonsai_cf",), "oracle": False}


def test_smoke_mechanics_hold_and_grid_metrics_exist():
    r, out, verdicts = _run()
    assert all(v == "holds" for k, v in verdicts.items() if k.startswith("mech-")), verdicts
    for m in ("erm", "irm", "vrex"):
        for init in ("rand", "erm", "bonsai_cf", "erm_cf", "rand_cf"):
            assert 0.0 <= out.metrics[f"worst_env_acc/{m}/{init}"] <= 1.0
    assert out.dataset.provenance == "stand-in"


def test_deterministic_given_seed():
    a = _run(**LIGHT)[1].metrics
    b = _run(**LIGHT)[1].metrics
    assert a == b


@pytest.mark.parametrize("variant,claim", [("true-labels", "mech-pseudo-labels"), ("dro-mean", "mech-dro-max")])
def test_teeth_broken_variant_fails_a_claim(variant, claim):
    assert _run(variant=variant, **LIGHT)[2][claim] == "fails"


def test_untrained_bonsai_is_the_random_init():
    """Teeth of the C1 claims: the frozen "Bonsai" features are the random init's, bit for bit."""
    m = _run(variant="untrained-bonsai", methods=("vrex",), inits=("bonsai_cf", "rand_cf"), oracle=False)[1].metrics
    assert m["worst_env_acc/vrex/bonsai_cf"] == m["worst_env_acc/vrex/rand_cf"]


def test_no_shift_keeps_the_training_colour_correlation():
    """Teeth of C1-erm-fails: without the colour flip at test time ERM's colour shortcut works."""
    r = registry.get(SLUG)
    from reproductions.rfc_bonsai import NO_SHIFT_TEST_ENVS, _colored
    cfg = dataclasses.replace(config.resolve(r, "smoke"), variant="no-shift")
    splits = _colored("colored-digits", cfg, for_tests("smoke", 0))
    assert sorted(float(k.split("_")[1]) for k in splits if k.startswith("test_")) == sorted(NO_SHIFT_TEST_ENVS)


def test_mnist_subset_missing_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    r = registry.get(SLUG)
    cfg = dataclasses.replace(config.resolve(r, "small"), datasets=("colored-mnist-subset",))
    with pytest.raises(DataNotFoundError) as err:
        r.run(cfg, for_tests("small", 0, data_root=tmp_path))
    assert "fetch-mnist-subset" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_camelyon_pipeline_trains_on_fixture(tmp_path, monkeypatch):
    from suite.data import camelyon17
    from reproductions.rfc_bonsai import Config
    from reproductions.rfc_bonsai.camelyon import run_camelyon

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    camelyon17.write_fixture(tmp_path / "data" / camelyon17.SUBDIR)  # the published layout under a data root
    cfg = Config(cam_epochs=1, cam_batch=6, cam_lams=(0, 10.0), cam_erm_init_lams=(0, 10.0),
                 cam_erm_init_anneal_steps=(0, 1))
    ref, m = run_camelyon(cfg, for_tests("full", 0, data_root=tmp_path / "data"))
    assert ref.provenance == "paper"
    for key in ("test_acc/erm/rand/iid_val", "test_acc/vrex/bonsai_cf/ood_val", "test_acc/vrex/bonsai/iid_val",
                "test_acc/irm/erm/ood_val", "test_acc/clove/bonsai_cf/iid_val"):
        assert 0.0 <= m[f"camelyon17/{key}"] <= 1.0
    assert m["camelyon17/anneal/irm/erm/iid_val"] in (0, 1) and m["camelyon17/lam/vrex/erm/ood_val"] in (0, 10)
    assert 0 < m["camelyon17/epochs/erm/rand/iid_val"] <= 1 and 0 < m["camelyon17/epochs/erm/rand/ood_val"] <= 1


def test_camelyon_streams_the_wilds_splits_from_disk(tmp_path, monkeypatch):
    """Issue 16: the full-scale loader reads batches from a memory map; they equal the in-memory loader's rows."""
    import tracemalloc

    import numpy as np

    from suite.data import camelyon17, stream
    from reproductions.rfc_bonsai import camelyon_stream as S

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    root = camelyon17.write_fixture(tmp_path / "data" / camelyon17.SUBDIR, per_center=24)
    ctx = for_tests("full", 0, data_root=tmp_path / "data")
    mem = camelyon17.load(root, cache=False)
    disk = S.load_splits(ctx)
    assert disk["train"].ref.provenance == "paper" and len(disk["train"]) == 3 * 23
    for s in camelyon17.SPLITS:
        split = disk[s]
        assert isinstance(split.x, np.memmap) and not isinstance(split.x, torch.Tensor)
        xs, ys, envs = zip(*S.loader(split, 8, "cpu"))
        hosp = mem[s].extra["hospital"]
        assert torch.equal(torch.cat(xs), mem[s].x) and torch.equal(torch.cat(ys), mem[s].y)
        assert torch.equal(torch.cat(envs), torch.searchsorted(torch.unique(hosp), hosp))
    # the OoD helpers' random draws (x[idx], with repeats) and slices read the same rows
    rows = S.env_data(disk["train"]).x
    idx = torch.tensor([5, 0, 5, 68])
    assert torch.equal(rows[idx], mem["train"].x[idx]) and torch.equal(rows[3:9], mem["train"].x[3:9])
    # the seeded max_per_split subset is the in-memory loader's
    a, b = camelyon17.load(root, max_per_split=7, cache=False), S.load_splits(ctx, max_per_split=7)
    assert all(torch.equal(a[s].x, b[s][np.arange(len(b[s]))][0]) for s in camelyon17.SPLITS)
    # reading every batch holds one batch, never the split
    split = disk["train"]
    tracemalloc.start()
    n = sum(len(b[0]) for b in stream.loader(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == len(split) and peak < split.x.nbytes / 4, f"read peak {peak} of a {split.x.nbytes}-byte split"
