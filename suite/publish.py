"""``suite publish``: the only way records reach the published ``leaderboards/``.

Every candidate record is checked before anything is written; one refused record refuses the
whole publication with a one-line error (exit 2):
- smoke scale (smoke proves mechanics; it is not evidence) and rehearsal records;
- records from a dirty tree (``env.git_dirty``) unless ``allow_dirty``;
- records whose code hash differs from the reproduction's code as committed at HEAD.
Then the records are merged into ``<out>/records/<slug>.jsonl`` (locked) and every page is
regenerated from ``<out>/records`` alone. What the new records change in the verdicts (against the published
records they supersede) is returned, so a republication says which verdicts flipped.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, NamedTuple

from suite import environment, leaderboard, registry
from suite.errors import SuiteError
from suite.io import atomic_write_text

PUBLISHED = environment.REPO_ROOT / "leaderboards"


def committed_code_hash(module: str) -> str | None:
    """:func:`environment.code_hash` computed over the files as committed at HEAD (None outside git
    or when a file is not committed)."""
    import hashlib

    h = hashlib.sha256()
    for f in environment.code_files(module):
        rel = str(f.relative_to(environment.REPO_ROOT))
        out = subprocess.run(["git", "-C", str(environment.REPO_ROOT), "show", f"HEAD:{rel}"],
                             capture_output=True)
        if out.returncode != 0:
            return None
        h.update(rel.encode())
        h.update(out.stdout)
    return h.hexdigest()[:12]


def refusal(rec: dict[str, Any], path: str, committed: dict[str, str | None], allow_dirty: bool) -> str | None:
    """Why ``rec`` may not be published, or None."""
    env = rec.get("env") or {}
    if rec["scale"] == "smoke":
        return (f"{path} is a smoke-scale record (smoke proves mechanics, it is not evidence); "
                f"publish small or full runs with --scale small")
    if rec.get("rehearsal") or rec.get("status") == "rehearsal":
        return f"{path} is a rehearsal record; rehearsals are never published"
    if env.get("git_dirty") and not allow_dirty:
        return (f"{path} was recorded from a dirty tree; commit the code and rerun, "
                f"or pass --allow-dirty")
    slug = rec["reproduction"]
    if committed.get(slug) is None or env.get("code_hash") != committed[slug]:
        return (f"{path} was made by code (hash {env.get('code_hash')}) other than {slug}'s committed code "
                f"({committed.get(slug)}); rerun it from a clean checkout of HEAD")
    return None


class Published(NamedTuple):
    added: int  # records new or updated in the record files
    pages: list[Path]  # the pages written
    changes: list[str]  # one line per claim whose verdict a new record changed (``verdict_changes``)
    readmes: list[Path]  # the reproduction READMEs whose published-results block changed
    teeth: list[str]  # one line per claim whose teeth reading the new records changed (``teeth_changes``)


def _run_key(rec: dict[str, Any]) -> tuple[str, int, tuple[str, ...]]:
    """A run as the pages show it: scale, seed and overrides (a teeth variant), whatever the config hash."""
    return rec["scale"], int(rec["seed"]), tuple(rec.get("overrides") or ())


def verdict_changes(slug: str, published: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """The claims whose verdict a new record changes: each new record against the newest published record of the
    same scale, seed and overrides started before it (the one it supersedes on the pages; a record of older code
    is still that run). One line per changed claim, e.g. ``claps small seed 2: claps-beats-random-pruning (paper)
    holds -> fails``."""
    prev: dict[tuple, dict[str, Any]] = {}
    for r in published:
        k = _run_key(r)
        if k not in prev or (r.get("started") or "") > (prev[k].get("started") or ""):
            prev[k] = r
    out = []
    for rec in sorted(new, key=_run_key):
        old = prev.get(_run_key(rec))
        if old is None or (old.get("started") or "") >= (rec.get("started") or ""):
            continue
        scale, seed, over = _run_key(rec)
        run = f"{slug} {scale} seed {seed}" + (f" {' '.join(over)}" if over else "")
        for cid, c in sorted(rec.get("claims", {}).items()):
            was = (old.get("claims", {}).get(cid) or {}).get("verdict")
            if was is not None and was != c.get("verdict"):
                out.append(f"{run}: {cid} ({c.get('kind', '?')}) {was} -> {c.get('verdict')}")
    return out


def teeth_changes(slug: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """The claims whose teeth column the new records change (e.g. a broken variant run on more seeds), one line
    each: ``ppp: repeatable-synthetic (unstable) fails as it should [seed 0] -> still holds: defect [...]``."""
    repro = registry.get(slug)
    out = []
    for c in repro.claims:
        if c.teeth:
            was, now = leaderboard.teeth_of(repro, c, before).text, leaderboard.teeth_of(repro, c, after).text
            if was != now:
                out.append(f"{slug}: {c.id} ({c.teeth}) {was} -> {now}")
    return out


def publish(results_root: Path, out_dir: Path = PUBLISHED, *, scale: str | None = None,
            slugs: list[str] | None = None, allow_dirty: bool = False,
            render_only: bool = False) -> Published:
    out_dir = Path(out_dir)
    if render_only:
        return _render(out_dir, 0, [])
    if not Path(results_root).exists():
        raise SuiteError(f"no results at {results_root}; pass --results DIR (or --render-only)")
    by_slug = leaderboard.collect(results_root)
    cands = [(rec, slug) for slug, recs in by_slug.items() if not slugs or slug in slugs
             for rec in recs if scale is None or rec["scale"] == scale]
    if not cands:
        raise SuiteError(f"no ok records to publish under {results_root}"
                         + (f" at scale {scale}" if scale else "") + "; run `suite run ... --scale small` first")
    committed = {slug: committed_code_hash(registry.get(slug).module) for slug in {s for _, s in cands}}
    refused = [why for rec, slug in cands
               if (why := refusal(rec, f"{slug}/{rec['scale']}/{rec['config_hash']}-s{rec['seed']}",
                                  committed, allow_dirty))]
    if refused:
        more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
        raise SuiteError(refused[0] + more)
    added = 0
    changes: list[str] = []
    from suite import store

    bitten: list[str] = []
    kept: dict[Path, str | None] = {}  # each record file as it was, put back if the pages cannot be rendered
    try:
        for slug in sorted({s for _, s in cands}):
            path = out_dir / leaderboard.RECORDS / f"{slug}.jsonl"
            kept[path] = path.read_text() if path.exists() else None
            mine = [rec for rec, s in cands if s == slug]
            before = store.read_jsonl(path) if path.exists() else []
            changes += verdict_changes(slug, before, mine)
            added += store.merge_into_jsonl(path, mine)
            bitten += teeth_changes(slug, before, store.read_jsonl(path))
        return _render(out_dir, added, changes, bitten)
    except BaseException:
        for path, text in kept.items():
            if text is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_text(path, text)
        raise


def _render(out_dir: Path, added: int, changes: list[str], bitten: list[str] | None = None) -> Published:
    """The pages of ``out_dir`` from its records; for the repository's own leaderboards also each reproduction
    README's "Published results" block (:mod:`suite.readme_results`) from the same records."""
    by_slug = leaderboard.collect(out_dir / leaderboard.RECORDS)
    pages = leaderboard.render(out_dir, by_slug)
    readmes: list[Path] = []
    if out_dir.resolve() == PUBLISHED.resolve():
        from suite import readme_results

        readmes = readme_results.write_all(leaderboard.with_assembled(by_slug))
    return Published(added, pages, changes, readmes, bitten or [])
