"""Paper data that no catalog loader reads yet (a benchmark's jsonl, a caption file): locate it
under the data root and get its ``DatasetRef`` from here, so a reproduction never types a
provenance.

``locate(ctx, name, subdir, files, how)`` returns ``(folder, ref)``: ``ref`` is ``paper`` only when
every expected file was found under ``<data root>/<subdir>``. In a dry run (or rehearsal) without
the data, ``fixture(folder)`` writes a tiny file set in the published format into the cache and the
ref is ``<name>-fixture`` (``stand-in``). Otherwise the one-line DataNotFoundError names the layout.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import types
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from suite.context import RunContext, default_cache_dir, default_data_root
from suite.environment import REPO_ROOT
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
        # keyed by the expected layout and by the writer's code: a fixture written for other file names, or
        # by an older version of the writer, is not reused
        key = hashlib.sha256(repr((subdir, list(files), writer_digest(fixture))).encode()).hexdigest()[:8]
        return _fixture(f"{name}-{key}", subdir, fixture), DatasetRef(f"{name}-fixture", "stand-in")
    shown = ", ".join(f if isinstance(f, str) else " or ".join(f) for f in files)
    raise DataNotFoundError(f"dataset {name}: no data root set (pass --data-root or set $SUITE_DATA); "
                            f"expected {subdir}/{{{shown}}} under it; to get it: {how}")


def writer_digest(fn: Callable[..., object], depth: int = 4) -> str:
    """A digest of the source files a fixture writer runs: the file defining ``fn`` and, transitively (up to
    ``depth`` calls deep), the files of the functions and classes its code names, in this repository only
    (``suite/`` and ``reproductions/``; installed packages are not hashed)."""
    files: set[Path] = set()
    seen: set[int] = set()

    def visit(obj: object, d: int) -> None:
        obj = getattr(obj, "__func__", obj)  # bound methods
        if id(obj) in seen or d < 0:
            return
        seen.add(id(obj))
        code = getattr(obj, "__code__", None)
        if code is None:
            if inspect.isclass(obj):
                for v in vars(obj).values():
                    visit(v, d)
            elif isinstance(obj, functools.partial):
                visit(obj.func, d)
                for v in (*obj.args, *obj.keywords.values()):
                    visit(v, d)
            return
        src = Path(code.co_filename).resolve()
        if not _in_repo(src):
            return
        files.add(src)
        glob = getattr(obj, "__globals__", {})
        cells = [c.cell_contents for c in (getattr(obj, "__closure__", None) or ()) if _cell_set(c)]
        for c in _codes(code):
            for n in c.co_names:
                if n in glob:
                    visit(glob[n], d - 1)
        for v in cells:
            visit(v, d - 1)

    visit(fn, depth)
    h = hashlib.sha256()
    for f in sorted(files):
        h.update((str(f.relative_to(REPO_ROOT)) if f.is_relative_to(REPO_ROOT) else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _codes(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out += _codes(c)
    return out


def _cell_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _in_repo(path: Path) -> bool:
    try:
        rel = path.relative_to(REPO_ROOT)
    except ValueError:
        return False
    return rel.parts[:1] in (("suite",), ("reproductions",))


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
