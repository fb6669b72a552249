"""``suite verify``: run a published record again here and say whether it reproduces.

A published record names its code (hash), config (hash), seed and, since they are recorded, the machine's CPU,
kernel instruction set, torch thread count and library versions. ``verify`` reruns the same reproduction, scale,
seed and config with the current code in a scratch folder and compares every metric that is not a wall-clock
timing (:func:`suite.rehearsal.is_timing`) for exact equality, then the claims' verdicts. Differences are listed
with the environment fields in which the two runs differ, so "same code, same seed, another number" comes with
the likely reason (another CPU, another scikit-learn). Training is chaotic enough that last-bit float differences
can move accuracies by points: a verdict that flips here was decided within that noise.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import leaderboard, registry, rehearsal, runner
from suite.errors import SuiteError

ENV_FIELDS = ("cpu", "cpu_id", "cpu_capability", "torch_threads", "torch", "numpy", "python", "device")


@dataclass
class Report:
    slug: str
    scale: str
    seed: int
    published: dict[str, Any]
    rerun: dict[str, Any]
    identical: int = 0
    differ: list[tuple[str, Any, Any]] = field(default_factory=list)
    verdicts: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    env: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def largest_relative_difference(self) -> float | None:
        """max |a - b| / max(|a|, |b|) over the numeric metrics that differ (None when none is numeric)."""
        rel = [abs(a - b) / max(abs(a), abs(b)) for _, a, b in self.differ
               if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (math.isnan(a) or math.isnan(b))]
        return max(rel) if rel else None

    @property
    def reproduces(self) -> bool:
        return self.rerun.get("status") == "ok" and not self.differ and not self.verdicts


def published_record(slug: str, scale: str, seed: int, records: Path | list[dict[str, Any]]) -> dict[str, Any]:
    """The published record of ``slug``'s current preset and current code at ``scale`` and ``seed``; ``records``:
    the record folder, or ``slug``'s records already read from it."""
    repro = registry.get(slug)
    _, _, h = runner.resolve(runner.RunSpec(slug, scale, seed))
    recs = leaderboard.collect(records).get(slug, []) if isinstance(records, Path) else records
    hit = [r for r in recs if r["scale"] == scale and r["seed"] == seed and r["config_hash"] == h
           and not leaderboard.is_stale(repro, r)]
    if not hit:
        raise SuiteError(f"no published record of {slug}'s current code and {scale} preset for seed {seed}; "
                         f"publish one first (`suite publish`) or pick another --seed/--scale")
    return max(hit, key=lambda r: r["started"])


def compare(slug: str, published: dict[str, Any], rerun: dict[str, Any]) -> Report:
    rep = Report(slug, published["scale"], published["seed"], published, rerun)
    old, new = published.get("metrics") or {}, rerun.get("metrics") or {}
    differ = rehearsal.differing_metrics(slug, old, new)
    rep.differ = [(k, old.get(k), new.get(k)) for k in differ]
    timing = rehearsal.declared_timing(slug)
    rep.identical = sum(not rehearsal.is_timing(k, timing) for k in set(old) | set(new)) - len(differ)
    old_c, new_c = published.get("claims") or {}, rerun.get("claims") or {}
    for cid in sorted(old_c):
        a, b = old_c[cid].get("verdict"), (new_c.get(cid) or {}).get("verdict")
        if a != b:
            rep.verdicts.append((cid, a, b))
    old_e, new_e = published.get("env") or {}, rerun.get("env") or {}
    for k in ENV_FIELDS:
        if old_e.get(k) != new_e.get(k):
            rep.env.append((k, old_e.get(k, "not recorded"), new_e.get(k)))
    old_p, new_p = old_e.get("packages"), new_e.get("packages") or {}
    if old_p is None:
        rep.env.append(("library versions", "not recorded", ", ".join(f"{n} {v}" for n, v in new_p.items() if v)))
    else:
        rep.env += [(n, old_p.get(n), new_p.get(n)) for n in sorted(set(old_p) | set(new_p))
                    if old_p.get(n) != new_p.get(n)]
    return rep


def verify(published: dict[str, Any], *, results: Path | None = None, device: str | None = None,
           data_root: Path | None = None) -> Report:
    """Rerun a published record (its reproduction, scale, seed and current preset, with the current code) in
    ``results`` (a scratch folder by default: nothing stored is reused) and compare."""
    slug, scale, seed = published["reproduction"], published["scale"], published["seed"]
    root = Path(results) if results is not None else Path(tempfile.mkdtemp(prefix="suite-verify-"))
    rec = runner.execute(runner.RunSpec(slug, scale, seed), root, device=device, force=True, data_root=data_root)
    return compare(slug, published, rec)


def _short(x: Any) -> str:
    return leaderboard.fmt(x) if isinstance(x, float) else str(x)


def describe(rep: Report, limit: int = 8) -> str:
    """A few lines for the terminal."""
    head = f"{rep.slug} [{rep.scale}, seed {rep.seed}, config {rep.published['config_hash']}]"
    if rep.rerun.get("status") != "ok":
        return f"{head}: the rerun failed: {rep.rerun.get('error')}"
    n = rep.identical + len(rep.differ)
    if rep.reproduces:
        return f"{head}: reproduces: {n} of {n} non-timing metrics identical, every verdict the same"
    rel = rep.largest_relative_difference
    lines = [f"{head}: does NOT reproduce: {len(rep.differ)} of {n} non-timing metrics differ"
             + (f" (largest relative difference {rel:.1e})" if rel is not None else "")
             + (f", {len(rep.verdicts)} verdict(s) change" if rep.verdicts else ", no verdict changes")]
    lines += [f"    verdict {c}: published {a}, now {b}" for c, a, b in rep.verdicts]
    lines += [f"    {k}: published {_short(a)}, now {_short(b)}" for k, a, b in rep.differ[:limit]]
    if len(rep.differ) > limit:
        lines.append(f"    ... and {len(rep.differ) - limit} more")
    if rep.env:
        lines.append("    environment: " + "; ".join(f"{k} {a} -> {b}" for k, a, b in rep.env))
    else:
        lines.append("    environment: the recorded fields agree (the published record may predate some of them)")
    return "\n".join(lines)
