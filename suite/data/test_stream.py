"""Streaming splits: built once chunk by chunk, read per batch, never a whole split in memory."""
import tracemalloc

import numpy as np
import pytest
import torch

from suite.data import stream
from suite.data.base import DatasetRef
from suite.data.images import decode_images, write_png

REF = DatasetRef("synthetic-rows", "stand-in")


def _rows(s, e):
    """Row i is constant i % 251, so a batch can be checked against its labels."""
    return np.broadcast_to((np.arange(s, e) % 251).astype(np.uint8)[:, None, None, None], (e - s, 32, 32, 3)).copy()


def test_disk_array_is_built_once_and_memory_mapped():
    calls = []

    def fill(s, e):
        calls.append((s, e))
        return _rows(s, e)

    a = stream.disk_array("rows", {"v": 1}, (1000, 32, 32, 3), np.uint8, fill, chunk=300)
    assert isinstance(a, np.memmap) and calls == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    b = stream.disk_array("rows", {"v": 1}, (1000, 32, 32, 3), np.uint8, fill, chunk=300)
    assert len(calls) == 4 and np.array_equal(a, b)


def test_an_interrupted_build_leaves_nothing_behind(tmp_path):
    def fill(s, e):
        if s >= 200:
            raise RuntimeError("disk full")
        return _rows(s, e)

    with pytest.raises(RuntimeError):
        stream.disk_array("broken", {}, (500, 32, 32, 3), np.uint8, fill, chunk=100)
    assert not any((tmp_path / "cache").rglob("*.npy"))
    ok = stream.disk_array("broken", {}, (500, 32, 32, 3), np.uint8, _rows, chunk=100)
    assert int(ok[499, 0, 0, 0]) == 499 % 251


def test_a_loader_yields_every_row_once_in_batches_without_materialising_the_split():
    n = 8000  # 24.6 MB of uint8 images
    tracemalloc.start()
    x = stream.disk_array("rows", {"v": 2}, (n, 32, 32, 3), np.uint8, _rows, chunk=512)
    build_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    split = stream.DiskSplit(x, torch.arange(n), REF, {"group": torch.arange(n) % 7}, channels_first=True,
                             batch_extra=("group",))
    seen = []
    for xb, yb, gb in stream.loader(split, 64, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert xb.shape[1:] == (3, 32, 32) and xb.dtype == torch.uint8 and len(xb) == len(yb) <= 64
        assert torch.equal(xb[:, 0, 0, 0].long(), yb % 251) and torch.equal(gb, yb % 7)
        seen.append(yb)
    read_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(n))
    assert not torch.equal(torch.cat(seen), torch.arange(n))  # shuffled
    split_bytes = n * 32 * 32 * 3
    assert build_peak < split_bytes / 4, f"building held {build_peak} bytes of a {split_bytes}-byte split"
    assert read_peak < split_bytes / 20, f"reading held {read_peak} bytes of a {split_bytes}-byte split"


def test_a_subset_stays_on_disk_and_reads_its_own_rows():
    x = stream.disk_array("rows", {"v": 3}, (600, 32, 32, 3), np.uint8, _rows)
    sub = stream.DiskSplit(x, torch.arange(600), REF).subset(torch.tensor([5, 590, 17]))
    assert len(sub) == 3 and torch.equal(sub.labels, torch.tensor([5, 590, 17]))
    xb, yb = sub[[2, 0]]
    assert torch.equal(yb, torch.tensor([17, 5])) and xb.shape == (2, 32, 32, 3) and int(xb[0, 0, 0, 0]) == 17


def test_decode_to_disk_matches_the_in_memory_decoder(tmp_path):
    rng = np.random.default_rng(0)
    rel = [f"img/{i}.png" for i in range(10)]
    for r in rel:
        write_png(tmp_path / r, rng.integers(0, 256, (8, 6, 3), dtype=np.uint8))
    disk = stream.decode_to_disk(tmp_path, rel, "RGB", (8, 6))
    assert isinstance(disk, np.memmap) and np.array_equal(disk, decode_images(tmp_path, rel, "RGB", (8, 6)))
    with pytest.raises(Exception, match="expected 6x6"):
        stream.decode_to_disk(tmp_path, rel, "RGB", (6, 6))


def test_epoch_loader_drop_last_leaves_out_the_partial_batch_in_the_same_order():
    """``EpochLoader(drop_last=True)`` yields the full batches of the same shuffled order and reports their
    number as its length (fit's epoch count)."""
    split = stream.DiskSplit(np.arange(10, dtype=np.float32)[:, None], torch.arange(10), DatasetRef("toy", "stand-in"))
    full = [b[1].tolist() for b in stream.EpochLoader(split, 4, torch.Generator().manual_seed(3))]
    cut = stream.EpochLoader(split, 4, torch.Generator().manual_seed(3), drop_last=True)
    assert len(cut) == 2 and [b[1].tolist() for b in cut] == full[:2] and len(full) == 3
