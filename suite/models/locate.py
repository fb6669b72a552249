"""A pretrained model's folder, found like a paper file (the full-scale LLM paths).

An absolute ``model_dir`` is used as it is. Otherwise the folder is looked up under the data root by
:func:`suite.data.external.locate`; in a dry run or a rehearsal, where it is absent, ``fixture(folder)``
writes a tiny random model of the same family there, so the full path runs unchanged on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from suite.data.external import locate

MODEL_FILES = ("config.json", "tokenizer_config.json")


def is_fixture(path: Path) -> bool:
    """A path inside the fixture cache (a dry run's or a rehearsal's stand-in)."""
    return "fixtures" in Path(path).parts


def locate_model(ctx: Any, name: str, model_dir: str, how: str, fixture: Callable[[Path], None],
                 fixture_label: str, files: Sequence[str] = MODEL_FILES) -> tuple[Path, str]:
    """``(folder, name for the record)``: the ``save_pretrained`` folder ``model_dir`` (absolute, or under
    the data root; ``how`` says how to get it), and ``"<fixture_label> (fixture)"`` when a stand-in was used."""
    if model_dir.startswith("/"):
        return Path(model_dir), model_dir
    folder, _ = locate(ctx, name, model_dir, list(files), how, fixture=fixture)
    return folder, f"{fixture_label} (fixture)" if is_fixture(folder) else str(folder)
