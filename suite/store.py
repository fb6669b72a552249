"""Result records on disk -> pandas DataFrame.

Records live in run folders (``<root>/<slug>/<scale>/<hash>-s<seed>/result.json``, or
``error.json`` for a failed run) and in JSON-lines files (``leaderboards/records/<slug>.jsonl``,
the committed records behind the leaderboard). ``load`` reads either kind.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from suite.errors import CorruptDataError
from suite.io import atomic_write_text

COLUMNS = ["reproduction", "scale", "seed", "config_hash", "status", "dataset", "provenance",
           "wall_s", "peak_mem_mb", "started", "git_sha", "git_dirty", "device", "gpus",
           "metrics", "claims", "error", "path"]


# The record schema (DESIGN.md), checked at every read: key -> accepted types.
SCHEMA_TYPES: dict[str, tuple[type, ...]] = {
    "reproduction": (str,), "scale": (str,), "seed": (int,), "config": (dict,), "config_hash": (str,),
    "metrics": (dict,), "claims": (dict,), "env": (dict,), "status": (str,),
}


def invalid(rec: Any) -> str | None:
    """Why ``rec`` is not a usable result record, or None when it is one."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    for key, types_ in SCHEMA_TYPES.items():
        if key not in rec:
            return f"no '{key}'"
        val = rec[key]
        if isinstance(val, bool) or not isinstance(val, types_):
            return f"'{key}' is {type(val).__name__}, not {types_[0].__name__}"
    if rec["status"] == "ok":
        ds = rec.get("dataset")
        if not (isinstance(ds, dict) and isinstance(ds.get("name"), str) and isinstance(ds.get("provenance"), str)):
            return "'dataset' is not {name, provenance}"
        bad = [k for k, v in rec["metrics"].items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if bad:
            return f"metric '{bad[0]}' is not a number"
    return None


def warn(path: str, why: str) -> None:
    print(f"suite: warning: skipped {path}: {why}", file=sys.stderr)


def iter_record_files(root: Path, include_failed: bool = True) -> Iterator[Path]:
    """Every ``result.json`` (and ``error.json`` without a result beside it) under ``root``."""
    for dirpath, _dirnames, filenames in os.walk(root):
        if "result.json" in filenames:
            yield Path(dirpath) / "result.json"
        elif include_failed and "error.json" in filenames:
            yield Path(dirpath) / "error.json"


def read_jsonl(path: Path, strict: bool = True) -> list[dict[str, Any]]:
    """The records of a JSON-lines file. ``strict``: a bad line raises; otherwise it is skipped
    with one warning line naming the file, the line and why."""
    out = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                if strict:
                    raise CorruptDataError(f"{path}:{i} is not valid JSON ({exc.msg}); "
                                           f"remove that line or restore the file from git") from None
                warn(f"{path}:{i}", f"not valid JSON ({exc.msg})")
                continue
            why = invalid(rec)
            if why and strict:
                raise CorruptDataError(f"{path}:{i} is not a result record ({why}); remove that line")
            if why:
                warn(f"{path}:{i}", why)
                continue
            out.append(rec)
    return out


def iter_records(*sources: Path, include_failed: bool = True) -> Iterator[tuple[dict[str, Any], str]]:
    """Valid records under ``sources``; a malformed one is skipped with one warning line."""
    for src in sources:
        src = Path(src)
        if src.is_file():
            if src.suffix == ".jsonl":
                for rec in read_jsonl(src, strict=False):
                    yield rec, str(src)
            else:
                rec = read_record(src)
                if rec is not None:
                    yield rec, str(src)
        elif src.is_dir():
            for jl in sorted(src.glob("*.jsonl")):
                for rec in read_jsonl(jl, strict=False):
                    yield rec, str(jl)
            for f in iter_record_files(src, include_failed):
                rec = read_record(f)
                if rec is not None:
                    yield rec, str(f)


def read_record(path: Path, quiet: bool = False) -> dict[str, Any] | None:
    """One ``result.json``/``error.json``, or None (with a warning) when it is not a valid record."""
    try:
        rec = json.loads(Path(path).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = f"not valid JSON ({getattr(exc, 'msg', exc)})" if not isinstance(exc, OSError) else str(exc)
        if not quiet:
            warn(str(path), why + "; delete the run folder and rerun")
        return None
    why = invalid(rec)
    if why:
        if not quiet:
            warn(str(path), why + "; delete the run folder and rerun")
        return None
    return rec


def _row(rec: dict[str, Any], path: str) -> dict[str, Any]:
    env = rec.get("env") or {}
    ds = rec.get("dataset") or {}
    return {
        "reproduction": rec.get("reproduction"), "scale": rec.get("scale"), "seed": rec.get("seed"),
        "config_hash": rec.get("config_hash"), "status": rec.get("status"),
        "dataset": ds.get("name"), "provenance": ds.get("provenance"),
        "wall_s": rec.get("wall_s"), "peak_mem_mb": rec.get("peak_mem_mb"),
        "started": rec.get("started"), "git_sha": env.get("git_sha"), "git_dirty": env.get("git_dirty"),
        "device": env.get("device"), "gpus": 1 if str(env.get("device", "")).startswith(("NVIDIA", "cuda")) else 0,
        "metrics": rec.get("metrics") or {}, "claims": rec.get("claims") or {},
        "error": rec.get("error"), "path": path,
    }


def load(*sources: Path, include_failed: bool = True) -> pd.DataFrame:
    """All records under ``sources`` (folders or .jsonl/.json files) as one DataFrame."""
    rows = [_row(rec, p) for rec, p in iter_records(*sources, include_failed=include_failed)]
    return pd.DataFrame(rows, columns=COLUMNS)


def records(*sources: Path, include_failed: bool = True) -> list[dict[str, Any]]:
    return [rec for rec, _ in iter_records(*sources, include_failed=include_failed)]


def record_key(rec: dict[str, Any]) -> tuple[str, str, str, int]:
    return (rec["reproduction"], rec["scale"], rec["config_hash"], int(rec["seed"]))


def merge_into_jsonl(path: Path, new: Iterable[dict[str, Any]]) -> int:
    """Add ok records to a JSON-lines file; a record with the same (scale, config, seed) key is
    replaced by the newer one. Written atomically and sorted, so diffs stay clean; an exclusive
    lock (``<file>.lock``) makes concurrent merges into one file lose nothing."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _merge_locked(path, new)


def _merge_locked(path: Path, new: Iterable[dict[str, Any]]) -> int:
    existing = {record_key(r): r for r in (read_jsonl(path) if path.exists() else [])}
    added = 0
    for rec in new:
        if invalid(rec) or rec.get("status") != "ok":
            continue
        key = record_key(rec)
        old = existing.get(key)
        if old is None or (rec.get("started") or "") >= (old.get("started") or ""):
            added += old != rec
            existing[key] = rec
    lines = [json.dumps(existing[k], sort_keys=True, separators=(",", ":")) for k in sorted(existing)]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return added


def metrics_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (record, metric)."""
    rows = [(r.reproduction, r.scale, r.config_hash, r.seed, k, v)
            for r in df.itertuples() for k, v in r.metrics.items()]
    return pd.DataFrame(rows, columns=["reproduction", "scale", "config_hash", "seed", "metric", "value"])
