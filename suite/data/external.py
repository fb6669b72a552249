"""Paper data that no catalog loader reads yet (a benchmark's jsonl, a caption file): locate it
under the data root and get its ``DatasetRef`` from here, so a reproduction never types a
provenance.

``locate(ctx, name, subdir, files, how)`` returns ``(folder, ref)``: ``ref`` is ``paper`` only when
every expected file was found under ``<data root>/<subdir>``. In a dry run (or rehearsal) without
the data, ``fixture(folder)`` writes a tiny file set in the published format into the cache and the
ref is ``<name>-fixture`` (``stand-in``). Otherwise the one-line DataNotFoundError names the layout.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from suite.context import RunContext, default_cache_dir, default_data_root
from suite.data.base import require_files
from suite.errors import DataNotFoundError
from suite.spec import DatasetRef


def locate(ctx: RunContext, name: str, subdir: str, files: Sequence[str | tuple[str, ...]], how: str,
           fixture: Callable[[Path], None] | None = None) -> tuple[Path, DatasetRef]:
    root = ctx.data_root if ctx.data_root is not None else default_data_root()
    if root is not None:
        folder = Path(root) / subdir
        try:
            require_files(folder, files, name, how)
            return folder, DatasetRef(name, "paper")
        except DataNotFoundError:
            if not (ctx.dry_run and fixture):
                raise
    if ctx.dry_run and fixture:
        # keyed by the expected layout too: a fixture written for other file names is not reused
        key = hashlib.sha256(repr((subdir, list(files))).encode()).hexdigest()[:8]
        return _fixture(f"{name}-{key}", subdir, fixture), DatasetRef(f"{name}-fixture", "stand-in")
    shown = ", ".join(f if isinstance(f, str) else " or ".join(f) for f in files)
    raise DataNotFoundError(f"dataset {name}: no data root set (pass --data-root or set $SUITE_DATA); "
                            f"expected {subdir}/{{{shown}}} under it; to get it: {how}")


def _fixture(name: str, subdir: str, write: Callable[[Path], None]) -> Path:
    base = default_cache_dir() / "fixtures" / name
    if (base / ".complete").exists():
        return base / subdir
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base.parent, prefix=f".{name}."))
    try:
        write(tmp / subdir)
        (tmp / ".complete").write_text("tiny fixture for dry runs; not the real dataset\n")
        if base.exists():
            shutil.rmtree(base)
        os.replace(tmp, base)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return base / subdir
