"""LRA file formats: ListOps TSV, Retrieval TSV pairs, IMDB text folders, Pathfinder metadata + PNG."""
import pytest
import torch

from suite.data import listops, lra
from suite.errors import CorruptDataError, DataNotFoundError


def test_listops_tsv(tmp_path):
    lra.write_fixture_listops(tmp_path)
    head = (tmp_path / "basic_train.tsv").read_text().splitlines()[:2]
    assert head[0] == "Source\tTarget" and head[1].startswith("(")
    s = lra.load_listops(tmp_path, max_len=64)
    x, y, n = s["train"].x, s["train"].y, s["train"].extra["lengths"]
    src = head[1].split("\t")[0]
    toks = listops.split_tokens(src)
    assert x[0, : n[0]].tolist() == [listops.TOKEN_ID[t] for t in toks] and (x[0, n[0]:] == 0).all()
    assert y[0].item() == listops.evaluate(toks) == int(head[1].split("\t")[1])


def test_listops_bad_row(tmp_path):
    lra.write_fixture_listops(tmp_path)
    p = tmp_path / "basic_val.tsv"
    p.write_text(p.read_text() + "[MAX 3 4\n")  # a truncated last line (no target)
    with pytest.raises(CorruptDataError, match="basic_val.tsv.*fields"):
        lra.load_listops(tmp_path)


def test_retrieval_tsv(tmp_path):
    lra.write_fixture_retrieval(tmp_path, n=4)
    s = lra.load_retrieval(tmp_path, max_len=32)
    assert s["val"].x.shape == (4, 2, 32) and s["test"].y.dtype == torch.long
    first = "paper 0 text \u00e9".encode()
    assert s["train"].x[0, 0, : len(first)].tolist() == [b + 2 for b in first]


def test_text_imdb(tmp_path):
    lra.write_fixture_text(tmp_path, n=2)
    s = lra.load_text(tmp_path, max_len=64)
    assert s["train"].y.tolist() == [0, 0, 1, 1]
    row = s["train"].x[0]
    n = int((row > 0).sum())
    assert row[n - 1].item() == 1  # EOS


def test_pathfinder(tmp_path):
    lra.write_fixture_pathfinder(tmp_path, n_files=11, per_file=3, side=16)
    stems = [p.stem for p in lra._metadata_files(tmp_path / "curv_contour_length_14")]
    assert stems == [str(i) for i in range(11)]  # numeric order: 10.npy after 2.npy
    s = lra.load_pathfinder(tmp_path)
    assert [len(s[k]) for k in ("train", "val", "test")] == [27, 3, 3]
    assert s["train"].x.shape[1] == 256 and s["train"].x.dtype == torch.uint8 and s["train"].extra["side"] == 16
    s2 = lra.load_pathfinder(tmp_path)
    assert torch.equal(s["test"].x, s2["test"].x)  # fixed split seed


def test_pathfinder_missing_and_corrupt(tmp_path):
    with pytest.raises(DataNotFoundError, match="curv_contour_length_14/metadata"):
        lra.load_pathfinder(tmp_path)
    lra.write_fixture_pathfinder(tmp_path)
    (tmp_path / "curv_contour_length_14/metadata/0.npy").write_text("imgs/0 sample_0.png\n")
    with pytest.raises(CorruptDataError, match="0.npy"):
        lra.load_pathfinder(tmp_path)
