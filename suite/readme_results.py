"""The "Published results" block of each reproduction's README, written by ``suite publish``.

A README's prose drifts from the records when they are republished; this block cannot: it is
rendered from the records the leaderboard counts (current code, current preset; per scale the
group whose verdicts stand, and the teeth runs), one column per seed, with the verdicts those
records stored. A comment line names the records it shows, so the block can be rendered again from
the committed record files alone (``tests/test_readme_results.py`` does, for every reproduction):
it depends on nothing but those records, so a code change does not make it wrong, only older than
the leaderboard's next render (which then marks the records stale).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import leaderboard, registry, teeth
from suite.environment import REPO_ROOT
from suite.errors import SuiteError
from suite.io import atomic_write_text

BEGIN = "<!-- published results: written by `suite publish` from leaderboards/records; do not edit by hand -->"
END = "<!-- end of published results -->"
SPEC = re.compile(r"^<!-- records: (.*) -->$", re.M)


@dataclass
class Section:
    """One group of records the block shows: a scale (and full-scale job), its config and code."""
    scale: str
    job: str | None
    config_hash: str
    code_hash: str
    seeds: tuple[int, ...]
    recs: list[dict[str, Any]] = field(default_factory=list)
    current: bool = True  # the current preset's config (False: the counted group is of an older config)


@dataclass
class Teeth:
    """A teeth run (small): its variant, the claims it is declared to break, its records (one per seed)."""
    variant: str
    breaks: tuple[str, ...]
    config_hash: str | None
    code_hash: str | None
    recs: list[dict[str, Any]] = field(default_factory=list)


def readme_path(repro: registry.Reproduction) -> Path | None:
    """``reproductions/<slug>/README.md`` of a reproduction package (None for others, e.g. test toys)."""
    parts = repro.module.split(".")
    if parts[0] != "reproductions" or len(parts) < 2:
        return None
    return REPO_ROOT / "reproductions" / parts[1] / "README.md"


def _code(rec: dict[str, Any]) -> str:
    return str((rec.get("env") or {}).get("code_hash"))


def select(repro: registry.Reproduction, recs: list[dict[str, Any]]) -> tuple[list[Section], list[Teeth]]:
    """What the leaderboard counts now: the deciding group of each scale (and full job), and each
    declared teeth variant's small records of the current code (each seed it ran on)."""
    sections = []
    for (scale, job), g in sorted(leaderboard.deciding(repro, recs).items(),
                                  key=lambda kv: (leaderboard.SCALE_RANK.get(kv[0][0], 9), kv[0][1] or "")):
        rs = sorted(g.recs, key=lambda r: r["seed"])  # one record per seed: the record files keep the newest
        sections.append(Section(scale, job, g.config_hash, _code(rs[0]), tuple(r["seed"] for r in rs), rs, g.current))
    runs = []
    for variant, claims in sorted(teeth.by_variant(repro).items()):
        try:
            rs = leaderboard.teeth_records(repro, recs, teeth.config_hash(repro, variant))
        except SuiteError:  # the variant no longer resolves
            rs = []
        runs.append(Teeth(variant, tuple(c.id for c in claims), rs[0]["config_hash"] if rs else None,
                          _code(rs[0]) if rs else None, rs))
    return sections, runs


def spec_line(sections: list[Section], runs: list[Teeth]) -> str:
    parts = [f"{s.scale}{'/' + s.job if s.job else ''} config {s.config_hash} code {s.code_hash} "
             f"seeds {','.join(map(str, s.seeds))}{'' if s.current else ' other-config'}" for s in sections]
    parts += [f"teeth {t.variant} config {t.config_hash or 'none'} code {t.code_hash or 'none'} "
              f"breaks {','.join(t.breaks)}" + (f" seeds {','.join(str(r['seed']) for r in t.recs)}" if t.recs else "")
              for t in runs]
    return f"<!-- records: {' | '.join(parts) or 'none'} -->"


def from_spec(line: str, recs: list[dict[str, Any]]) -> tuple[list[Section], list[Teeth]]:
    """The sections and teeth runs a block's records line names, found in ``recs`` (a record file's)."""
    m = SPEC.search(line)
    if not m:
        raise SuiteError("no '<!-- records: ... -->' line in the published-results block")
    sections, runs = [], []
    for part in ([] if m.group(1) == "none" else m.group(1).split(" | ")):
        w = part.split()
        if w[0] == "teeth":
            h, code = (None if w[3] == "none" else w[3]), (None if w[5] == "none" else w[5])
            seeds = tuple(int(x) for x in w[9].split(",")) if len(w) > 9 else (teeth.TEETH_SEED,)
            rs = sorted((r for r in recs if r["scale"] == teeth.TEETH_SCALE and r["seed"] in seeds
                         and r["config_hash"] == h and _code(r) == code), key=lambda r: r["seed"]) if h else []
            runs.append(Teeth(w[1], tuple(w[7].split(",")), h, code, rs))
            continue
        scale, _, job = w[0].partition("/")
        seeds = tuple(int(s) for s in w[6].split(","))
        rs = sorted((r for r in recs if r["scale"] == scale and r["config_hash"] == w[2] and _code(r) == w[4]
                     and r["seed"] in seeds), key=lambda r: r["seed"])
        sections.append(Section(scale, job or None, w[2], w[4], seeds, rs, "other-config" not in w))
    return sections, runs


def _stored(rec: dict[str, Any] | None, cid: str) -> dict[str, Any]:
    return ((rec or {}).get("claims") or {}).get(cid) or {}


def _tally(verdicts: list[str]) -> str:
    n, held = len(verdicts), sum(v == "holds" for v in verdicts)
    if held == n:
        return f"holds ({held}/{n})"
    if "missing" in verdicts:
        return f"missing metric ({held}/{n} hold)"
    return f"**fails** ({held}/{n} hold)"


def _compared(cells: list[dict[str, Any]]) -> str:
    targets = [leaderboard.fmt(c.get("target")) for c in cells]
    tol = cells[0].get("tol")
    same = " / ".join(targets) if len(set(targets)) > 1 else targets[0]
    return f"{cells[0].get('op', '?')} {same}" + (f" ± {leaderboard.fmt(tol)}" if tol else "")


def _teeth_cell(cid: str, runs: list[Teeth], unbroken: list[dict[str, Any]]) -> str:
    out = []
    for t in runs:
        if cid in t.breaks:
            said = teeth.across_seeds({r["seed"]: _stored(r, cid) for r in t.recs},
                                      {r["seed"]: _stored(r, cid) for r in unbroken})
            out.append(f"`{t.variant}`: {said.text}")
    return "; ".join(out)


def render(repro: registry.Reproduction, sections: list[Section], runs: list[Teeth]) -> str:
    """The block, markers included: a pure function of the records in ``sections`` and ``runs``."""
    lines = [BEGIN, "## Published results", "",
             f"Written by `suite publish` from the records the leaderboard counts "
             f"([records](../../leaderboards/records/{repro.slug}.jsonl), "
             f"[track page](../../leaderboards/{repro.track}.md#{repro.slug})): per scale the current preset's "
             f"runs of the current code, one column per seed, with the verdict each record stored; a claim holds "
             f"at a scale when it holds on every seed. Teeth: each paper claim's broken variant (small, on the "
             f"seeds in brackets), each seed read against the method's own run of that seed.", ""]
    if not sections:
        lines += ["No records of the current code and preset are published yet (`suite run "
                  f"{repro.slug} --scale small --seeds 0-2`, `suite teeth {repro.slug}`, `suite publish`).", ""]
    small = next((s for s in sections if s.scale == teeth.TEETH_SCALE and s.job is None), None)
    unbroken = small.recs if small and small.current else []
    for s in sections:
        rs = s.recs
        ds = (rs[0].get("dataset") or {}) if rs else {}
        commits = sorted({str((r.get("env") or {}).get("git_sha") or "?")[:7] for r in rs})
        lines += [f"### {s.scale}{' · job `' + s.job + '`' if s.job else ''} · data `{ds.get('name', '?')}` "
                  f"({ds.get('provenance', '?')}) · config `{s.config_hash}` · code `{s.code_hash}` · commit "
                  f"{', '.join(f'`{c}`' for c in commits)} · seeds {', '.join(map(str, s.seeds))}"
                  + ("" if s.current else " · not the current preset (an older config: no run of the current one yet)"),
                  ""]
        stored = (rs[0].get("claims") or {}) if rs else {}
        ids = sorted(stored, key=lambda cid: stored[cid].get("kind") != "paper")  # paper claims first, then checks
        rows = []
        for cid in ids:
            cells = [_stored(r, cid) for r in rs]
            verdicts = [c.get("verdict", "missing") for c in cells]
            if all(v == "not-expected" for v in verdicts):
                continue
            row = [f"`{cid}`", cells[0].get("kind", "?"), *[leaderboard.fmt(c.get("value")) for c in cells],
                   _compared(cells), _tally(verdicts)]
            if s is small:
                row.append(_teeth_cell(cid, runs, unbroken))
            rows.append(row)
        headers = ["claim", "kind", *[f"seed {r['seed']}" for r in rs], "compared with", "verdict"]
        if s is small:
            headers.append("teeth (small)")
        lines += [leaderboard.tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    lines += [spec_line(sections, runs), END]
    return "\n".join(lines) + "\n"


def put(text: str, block: str) -> str:
    """``text`` with its block replaced by ``block`` (appended at the end when it has none)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block.rstrip("\n") + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + block


def block_of(text: str) -> str | None:
    """The block a README holds (markers included), or None."""
    if BEGIN not in text or END not in text:
        return None
    return BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"


def write_all(by_slug: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """Rewrite the block of every reproduction package's README from ``by_slug``; returns the READMEs
    whose text changed."""
    changed = []
    for slug, repro in registry.discover().items():
        path = readme_path(repro)
        if path is None or not path.exists():
            continue
        text = path.read_text()
        new = put(text, render(repro, *select(repro, by_slug.get(slug, []))))
        if new != text:
            atomic_write_text(path, new)
            changed.append(path)
    return changed
