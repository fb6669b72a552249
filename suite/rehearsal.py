"""Rehearsal (issue 16): the exact full-scale code path, run end to end on tiny fixtures.

``suite run <slug> --scale full --rehearse`` runs the full preset, unchanged in code, with

* **budgets cut by the harness**: ``reproductions/<slug>/rehearsal.toml`` declares, in one ``[budget]``
  table, the config fields that size the run (epochs, steps, samples, problems, rounds) and the tiny
  value each takes in a rehearsal. They are applied as ``--set`` overrides on top of the full preset, so
  no reproduction holds an ``if rehearse:`` branch, and the file is not part of the reproduction's
  hashed code (declaring a cut never makes its records stale);
* **fixtures in the published formats**: a dry run of the full path with an empty data root and a
  private cache makes every loader write its tiny published-format fixture (the ones the data tests
  and ``--dry-run`` use); they are gathered into one data root ``<tmp>/fixtures/rehearsal/`` marked
  ``.complete``, so the catalog's loaders label what they read ``<name>-fixture`` (stand-in);
* **the record marked**: status ``rehearsal``, ``"rehearsal": true``, every dataset ref relabelled
  ``<name>-fixture`` (stand-in), stored under ``<results>/<slug>/rehearsal/``. ``suite publish`` refuses
  it, the leaderboard and a later full run never count it;
* **model fixtures**: a full path that reads a pretrained folder from ``<data root>/<cfg.field>`` without
  :func:`suite.models.locate.locate_model` gets a tiny random model of the same family there, written by
  the function its rehearsal.toml names in a ``[models]`` table (``field = {writer = "module:fn", ...}``);
* **data fixtures of a declared size**: where the catalog's tiny fixture is too small for what a full path
  measures (e.g. a claim at k = 100 medoids needs more than 60 images), a ``[data]`` table writes a larger
  one in the same published format over it (``folder = {writer = "module:fn", ...}``, the folder relative
  to the rehearsal's data root);
* **a resume**: the same run is launched a second time in the same folder, so every ``fit`` finds its
  saved checkpoint and resumes from it; the record notes whether the metrics came out identical;
* **every job**: a full protocol made of several configurations (the reproduction's ``jobs``) is rehearsed
  job by job, each with the ``[budget]`` cuts and its own ``[job_budget]`` ones;
* **every claim evaluated**: a claim expected at full whose metric the full path never produced (verdict
  ``missing``) makes the rehearsal incomplete (``suite run`` exits 1), unless the reproduction's
  ``[unevaluated]`` table names it with the reason (``claim id = "why the fixture cannot produce it"``).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from suite.errors import ConfigError

FILE = "rehearsal.toml"
FIXTURE_SUFFIX = "-fixture"


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from None


def declaration(slug: str) -> Path:
    from suite import registry

    repro = registry.get(slug)
    return Path(sys.modules[repro.module].__file__).parent / FILE


def budget_overrides(slug: str) -> tuple[str, ...]:
    """The ``key=value`` overrides that cut ``slug``'s full preset to a rehearsal (exit 2 when undeclared)."""
    path = declaration(slug)
    if not path.exists():
        raise ConfigError(f"{slug} declares no rehearsal budget: write reproductions/{slug}/{FILE} with a "
                          f"[budget] table (config field = tiny value) for every epoch/step/sample count")
    table = _toml(path).get("budget")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: needs a non-empty [budget] table (config field = tiny value)")
    out = []
    for key, val in table.items():
        if isinstance(val, bool):
            val = str(val).lower()
        out.append(f"{key}={val}")
    return tuple(out)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (the fixture writers read ``$SUITE_CACHE``)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def gather_fixtures(cache: Path, work: Path) -> Path:
    """Copy every fixture written under ``<cache>/fixtures/*/`` into one data root
    ``<work>/fixtures/rehearsal/`` (marked ``.complete``, so the catalog relabels what it reads)."""
    root = work / "fixtures" / "rehearsal"
    root.mkdir(parents=True, exist_ok=True)
    src = cache / "fixtures"
    for fx in sorted(src.iterdir()) if src.exists() else []:
        if not (fx / ".complete").exists():
            continue
        for child in fx.iterdir():
            if child.name == ".complete":
                continue
            dst = root / child.name
            if child.is_dir():
                shutil.copytree(child, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(child, dst)
    (root / ".complete").write_text("rehearsal data root: tiny fixtures, not the real datasets\n")
    return root


def model_fixtures(slug: str) -> dict[str, dict[str, Any]]:
    """The ``[models]`` table of ``slug``'s rehearsal.toml: ``<config field> = {writer = "module:function",
    <keyword arguments>}``. For full paths that load a pretrained folder from ``<data root>/<field value>``
    without a :func:`suite.models.locate.locate_model` fixture (new code uses ``locate_model``)."""
    path = declaration(slug)
    table = _toml(path).get("models", {}) if path.exists() else {}
    if not isinstance(table, dict) or not all(isinstance(v, dict) and isinstance(v.get("writer"), str)
                                              and ":" in v["writer"] for v in table.values()):
        raise ConfigError(f"{path}: [models] entries must read <config field> = "
                          f'{{writer = "module:function", ...keyword arguments}}')
    return table


def model_targets(slug: str, cfg: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """``(folder relative to the data root, "module:function", keyword arguments)`` of each declared model
    fixture; a bad declaration raises :class:`ConfigError` here, before a rehearsal starts any work."""
    out = []
    for field, entry in model_fixtures(slug).items():
        rel = getattr(cfg, field, None)
        if not isinstance(rel, str) or not rel or rel.startswith("/"):
            raise ConfigError(f"rehearsal.toml [models]: {slug}'s full preset sets {field} = {rel!r}; a model "
                              f"fixture needs a folder relative to the data root")
        out.append((rel, entry["writer"], {k: v for k, v in entry.items() if k != "writer"}))
    return out


def _write(writer: str, folder: Path, kwargs: dict[str, Any]) -> None:
    """Call the declared ``"module:function"`` writer on ``folder`` with its keyword arguments."""
    import importlib

    module, fn = writer.split(":", 1)
    getattr(importlib.import_module(module), fn)(folder, **kwargs)


def write_models(slug: str, cfg: Any, data_root: Path) -> list[str]:
    """Write each declared model fixture at ``<data_root>/<cfg.field>`` (the path the full preset reads);
    returns the folders written, relative to the data root."""
    targets = model_targets(slug, cfg)
    for rel, writer, kwargs in targets:
        _write(writer, data_root / rel, kwargs)
    return [rel for rel, _, _ in targets]


def data_fixtures(slug: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(folder relative to the data root, "module:function", keyword arguments)`` of each entry of the
    ``[data]`` table of ``slug``'s rehearsal.toml (validated here, before any work)."""
    path = declaration(slug)
    table = _toml(path).get("data", {}) if path.exists() else {}
    ok = isinstance(table, dict) and all(
        isinstance(v, dict) and isinstance(v.get("writer"), str) and ":" in v["writer"]
        and not k.startswith("/") and ".." not in Path(k).parts for k, v in table.items())
    if not ok:
        raise ConfigError(f"{path}: [data] entries must read <folder relative to the data root> = "
                          f'{{writer = "module:function", ...keyword arguments}}')
    return [(k, v["writer"], {a: b for a, b in v.items() if a != "writer"}) for k, v in table.items()]


def write_data(slug: str, data_root: Path) -> list[str]:
    """Write each declared ``[data]`` fixture at ``<data_root>/<folder>`` (replacing the catalog's tiny one)."""
    out = []
    for rel, writer, kwargs in data_fixtures(slug):
        shutil.rmtree(data_root / rel, ignore_errors=True)
        _write(writer, data_root / rel, kwargs)
        out.append(rel)
    return out


def excused(slug: str) -> dict[str, str]:
    """The ``[unevaluated]`` table: claims expected at full that a rehearsal cannot evaluate, each with why.
    Every key must name a claim of ``slug`` expected at full, and every reason must be a sentence."""
    from suite import registry

    path = declaration(slug)
    table = _toml(path).get("unevaluated", {}) if path.exists() else {}
    full = {c.id for c in registry.get(slug).claims if "full" in c.scales}
    if not isinstance(table, dict) or not all(isinstance(v, str) and len(v.split()) >= 4 for v in table.values()):
        raise ConfigError(f'{path}: [unevaluated] entries must read <claim id> = "why a rehearsal cannot '
                          f'evaluate it"')
    unknown = sorted(set(table) - full)
    if unknown:
        raise ConfigError(f"{path}: [unevaluated] names {unknown}, not claims of {slug} expected at full; "
                          f"remove them")
    return dict(table)


def unevaluated(slug: str, records: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Claims of ``slug`` expected at full that none of its rehearsal ``records`` evaluated: ``(not
    excused, excused with their reasons)``. A claim counts as evaluated once any record gives it a verdict
    other than ``missing`` (a reproduction whose full run is several jobs rehearses each of them)."""
    from suite import registry

    seen = {cid for r in records for cid, c in (r.get("claims") or {}).items()
            if isinstance(c, dict) and c.get("verdict") in ("holds", "fails")}
    gone = [c.id for c in registry.get(slug).claims if "full" in c.scales and c.id not in seen]
    why = excused(slug)
    return [c for c in gone if c not in why], {c: why[c] for c in gone if c in why}


def job_budget(slug: str) -> dict[str, tuple[str, ...]]:
    """``[job_budget]`` in ``slug``'s rehearsal.toml: further cuts for a named full job of the reproduction
    (``vgg19 = ["rounds=2", ...]``, on top of ``[budget]``), for jobs whose sizes ``[budget]`` does not fit."""
    from suite import registry

    path = declaration(slug)
    table = _toml(path).get("job_budget", {}) if path.exists() else {}
    if not isinstance(table, dict) or not all(isinstance(v, list) and v and all(
            isinstance(kv, str) and "=" in kv for kv in v) for v in table.values()):
        raise ConfigError(f'{path}: [job_budget] entries must read <job> = ["key=value", ...]')
    unknown = sorted(set(table) - set(registry.get(slug).jobs))
    if unknown:
        raise ConfigError(f"{path}: [job_budget] names {unknown}, not jobs of {slug}; remove them")
    return {k: tuple(v) for k, v in table.items()}


def relabel(ref: Any) -> Any:
    """A dataset ref dict as a fixture: ``<name>-fixture``, stand-in."""
    if not isinstance(ref, dict):
        return ref
    name = str(ref.get("name", "data"))
    return {"name": name if name.endswith(FIXTURE_SUFFIX) else name + FIXTURE_SUFFIX, "provenance": "stand-in"}


def mark(record: dict[str, Any]) -> dict[str, Any]:
    """Turn a finished record into a rehearsal record (never published, never reused)."""
    record["rehearsal"] = True
    if record.get("status") == "ok":
        record["status"] = "rehearsal"
    if record.get("dataset") is not None:
        record["dataset"] = relabel(record["dataset"])
    for claim in (record.get("claims") or {}).values():
        if isinstance(claim, dict) and "dataset" in claim:
            claim["dataset"] = relabel(claim["dataset"])
    return record


_TIMING = re.compile(r"second|(^|[_/])m?s($|[_/@])|time|wall|throughput|per_s|latency|speedup")


def is_timing(metric: str, declared: frozenset[str] = frozenset()) -> bool:
    """Wall-clock metrics (seconds, throughput): expected to differ between the two passes. ``declared``:
    further metric names a reproduction lists as ``timing = [...]`` in its rehearsal.toml."""
    return metric in declared or bool(_TIMING.search(metric))


def differing_metrics(slug: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the metrics, not timings, whose values differ between two metric dicts of ``slug`` (a metric in one
    only counts as differing; NaN equals NaN). The rehearsal's resume check and ``suite verify`` both use it."""
    timing = declared_timing(slug)

    def same(x: Any, y: Any) -> bool:
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))

    return sorted(k for k in set(a) | set(b) if not is_timing(k, timing) and not same(a.get(k), b.get(k)))


def declared_timing(slug: str) -> frozenset[str]:
    """The ``timing = [...]`` metric names of ``slug``'s rehearsal.toml (timings whose names the pattern misses)."""
    path = declaration(slug)
    names = _toml(path).get("timing", []) if path.exists() else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: `timing` must be a list of metric names")
    return frozenset(names)


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="suite-rehearsal-"))
