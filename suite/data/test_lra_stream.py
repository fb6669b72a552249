"""LRA Text / Retrieval / Path-X streamed from disk: the values of ``suite.data.lra``'s in-memory
loaders, built chunk by chunk, read per batch, never a whole split in memory."""
import tracemalloc

import numpy as np
import pytest
import torch

from suite.data import lra, lra_stream, stream
from suite.errors import CorruptDataError, DataNotFoundError
from suite.train import TrainConfig, fit


def _rows(split):
    return split[np.arange(len(split))]


def test_text_equals_the_in_memory_loader(tmp_path):
    lra.write_fixture_text(tmp_path)
    want, got = lra.load_text(tmp_path), lra_stream.text_splits(tmp_path)
    assert set(got) == {"train", "test"}
    for s in want:
        x, y = _rows(got[s])
        assert isinstance(got[s].x, np.memmap) and x.dtype == want[s].x.dtype == torch.int16
        assert torch.equal(x, want[s].x) and torch.equal(y, want[s].y) and got[s].ref == want[s].ref


def test_retrieval_equals_the_in_memory_loader(tmp_path):
    lra.write_fixture_retrieval(tmp_path, n=7)
    want, got = lra.load_retrieval(tmp_path, max_len=64), lra_stream.retrieval_splits(tmp_path, max_len=64, chunk=3)
    assert set(got) == {"train", "val", "test"}
    for s in want:
        x, y = _rows(got[s])
        assert x.shape == (7, 2, 64) and torch.equal(x, want[s].x) and torch.equal(y, want[s].y)
        assert got[s].extra["ids"] == want[s].extra["ids"]


@pytest.mark.parametrize("side", [32, 128])
def test_pathfinder_equals_the_in_memory_loader_split_for_split(tmp_path, side):
    lra.write_fixture_pathfinder(tmp_path, n_files=3, per_file=7, side=side)
    want, got = lra.load_pathfinder(tmp_path, cache=False), lra_stream.pathfinder_splits(tmp_path, chunk=5)
    for s in ("train", "val", "test"):
        x, y = _rows(got[s])
        assert x.shape == want[s].x.shape == (len(want[s]), side * side)
        assert torch.equal(x, want[s].x) and torch.equal(y, want[s].y) and got[s].extra["side"] == side


def test_missing_and_corrupt_files_raise_one_line_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="aclImdb"):
        lra_stream.text_splits(tmp_path)
    with pytest.raises(DataNotFoundError, match="lra_release"):
        lra_stream.retrieval_splits(tmp_path)
    lra.write_fixture_retrieval(tmp_path)
    (tmp_path / lra.RETRIEVAL_FILES["val"]).write_text("1\ta\tb\tonly four\n")
    with pytest.raises(CorruptDataError, match="has 4 fields, expected 5"):
        lra_stream.retrieval_splits(tmp_path)


def test_pathx_fixture_is_written_in_the_data_root_layout(tmp_path):
    from suite.context import for_tests

    folder, ref = lra_stream.locate_pathx(for_tests("full", dry_run=True, tmp=tmp_path / "run"))
    assert folder.as_posix().endswith(lra_stream.PATHX_DIR) and ref.provenance == "stand-in"
    sp = lra_stream.pathfinder_splits(folder)
    assert sum(len(v) for v in sp.values()) == 10 and sp["train"].extra["side"] == 128
    with pytest.raises(DataNotFoundError, match="pathfinder128"):
        lra_stream.locate_pathx(for_tests("full", tmp=tmp_path / "run2", data_root=tmp_path / "none"))


def _held(build, read):
    """Peak traced bytes while building the split, then while reading every batch of it."""
    tracemalloc.start()
    try:
        split = build()
        build_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        seen = [yb for _, yb in read(split)]
        return split, build_peak, tracemalloc.get_traced_memory()[1], seen
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("task", ["text", "retrieval", "pathx"])
def test_full_scale_loaders_yield_batches_without_materialising_the_split(tmp_path, monkeypatch, task):
    """A full-length fixture of the published layout, scaled up: building holds one chunk, reading
    one batch. (torch allocations are invisible to tracemalloc: the encoder's calls are counted.)"""
    rows_per_encode = []
    real = lra_stream.encode_bytes

    def spy(texts, max_len, eos=False):
        rows_per_encode.append(len(texts))
        return real(texts, max_len, eos)

    monkeypatch.setattr(lra_stream, "encode_bytes", spy)
    chunk = 32
    if task == "text":
        lra.write_fixture_text(tmp_path, n=500)
        n, row_bytes = 1000, 4096 * 2
        build = lambda: lra_stream.text_splits(tmp_path, chunk=chunk)["train"]  # noqa: E731
    elif task == "retrieval":
        lra.write_fixture_retrieval(tmp_path, n=1000)
        n, row_bytes = 1000, 2 * 4000 * 2
        build = lambda: lra_stream.retrieval_splits(tmp_path, chunk=chunk)["train"]  # noqa: E731
    else:
        lra.write_fixture_pathfinder(tmp_path, n_files=4, per_file=200, side=128)
        n, row_bytes = 800, 128 * 128
        build = lambda: lra_stream.pathfinder_splits(tmp_path, chunk=chunk)  # noqa: E731

    def read(split):
        return stream.loader(split, 8, shuffle=True, generator=torch.Generator().manual_seed(0))

    if task == "pathx":
        splits, build_peak, read_peak, seen = _held(build, lambda sp: read(sp["train"]))
        split = splits["train"]
        n = len(split.x)
    else:
        split, build_peak, read_peak, seen = _held(build, read)
    assert isinstance(split.x, np.memmap)
    assert torch.equal(torch.cat(seen).sort().values, split.labels.sort().values)
    split_bytes = n * row_bytes
    assert build_peak < split_bytes / 4, f"building held {build_peak} bytes of a {split_bytes}-byte split"
    assert read_peak < split_bytes / 20, f"reading held {read_peak} bytes of a {split_bytes}-byte split"
    assert max(rows_per_encode, default=0) <= chunk


class _Preempted(Exception):
    pass


@pytest.mark.parametrize("workers,stop_at", [(0, 7), (0, 10), (2, 10)])  # epoch end (7 batches), mid-epoch
def test_epoch_loader_resumes_fit_exactly(tmp_path, workers, stop_at):
    """fit on an EpochLoader, interrupted and resumed in a fresh state, ends bit-identical to an
    uninterrupted run (each epoch's order comes back from the generator state saved at its start)."""
    lra.write_fixture_text(tmp_path / "d", n=10)
    split = lra_stream.text_splits(tmp_path / "d", max_len=32)["train"]  # 20 rows: 7 batches of 3
    cfg = TrainConfig(steps=30, lr=0.1, checkpoint_every=5, log_every=0)

    def loss(m, b):
        return torch.nn.functional.cross_entropy(m(b[0].long()), b[1])

    def train(ckpt, seed, on_step=None):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Embedding(258, 4), torch.nn.Flatten(), torch.nn.Dropout(0.3),
                                    torch.nn.Linear(128, 2))
        g = torch.Generator().manual_seed(5)
        data = stream.EpochLoader(split, 3, g, workers=workers)
        assert len(data) == 7
        fit(model, loss, data, cfg, generator=g, checkpoint=ckpt, on_step=on_step)
        return model.state_dict()

    def bomb(s):
        if s.step == stop_at:
            raise _Preempted

    whole = train(tmp_path / "a.pt", 0)
    with pytest.raises(_Preempted):
        train(tmp_path / "b.pt", 0, bomb)
    resumed = train(tmp_path / "b.pt", 99)  # a fresh start: other global RNG, other init
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
