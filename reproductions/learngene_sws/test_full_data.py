"""learngene_sws full-scale data pipeline: DeiT's repeated-augmentation sampler (official samplers.py), its
DataLoader and resume through suite.train.fit, and RandAugment in the ImageNet training transform (full.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from suite import config, registry
from suite.data import randaugment
from suite.errors import ConfigError
from suite.train import TrainConfig, fit

from . import full
from .samplers import RepeatedAugSampler, ra_count, ra_indices

SLUG = "learngene_sws"


# --------------------------------------------------------------------------- RASampler layout

def test_ra_layout_one_process_by_hand():
    """n = 8, 3 copies, multiple 4, one process: 0 0 0 1 1 1 2 2 2 ..., the first floor(8 // 4 * 4 / 1) = 8."""
    assert ra_indices(torch.arange(8), 3, 1, 0, multiple=4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    perm = torch.tensor([5, 2, 7, 0, 1, 3, 4, 6])
    assert ra_indices(perm, 3, 1, 0, multiple=4).tolist() == [5, 5, 5, 2, 2, 2, 7, 7]
    # multiple 256 (official): 300 images keep 256 indices, not 300 (a ceil or no truncation keeps more)
    assert len(ra_indices(torch.arange(300), 3, 1, 0)) == 256 == ra_count(300, 1)


def test_ra_layout_two_ranks_by_hand():
    """n = 8, 3 copies, W = 2: the 24 repeated indices dealt by stride (rank 0 even positions, rank 1 odd), each
    rank keeps floor(8 // 4 * 4 / 2) = 4."""
    r0 = ra_indices(torch.arange(8), 3, 2, 0, multiple=4).tolist()
    r1 = ra_indices(torch.arange(8), 3, 2, 1, multiple=4).tolist()
    assert r0 == [0, 0, 1, 2] and r1 == [0, 1, 1, 2]
    # padding: n = 5, W = 2 -> ceil(15 / 2) = 8 per rank, 16 in all, padded with the head (index 0)
    full0 = ra_indices(torch.arange(5), 3, 2, 0, multiple=1)
    assert full0.tolist() == [0, 0]                     # floor(5 // 1 * 1 / 2) = 2
    assert ra_count(5, 2, 1) == 2 and ra_count(1281167, 4) == 320256 and ra_count(1281167, 1) == 1281024


def test_ra_copies_of_an_image_go_to_different_ranks():
    """With W = 3 and 3 copies, every rank sees the same image at the same position: the three copies of one
    image are augmented on three ranks (RASampler's purpose)."""
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    lists = [ra_indices(perm, 3, 3, r, multiple=3) for r in range(3)]
    assert all(torch.equal(lists[0], x) for x in lists) and lists[0].tolist() == perm[:10].tolist()


def test_sampler_draws_one_permutation_for_all_ranks_from_the_generator():
    n = 40
    s0 = RepeatedAugSampler(n, 3, torch.Generator().manual_seed(7), multiple=8, num_replicas=2, rank=0)
    s1 = RepeatedAugSampler(n, 3, torch.Generator().manual_seed(7), multiple=8, num_replicas=2, rank=1)
    assert len(s0) == len(s1) == 20
    e0, e1 = list(s0), list(s1)
    seed = int(torch.empty((), dtype=torch.int64).random_(generator=torch.Generator().manual_seed(7)).item())
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert e0 == ra_indices(perm, 3, 2, 0, 8).tolist() and e1 == ra_indices(perm, 3, 2, 1, 8).tolist()
    merged = [x for pair in zip(e0, e1) for x in pair]     # one permutation, each index 3 times in a row
    assert merged[:39] == perm.repeat_interleave(3)[:39].tolist()
    assert list(s0) != e0                                  # the next epoch reshuffles
    one = RepeatedAugSampler(n, 3, torch.Generator().manual_seed(7), multiple=8)   # suite.distributed: 1 process
    assert (one.rank, one.num_replicas) == (0, 1)


def test_sampler_with_an_empty_epoch_refuses_when_asked_for_its_length():
    s = RepeatedAugSampler(6, 3, torch.Generator().manual_seed(0))     # 6 // 256 * 256 = 0: built (dry run) ...
    with pytest.raises(ConfigError, match="repeated_aug_multiple"):
        len(s)                                                          # ... refused when training starts
    with pytest.raises(ConfigError):
        iter(s)
    assert len(RepeatedAugSampler(6, 3, torch.Generator().manual_seed(0), multiple=1)) == 6


# --------------------------------------------------------------------------- the loader, resume, worker seeds

class _Probe(Dataset):
    """Index + a draw of the worker's torch / numpy RNG (what per-image augmentation uses)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        return torch.tensor(k), torch.rand(()) + float(np.random.rand())


def _run(loader, steps_before_stop, ckpt):
    seen = []

    def loss_fn(model, batch):
        seen.append((batch[0].tolist(), batch[1].tolist()))
        return model.weight.sum() * 0.0

    def stop(state):
        if state.step == steps_before_stop:
            raise KeyboardInterrupt

    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, optimizer="sgd", checkpoint_every=1, log_every=0)
    torch.manual_seed(0)
    try:
        fit(torch.nn.Linear(1, 1), loss_fn, loader, cfg, checkpoint=ckpt, on_step=stop, name="probe")
    except KeyboardInterrupt:
        pass
    return seen


def test_resumed_fit_redraws_the_same_repeated_aug_batches_and_worker_draws(tmp_path):
    """full.train_loader with repeated augmentation and 2 worker processes, through suite.train.fit: a fit stopped
    in its second epoch and resumed from its checkpoint (a fresh loader, as a new process builds it) sees the
    batches, and the workers' random draws, of the uninterrupted fit. (Persistent workers break this: they draw
    the base seed from the generator only in the loader's first epoch.)"""
    def loader():
        return full.train_loader(_Probe(16), 4, 2, torch.Generator().manual_seed(3), repeated_aug=3, multiple=4)

    whole = _run(loader(), -1, tmp_path / "a.pt")
    assert len(whole) == 12
    first = _run(loader(), 6, tmp_path / "b.pt")
    assert len(first) == 6
    rest = _run(loader(), -1, tmp_path / "b.pt")
    assert first + rest == whole
    flat = [i for ix, _ in whole[:4] for i in ix]           # epoch 0: 16 indices = 5 images x 3 + 1
    assert flat[:3] == [flat[0]] * 3 and flat[3:6] == [flat[3]] * 3


def test_plain_loader_still_shuffles_every_image_once_per_epoch():
    ld = full.train_loader(_Probe(10), 4, 0, torch.Generator().manual_seed(0))
    assert ld.sampler.__class__.__name__ == "RandomSampler" and not ld.persistent_workers
    got = [i for b, _ in ld for i in b.tolist()]
    assert len(got) == len(set(got)) == 8 and set(got) <= set(range(10))   # drop_last: 2 batches of 4


def test_workers_of_other_ranks_draw_other_augmentation(monkeypatch):
    """Every rank shares the loader's generator (one permutation), so without an offset the workers of every rank
    would draw the same augmentation; ranks > 0 reseed theirs (DeiT: seed + rank)."""
    def draws(rank):
        monkeypatch.setattr(full.D, "rank", lambda: rank)
        monkeypatch.setattr(full.D, "world_size", lambda: 2)
        ld = full.train_loader(_Probe(8), 4, 1, torch.Generator().manual_seed(0), repeated_aug=3, multiple=2)
        return [v for _, b in ld for v in b.tolist()]

    assert draws(0) == draws(0)
    assert draws(1) == draws(1) and draws(1) != draws(0)


# --------------------------------------------------------------------------- RandAugment in the transform

def test_randaugment_acts_on_the_uint8_crop_before_normalisation(tmp_path):
    full.write_fixture(tmp_path)
    classes = sorted(p.name for p in (tmp_path / "train").iterdir())
    ds = full.ImageFolder(tmp_path / "train", classes, True, rand_augment="rand-m9-mstd0.5-inc1")
    assert isinstance(ds.randaug, randaugment.RandAugment) and ds.randaug.spec.increasing
    assert full.ImageFolder(tmp_path / "val", classes, False, rand_augment="rand-m9").randaug is None
    got = {}

    def spy(a):
        got["in"] = a
        return randaugment.invert(a)

    ds.randaug = spy
    np.random.seed(0)
    x, _ = ds[0]
    plain = full.ImageFolder(tmp_path / "train", classes, True)
    np.random.seed(0)
    x0, _ = plain[0]
    assert got["in"].dtype == torch.uint8 and got["in"].shape == (3, 224, 224) and x.shape == (3, 224, 224)
    mean, std = torch.tensor(full.MEAN)[:, None, None], torch.tensor(full.STD)[:, None, None]
    assert torch.allclose(x * std + mean, 1 - (x0 * std + mean), atol=1e-5)


def test_full_preset_turns_both_on_and_small_refuses_them():
    r = registry.get(SLUG)
    f = config.resolve(r, "full")
    assert (f.rand_augment, f.repeated_aug, f.repeated_aug_multiple) == ("rand-m9-mstd0.5-inc1", 3, 256)
    for scale in ("smoke", "small"):
        c = config.resolve(r, scale)
        assert (c.rand_augment, c.repeated_aug) == ("", 0)
        with pytest.raises(ConfigError):
            config.resolve(r, scale, ["rand_augment=rand-m9"])
        with pytest.raises(ConfigError):
            config.resolve(r, scale, ["repeated_aug=3"])
    with pytest.raises(ConfigError, match="unknown section"):
        config.resolve(r, "full", ["rand_augment=rand-m9-q3"])
