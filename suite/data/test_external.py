from pathlib import Path

import pytest

from suite.context import for_tests
from suite.data.external import locate
from suite.errors import DataNotFoundError


def _write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "problems.jsonl").write_text('{"task_id": "t/0"}\n')


def test_paper_only_when_files_are_read_from_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    _write(tmp_path / "root" / "bench")
    ctx = for_tests(data_root=tmp_path / "root")
    folder, ref = locate(ctx, "bench", "bench", ["problems.jsonl"], "copy it there")
    assert folder == tmp_path / "root" / "bench" and ref.provenance == "paper"


def test_fixture_in_a_dry_run_is_a_stand_in_and_missing_data_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    ctx = for_tests(data_root=tmp_path / "empty", dry_run=True)
    folder, ref = locate(ctx, "bench", "bench", ["problems.jsonl"], "copy it there", fixture=_write)
    assert (folder / "problems.jsonl").exists() and ref.provenance == "stand-in" and ref.name == "bench-fixture"
    with pytest.raises(DataNotFoundError, match="expected problems.jsonl"):
        locate(for_tests(data_root=tmp_path / "empty"), "bench", "bench", ["problems.jsonl"], "copy it there")
