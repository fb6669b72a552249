import sys
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


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_fixture_written_by_an_older_writer_is_not_reused(tmp_path, monkeypatch):
    """The cache key covers the writer's code, including a helper in another file that the writer calls:
    after either changes, a dry run writes the fixture anew instead of reading the old one."""
    from suite.data import external

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(external, "_in_repo", lambda p: Path(p).resolve().is_relative_to(tmp_path.resolve()))
    helper = tmp_path / "helper_mod.py"
    writer = tmp_path / "writer_mod.py"

    def versions(text: str, row: str) -> object:
        helper.write_text(f"def row():\n    return {row!r}\n")
        writer.write_text("import helper_mod\nfrom helper_mod import row\n\n"
                          "def write(folder):\n    folder.mkdir(parents=True, exist_ok=True)\n"
                          f"    (folder / 'problems.jsonl').write_text({text!r} + row())\n")
        monkeypatch.setitem(sys.modules, "helper_mod", _load(helper, "helper_mod"))
        return _load(writer, "writer_mod").write

    ctx = for_tests(data_root=tmp_path / "empty", dry_run=True)
    read = lambda w: (locate(ctx, "bench", "bench", ["problems.jsonl"], "x", fixture=w)[0]  # noqa: E731
                      / "problems.jsonl").read_text()
    assert read(versions("v1 ", "a")) == "v1 a"
    assert read(versions("v1 ", "a")) == "v1 a"  # the same code: the cached fixture is reused
    assert read(versions("v2 ", "a")) == "v2 a"  # the writer changed
    assert read(versions("v2 ", "b")) == "v2 b"  # a helper it calls changed
    wrapped = versions("v2 ", "c")
    assert read(lambda f: wrapped(f)) == "v2 c"  # reached through a lambda's closure
