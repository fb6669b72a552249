"""Compile leaderboards: records -> ``leaderboards/<track>.md``, ``README.md`` and plots.

``ingest`` copies ok records from a results root into ``<out>/records/<slug>.jsonl`` (the committed
evidence); ``render`` builds every page from those files alone, so each number on a page traces
to a committed record. Output is deterministic (sorted, fixed float format) so diffs stay clean.

Rules (DESIGN.md): our value is the mean ± std over seeds with n; the paper's number stands beside
it, but the difference to it (Δ) is shown only for a ``full``-scale run on the paper's own data;
every group of runs names its scale, dataset and provenance.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from tabulate import tabulate as _tabulate

from suite import config, registry, store
from suite.errors import SuiteError
from suite.io import atomic_write, atomic_write_text
from suite.spec import SCALES, Claim

SCALE_RANK = {"full": 0, "small": 1, "smoke": 2}
RECORDS = "records"
PLOTS = "plots"


def tabulate(rows: Iterable[Sequence[Any]], headers: Sequence[str], **kw: Any) -> str:
    """A GitHub markdown table; a ``|`` inside a cell (``|cos|``, ``|V|``) is escaped so that it
    does not split the cell."""
    def esc(x: Any) -> Any:
        return x.replace("|", "\\|") if isinstance(x, str) else x
    return _tabulate([[esc(x) for x in row] for row in rows], headers=[esc(h) for h in headers], **kw)


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, bool):
        return str(x)
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4g}"


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(vals) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return m, sd, n


def ingest(results_root: Path, out_dir: Path) -> int:
    """Merge ok records under ``results_root`` into ``out_dir/records/<slug>.jsonl``."""
    by_slug: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in store.records(Path(results_root), include_failed=False):
        if rec.get("status") == "ok":
            by_slug[rec["reproduction"]].append(rec)
    added = 0
    for slug, recs in sorted(by_slug.items()):
        added += store.merge_into_jsonl(Path(out_dir) / RECORDS / f"{slug}.jsonl", recs)
    return added


def _groups(recs: Iterable[dict[str, Any]]) -> list[tuple[tuple, list[dict[str, Any]]]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        ds = r.get("dataset") or {}
        key = (SCALE_RANK.get(r["scale"], 9), r["scale"], ds.get("name", "?"), ds.get("provenance", "?"),
               r["config_hash"])
        groups[key].append(r)
    return sorted((k, sorted(v, key=lambda r: r["seed"])) for k, v in groups.items())


def _preset_hash(repro: registry.Reproduction, scale: str) -> str | None:
    """Config hash of ``repro``'s preset at ``scale`` as the code declares it now."""
    try:
        return config.config_hash(repro.slug, config.resolve(repro, scale))
    except SuiteError:  # a preset that no longer resolves: no group counts as current
        return None


def _ranked(repro: registry.Reproduction, recs: Iterable[dict[str, Any]]
            ) -> list[tuple[tuple, list[dict[str, Any]], bool]]:
    """Groups of ``_groups`` with a flag "runs the current preset"; per scale, the current group
    comes first, then the others, newest first. The first group of a scale is the one reported."""
    out = [(key, grp, key[4] == _preset_hash(repro, key[1])) for key, grp in _groups(recs)]
    out.sort(key=lambda t: max(r.get("started") or "" for r in t[1]), reverse=True)  # newest first ...
    return sorted(out, key=lambda t: (t[0][0], not t[2]))  # ... within (scale, current first); stable


def checked(claim: Claim, recs: list[dict[str, Any]]) -> list[str]:
    """Verdicts of the claim as declared now, applied to each record's stored metrics.

    Thresholds are calibrated once and then frozen in code; the page always shows the declared
    claim. Where a record stored a different verdict (it ran before the freeze), the cell says so.
    """
    return [claim.check(r.get("metrics") or {}, r["scale"])["verdict"] for r in recs]


def _verdict(claim: Claim, recs: list[dict[str, Any]]) -> str:
    verdicts = checked(claim, recs)
    stored = [(r.get("claims") or {}).get(claim.id, {}).get("verdict") for r in recs]
    n = len(verdicts)
    note = ""
    if stored != verdicts:
        note = f"; re-checked, the records said {sum(v == 'holds' for v in stored)}/{n} hold"
    if all(v == "not-expected" for v in verdicts):
        return "not expected at this scale"
    held = sum(v == "holds" for v in verdicts)
    if held == n:
        return f"holds ({held}/{n}{note})"
    if any(v == "missing" for v in verdicts):
        return f"missing metric ({held}/{n} hold{note})"
    return f"**fails** ({held}/{n} hold{note})"


def _target_text(claim: Claim, recs: list[dict[str, Any]]) -> str:
    tol = f" ± {fmt(claim.tol)}" if claim.tol else ""
    if isinstance(claim.ref, str):
        m, sd, n = mean_std([r["metrics"].get(claim.ref) for r in recs])
        return f"{claim.op} `{claim.ref}` = {fmt(m)} ± {fmt(sd)}{tol}"
    return f"{claim.op} {fmt(claim.ref)}{tol}"


def _claim_rows(repro: registry.Reproduction, scale: str, provenance: str,
                recs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for claim in repro.claims:
        m, sd, n = mean_std([r["metrics"].get(claim.metric) for r in recs])
        comparable = scale == "full" and provenance == "paper"
        delta = fmt(m - claim.paper) if (claim.paper is not None and comparable and n) else "—"
        paper = fmt(claim.paper) if claim.paper is not None else "—"
        if claim.paper is not None and claim.paper_note:
            paper += f" ({claim.paper_note})"
        rows.append([f"`{claim.id}`", claim.text, f"`{claim.metric}`",
                     f"{fmt(m)} ± {fmt(sd)} (n={n})", _target_text(claim, recs), paper, delta,
                     _verdict(claim, recs)])
    return rows


def _cost(recs: list[dict[str, Any]]) -> str:
    total = sum((r.get("wall_s") or 0) * max(1, _gpus(r)) for r in recs)
    shas = sorted({(r.get("env") or {}).get("git_sha", "unknown")[:10] for r in recs})
    dirty = any((r.get("env") or {}).get("git_dirty") for r in recs)
    devices = sorted({(r.get("env") or {}).get("device", "?") for r in recs})
    return (f"cost {fmt(total)} device-seconds over {len(recs)} runs on {', '.join(devices)}; "
            f"git {', '.join(shas)}{' (dirty tree)' if dirty else ''}")


def _gpus(rec: dict[str, Any]) -> int:
    return 1 if str((rec.get("env") or {}).get("device", "")).startswith(("NVIDIA", "Tesla", "AMD")) else 0


def _plot(repro: registry.Reproduction, recs: list[dict[str, Any]], scale: str, out_dir: Path) -> list[str]:
    if not repro.plots:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = []
    for p in repro.plots:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        drawn = False
        for y in p.ys:
            pts: dict[float, list[float]] = defaultdict(list)
            prefix = f"{y}@{p.x}="
            for r in recs:
                for k, v in r["metrics"].items():
                    if k.startswith(prefix) and v is not None:
                        pts[float(k[len(prefix):])].append(v)
            if not pts:
                continue
            xs = sorted(pts)
            stats = [mean_std(pts[x]) for x in xs]
            ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", label=y,
                        capsize=2)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel(p.x)
        ax.set_ylabel(p.ylabel or "value")
        ax.set_title(p.title or p.name, fontsize=9)
        if p.logx:
            ax.set_xscale("log")
        if p.logy:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{repro.slug}-{p.name}-{scale}.png"
        path = out_dir / PLOTS / name
        atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, metadata={"Software": None}))
        plt.close(fig)
        links.append(f"![{p.name} ({scale})]({PLOTS}/{name})")
    return links


def _tables(repro: registry.Reproduction, recs: list[dict[str, Any]]) -> list[str]:
    out = []
    for tab in repro.tables:
        rows = []
        for row in tab.rows:
            cells = [row]
            for col in tab.cols:
                m, sd, n = mean_std([r["metrics"].get(tab.metric.format(row=row, col=col)) for r in recs])
                cells.append(f"{fmt(m)} ± {fmt(sd)}" if n else "—")
            rows.append(cells)
        out += [f"**{tab.title or tab.name}** (`{tab.metric}`, mean ± std over seeds)", "",
                tabulate(rows, headers=[tab.row_label or "", *tab.cols], tablefmt="github",
                         disable_numparse=True), ""]
    return out


HEADER = ["claim", "statement", "metric", "ours (mean ± std)", "compared with", "paper", "Δ vs paper",
          "verdict"]


def render_track(track: str, by_slug: dict[str, list[dict[str, Any]]], out_dir: Path) -> str:
    lines = [f"# Leaderboard: track `{track}`", "",
             "Generated by `suite leaderboard` from the committed records in [records/](records/); "
             "do not edit by hand.", "",
             "Scales: `smoke` (seconds, CPU), `small` (minutes, CPU), `full` (the paper's protocol). "
             "Provenance: `paper` (the paper's data), `paper-subset` (a real subset of it), `stand-in` "
             "(bundled or generated data). The paper's number stands beside ours for reference; Δ is "
             "shown only for a `full` run on the paper's own data.", ""]
    summary = []
    beside_paper = []  # every claim with the paper's figure or statement, our reported value beside it
    sections = []
    for repro in registry.by_track(track):
        recs = by_slug.get(repro.slug, [])
        groups = _ranked(repro, recs)
        if groups:
            (_, scale, ds, prov, _h), best, _ = groups[0]
            expected = [c for c in repro.claims if scale in c.scales]
            held = sum(all(v == "holds" for v in checked(c, best)) for c in expected)
            summary.append([f"[{repro.slug}](#{repro.slug})", repro.paper.title, scale, f"{ds} ({prov})",
                            f"{held}/{len(expected)}"])
            for c in (c for c in repro.claims if c.paper is not None or c.paper_note):
                m, sd, n = mean_std([r["metrics"].get(c.metric) for r in best])
                ours = f"{fmt(m)} ± {fmt(sd)} (n={n})" if n else "—"
                paper = " ".join(x for x in (fmt(c.paper) if c.paper is not None else "",
                                             f"({c.paper_note})" if c.paper_note else "") if x)
                beside_paper.append([f"[{repro.slug}](#{repro.slug})", f"`{c.id}`", f"`{c.metric}`", ours,
                                     f"{scale}, {prov}", paper, _verdict(c, best)])
        else:
            summary.append([repro.slug, repro.paper.title, "not run", "—", "—"])
        sec = [f"## {repro.slug}", "",
               f"**{repro.paper.title}** — {repro.paper.authors} ({repro.paper.venue} {repro.paper.year}). "
               + (f"[paper]({repro.paper.url}) " if repro.paper.url else "")
               + (f"· [official code]({repro.paper.code}) " if repro.paper.code else "· no official code ")
               + f"· [reproduction](../reproductions/{repro.slug}/README.md)", ""]
        if not groups:
            sec += ["No records yet: run `suite run " + repro.slug + " --scale small --seeds 0-2` then "
                    "`suite leaderboard`.", ""]
        for (_, scale, ds, prov, h), grp, current in groups:
            seeds = ",".join(str(r["seed"]) for r in grp)
            note = "" if current else f" · not the current `{scale}` preset (an older or overridden config)"
            sec += [f"### {scale} · data `{ds}` ({prov}) · config `{h}` · seeds {seeds}{note}", ""]
            sec.append(tabulate(_claim_rows(repro, scale, prov, grp), headers=HEADER, tablefmt="github",
                                disable_numparse=True))
            sec += ["", _cost(grp), ""]
            sec += _tables(repro, grp)
            sec += [link for link in _plot(repro, grp, scale, out_dir)]
            sec.append("")
        sections += sec
    lines.append(tabulate(summary, headers=["reproduction", "paper", "best scale", "data",
                                            "claims holding (expected at that scale, all seeds)"],
                          tablefmt="github", disable_numparse=True))
    lines.append("")
    if beside_paper:
        lines += ["### Our numbers beside the paper's", "",
                  "Every claim that carries the paper's figure or statement; ours is the reported group of "
                  "each reproduction (its scale and data say how comparable it is).", "",
                  tabulate(beside_paper, headers=["reproduction", "claim", "metric", "ours (mean ± std)",
                                                  "our scale, data", "paper (figure or statement)", "verdict"],
                           tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines + sections).rstrip() + "\n"


def render_index(by_slug: dict[str, list[dict[str, Any]]]) -> str:
    repros = registry.discover()
    lines = ["# Leaderboards", "",
             "Generated by `suite leaderboard` from the records in [records/](records/). One page per "
             "track; the claims matrix shows every declared claim's verdict at each scale "
             "(all seeds of the current preset's config must hold; without records of it, of the newest "
             "config).", "", "## Tracks", ""]
    rows = []
    for track in registry.tracks():
        members = [r for r in repros.values() if r.track == track]
        ran = sum(bool(by_slug.get(r.slug)) for r in members)
        rows.append([f"[{track}]({track}.md)", len(members), ran])
    lines.append(tabulate(rows, headers=["track", "reproductions", "with records"], tablefmt="github"))
    lines += ["", "## Claims matrix", ""]
    rows = []
    for slug, repro in repros.items():
        recs = by_slug.get(slug, [])
        for claim in repro.claims:
            cells = []
            for scale in SCALES:
                groups = _ranked(repro, (r for r in recs if r["scale"] == scale))
                cells.append(_verdict(claim, groups[0][1]) if groups else "—")
            rows.append([f"[{slug}]({repro.track}.md#{slug})", f"`{claim.id}`", *cells])
    lines.append(tabulate(rows, headers=["reproduction", "claim", *SCALES], tablefmt="github",
                          disable_numparse=True))
    return "\n".join(lines).rstrip() + "\n"


def render(out_dir: Path) -> list[Path]:
    """Write every track page and the index from ``out_dir/records``; returns the pages written."""
    out_dir = Path(out_dir)
    by_slug: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rec_dir = out_dir / RECORDS
    if rec_dir.is_dir():
        known = registry.discover()
        for rec in store.records(rec_dir, include_failed=False):
            if rec.get("reproduction") in known and rec.get("status") == "ok":
                by_slug[rec["reproduction"]].append(rec)
    written = []
    for track in registry.tracks():
        written.append(atomic_write_text(out_dir / f"{track}.md", render_track(track, by_slug, out_dir)))
    written.append(atomic_write_text(out_dir / "README.md", render_index(by_slug)))
    return written


def build(results_root: Path, out_dir: Path) -> tuple[int, list[Path]]:
    added = ingest(results_root, out_dir) if Path(results_root).exists() else 0
    return added, render(out_dir)
