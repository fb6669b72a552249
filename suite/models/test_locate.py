"""locate_model: an absolute folder as is, a data-root folder by name, a fixture only in a dry run."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.errors import DataNotFoundError
from suite.models.locate import locate_model


def _write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "tokenizer_config.json"):
        (folder / f).write_text("{}")


def test_absolute_data_root_and_fixture(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    ctx = SimpleNamespace(data_root=tmp_path / "data", dry_run=False)
    assert locate_model(ctx, "lm", "/abs/model", "get it", _write, "tiny") == (Path("/abs/model"), "/abs/model")
    with pytest.raises(DataNotFoundError, match="get it"):
        locate_model(ctx, "lm", "models/m", "get it", _write, "tiny")
    _write(tmp_path / "data" / "models" / "m")
    folder, name = locate_model(ctx, "lm", "models/m", "get it", _write, "tiny")
    assert folder == tmp_path / "data" / "models" / "m" and name == str(folder)
    dry = SimpleNamespace(data_root=None, dry_run=True)
    folder, name = locate_model(dry, "lm", "models/other", "get it", _write, "tiny")
    assert name == "tiny (fixture)" and (folder / "config.json").exists()
