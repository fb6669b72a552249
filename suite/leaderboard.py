"""Compile leaderboards: records -> ``leaderboards/<track>.md``, ``README.md`` and plots.

``ingest`` copies ok records from a results root into ``<out>/records/<slug>.jsonl`` (the committed
evidence); ``render`` builds every page from those files alone, so each number on a page traces
to a committed record. Output is deterministic (sorted, fixed float format) so diffs stay clean.

Rules (DESIGN.md): our value is the mean ± std over seeds with n; the paper's number stands beside
it, but the difference to it (Δ) is shown only for a ``full``-scale run on the paper's own data;
every group of runs names its scale, dataset and provenance.
"""
from __future__ import annotations

import functools
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from tabulate import tabulate as _tabulate

from suite import config, environment, registry, store, teeth
from suite.errors import SuiteError
from suite.io import atomic_write_bytes, atomic_write_text
from suite.spec import SCALES, Claim, DatasetRef

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
    if math.isinf(m) and all(map(math.isfinite, vals)):  # the sum overflowed, the values did not
        m = math.fsum(v / n for v in vals)
    if n == 1 or not math.isfinite(m):
        return m, 0.0 if n == 1 else float("nan"), n
    # deviations scaled by the largest, so values near the float range (a broken variant's 1e200) do not overflow
    big = max(abs(v - m) for v in vals)
    sd = big * math.sqrt(math.fsum(((v - m) / big) ** 2 for v in vals) / (n - 1)) if big > 0 else 0.0
    return m, sd, n


def collect(*sources: Path) -> dict[str, list[dict[str, Any]]]:
    """Valid ok records of registered reproductions under ``sources``, by reproduction. A malformed
    record is skipped with one warning line (see :func:`suite.store.invalid`)."""
    known = registry.discover()
    by_slug: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for src in sources:
        if not Path(src).exists():
            continue
        for rec, path in store.iter_records(Path(src), include_failed=False):
            if rec.get("status") != "ok":
                continue
            if rec["reproduction"] not in known:
                store.warn(path, f"unknown reproduction {rec['reproduction']!r}")
            elif rec["scale"] not in SCALES:
                store.warn(path, f"unknown scale {rec['scale']!r}")
            else:
                by_slug[rec["reproduction"]].append(rec)
    return by_slug


def ingest(results_root: Path, out_dir: Path) -> int:
    """Merge ok records under ``results_root`` into ``out_dir/records/<slug>.jsonl`` (used by
    ``suite publish`` after its checks)."""
    added = 0
    for slug, recs in sorted(collect(results_root).items()):
        added += store.merge_into_jsonl(Path(out_dir) / RECORDS / f"{slug}.jsonl", recs)
    return added


@functools.lru_cache(maxsize=None)
def _current_code_hash(module: str) -> str:
    return environment.code_hash(module)


def is_stale(repro: registry.Reproduction, rec: dict[str, Any]) -> bool:
    """A record made by other code than the reproduction's current code (its code hash differs):
    shown, labelled, and left out of every verdict."""
    return (rec.get("env") or {}).get("code_hash") != _current_code_hash(repro.module)


def _teeth_variant(repro: registry.Reproduction, scale: str, h: str) -> str | None:
    """The broken variant whose teeth run has config hash ``h`` at ``scale`` (or None)."""
    for v in teeth.by_variant(repro):
        try:
            if teeth.config_hash(repro, v, scale) == h:
                return v
        except SuiteError:
            continue
    return None


def assemble(repro: registry.Reproduction, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records merged from jobs that each ran some parts of one experiment (see :class:`spec.Assembly`):
    same scale, seed and code, configs equal but for ``split``, parts disjoint, more than one job."""
    a = repro.assembly
    if a is None:
        return []
    jobs: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        cfg = dict(r.get("config") or {})
        if not isinstance(cfg.get(a.split), list):
            continue
        cfg.pop(a.split)
        key = (r["scale"], r["seed"], (r.get("env") or {}).get("code_hash"),
               json.dumps(cfg, sort_keys=True))
        jobs[key].append(r)
    out = []
    for key, parts in sorted(jobs.items(), key=lambda kv: kv[0][:2]):
        parts = sorted(parts, key=lambda r: r.get("started") or "")
        seen: list[Any] = []
        for r in parts:
            seen += r["config"][a.split]
        if len(parts) < 2 or len(seen) != len(set(map(json.dumps, seen))):
            continue  # a single job, or overlapping parts: nothing to assemble
        try:
            preset = list(config.canonical(config.resolve(repro, parts[0]["scale"]))[a.split])
        except SuiteError:
            preset = []
        order = [v for v in preset if v in seen] + sorted((v for v in seen if v not in preset), key=json.dumps)
        merged_cfg = {**parts[0]["config"], a.split: order}
        metrics: dict[str, Any] = {}
        for r in parts:
            metrics.update(r.get("metrics") or {})
        metrics.update(a.derive(dict(metrics)))
        ref = DatasetRef.combine(*(DatasetRef.from_record(r.get("dataset")) for r in parts))
        out.append({
            **parts[0], "config": merged_cfg, "config_hash": config.hash_canonical(repro.slug, merged_cfg),
            "overrides": [], "metrics": metrics, "dataset": ref.as_dict(),
            "claims": {c.id: c.check(metrics, parts[0]["scale"], repro.job_of(parts[0]["scale"], merged_cfg))
                       for c in repro.claims},
            "wall_s": sum(r.get("wall_s") or 0.0 for r in parts),
            "started": max(r.get("started") or "" for r in parts),
            "assembled_from": [r["config_hash"] for r in parts],
        })
    return out


def _groups(recs: Iterable[dict[str, Any]]) -> list[tuple[tuple, list[dict[str, Any]]]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        ds = r.get("dataset") or {}
        key = (SCALE_RANK.get(r["scale"], 9), r["scale"], ds.get("name", "?"), ds.get("provenance", "?"),
               r["config_hash"])
        groups[key].append(r)
    return sorted((k, sorted(v, key=lambda r: r["seed"])) for k, v in groups.items())


def _preset_hash(repro: registry.Reproduction, scale: str, overrides: Sequence[str] = ()) -> str | None:
    """Config hash of ``repro``'s preset at ``scale`` (with a declared job's ``overrides``) as the code declares it now."""
    try:
        return config.config_hash(repro.slug, config.resolve(repro, scale, overrides))
    except SuiteError:  # a preset that no longer resolves: no group counts as current
        return None


def _current_hashes(repro: registry.Reproduction, scale: str) -> set[str | None]:
    """The configs that are current at ``scale``: the preset, and at full every declared job."""
    jobs = repro.jobs.values() if scale == "full" else ()
    return {_preset_hash(repro, scale)} | {_preset_hash(repro, scale, o) for o in jobs}


def _job(rec: dict[str, Any]) -> str | None:
    """The full-scale job whose configuration a record ran (None: the preset's, or below full scale)."""
    if rec.get("scale") != "full":
        return None
    try:
        repro = registry.get(rec["reproduction"])
    except (SuiteError, KeyError):
        return None
    return repro.job_of("full", rec.get("config") or {})


@dataclass
class Group:
    """Records of one (scale, dataset, config) with what the page says about them."""

    scale: str
    dataset: str
    provenance: str
    config_hash: str
    recs: list[dict[str, Any]]
    current: bool      # runs the current preset of its scale (or a declared full job's config)
    stale: bool        # made by older code: shown, never counted
    teeth: str | None  # the broken variant this group's config runs, if any
    job: str | None = None  # the declared full job whose configuration it ran (None: the preset's)

    @property
    def counted(self) -> bool:
        return not self.stale and self.teeth is None


def _ranked(repro: registry.Reproduction, recs: Iterable[dict[str, Any]]) -> list[Group]:
    """Groups of records; per scale, counted groups first (the current preset before others, newest
    first), then teeth runs, then stale ones. The first counted group of a scale is reported."""
    recs = list(recs)
    out = []
    for key, grp in _groups(recs):
        _, scale, ds, prov, h = key
        fresh = [r for r in grp if not is_stale(repro, r)]
        old = [r for r in grp if is_stale(repro, r)]
        for part, stale in ((fresh, False), (old, True)):
            if part:
                out.append(Group(scale, ds, prov, h, part, h in _current_hashes(repro, scale), stale,
                                 _teeth_variant(repro, scale, h), _job(part[0])))
    out.sort(key=lambda g: max(r.get("started") or "" for r in g.recs), reverse=True)  # newest first ...
    return sorted(out, key=lambda g: (SCALE_RANK.get(g.scale, 9), g.stale, g.teeth is not None, not g.current,
                                      g.job is not None))


def deciding(repro: registry.Reproduction, recs: Iterable[dict[str, Any]],
             ranked: list[Group] | None = None) -> dict[tuple[str, str | None], Group]:
    """Per ``(scale, job)``: the group whose verdicts stand there (counted, the current preset or job
    config if it ran); ``job`` is None for the preset and below full scale. ``ranked``: :func:`_ranked`'s
    groups of ``recs`` when the caller has them already."""
    out: dict[tuple[str, str | None], Group] = {}
    for g in ranked if ranked is not None else _ranked(repro, recs):
        if g.counted:
            out.setdefault((g.scale, g.job), g)
    return out


def reported(repro: registry.Reproduction, recs: Iterable[dict[str, Any]], scale: str) -> Group | None:
    """The group whose verdicts stand for ``scale`` (the preset's at full)."""
    return deciding(repro, recs).get((scale, None))


def claim_group(claim: Claim, decides: dict[tuple[str, str | None], Group], scale: str) -> Group | None:
    """Of the :func:`deciding` groups, the one whose records decide ``claim`` at ``scale`` (at full: its job's)."""
    return decides.get((scale, claim.job if scale == "full" else None))


def teeth_of(repro: registry.Reproduction, claim: Claim, recs: list[dict[str, Any]]) -> teeth.Verdict:
    """Does the claim's broken variant make it fail? Its small runs of the current code (each seed it ran
    on), each read against the current preset's small run of the same seed (:func:`teeth.across_seeds`)."""
    if not claim.teeth:
        return teeth.Verdict("none", f"none: {claim.no_teeth}")
    try:
        h = teeth.config_hash(repro, claim.teeth)
    except SuiteError:
        return teeth.Verdict("unresolved", "variant no longer resolves")

    def entries(config_hash: str | None) -> dict[int, dict[str, Any]]:
        return {r["seed"]: claim.check(r.get("metrics") or {}, teeth.TEETH_SCALE)
                for r in teeth_records(repro, recs, config_hash)}
    return teeth.across_seeds(entries(h), entries(_preset_hash(repro, teeth.TEETH_SCALE)))


def teeth_verdict(repro: registry.Reproduction, claim: Claim, recs: list[dict[str, Any]]) -> str:
    """The teeth column's cell (empty for a check without teeth)."""
    if claim.kind != "paper" and not claim.teeth:
        return ""
    v = teeth_of(repro, claim, recs)
    return f"`{claim.teeth}`: {v.text}" if claim.teeth else v.text


def teeth_records(repro: registry.Reproduction, recs: Iterable[dict[str, Any]],
                  config_hash: str | None) -> list[dict[str, Any]]:
    """The teeth scale's records of the current code with ``config_hash`` (a teeth run, or the preset's own
    runs the teeth are read against), one per seed, by seed."""
    out = {r["seed"]: r for r in recs if r["scale"] == teeth.TEETH_SCALE and r["config_hash"] == config_hash
           and not is_stale(repro, r)}
    return [out[s] for s in sorted(out)]


def checked(claim: Claim, recs: list[dict[str, Any]]) -> list[str]:
    """Verdicts of the claim as declared now, applied to each record's stored metrics.

    Thresholds are calibrated once and then frozen in code; the page always shows the declared
    claim. Where a record stored a different verdict (it ran before the freeze), the cell says so.
    """
    return [claim.check(r.get("metrics") or {}, r["scale"], _job(r))["verdict"] for r in recs]


def _verdict(claim: Claim, recs: list[dict[str, Any]]) -> str:
    verdicts = checked(claim, recs)
    stored = [((r.get("claims") or {}).get(claim.id) or {}).get("verdict") for r in recs]
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


def _holds(claim: Claim, recs: list[dict[str, Any]]) -> bool:
    return bool(recs) and all(v == "holds" for v in checked(claim, recs))


def mechanics(repro: registry.Reproduction, g: Group | None) -> str:
    """``verified n/m``: the check claims expected at the group's scale that hold on all seeds."""
    if g is None:
        return "—"
    checks = [c for c in repro.claims if c.kind == "check" and g.scale in c.scales]
    return f"verified {sum(_holds(c, g.recs) for c in checks)}/{len(checks)}" if checks else "none declared"


def _target_text(claim: Claim, recs: list[dict[str, Any]]) -> str:
    tol = f" ± {fmt(claim.tol)}" if claim.tol else ""
    if isinstance(claim.ref, str):
        m, sd, n = mean_std([r["metrics"].get(claim.ref) for r in recs])
        return f"{claim.op} `{claim.ref}` = {fmt(m)} ± {fmt(sd)}{tol}"
    return f"{claim.op} {fmt(claim.ref)}{tol}"


def _claim_rows(repro: Any, scale: str, provenance: str, recs: list[dict[str, Any]],
                all_recs: list[dict[str, Any]] | None = None) -> list[list[str]]:
    rows = []
    for claim in repro.claims:
        m, sd, n = mean_std([r["metrics"].get(claim.metric) for r in recs])
        comparable = scale == "full" and provenance == "paper"
        delta = fmt(m - claim.paper) if (claim.paper is not None and comparable and n) else "—"
        paper = fmt(claim.paper) if claim.paper is not None else "—"
        if claim.paper is not None and claim.paper_note:
            paper += f" ({claim.paper_note})"
        text = claim.text + _claim_data_note(claim, recs)
        rows.append([f"`{claim.id}`", claim.kind or "?", text, f"`{claim.metric}`",
                     f"{fmt(m)} ± {fmt(sd)} (n={n})", _target_text(claim, recs), paper, delta,
                     _verdict(claim, recs),
                     teeth_verdict(repro, claim, all_recs) if all_recs is not None else ""])
    return rows


def _claim_data_note(claim: Claim, recs: list[dict[str, Any]]) -> str:
    """Where a claim's metric was measured on other data than its group's dataset, say on which."""
    names = set()
    for r in recs:
        ds = ((r.get("claims") or {}).get(claim.id) or {}).get("dataset") or {}
        if ds and ds != r.get("dataset"):
            names.add(f"{ds.get('name')} ({ds.get('provenance')})")
    return f" [measured on {', '.join(sorted(names))}]" if names else ""


def _cost(recs: list[dict[str, Any]]) -> str:
    total = sum((r.get("wall_s") or 0) * max(1, _gpus(r)) for r in recs)
    shas = sorted({str((r.get("env") or {}).get("git_sha", "unknown"))[:10] for r in recs})
    dirty = any((r.get("env") or {}).get("git_dirty") for r in recs)
    devices = sorted({_device(r.get("env") or {}) for r in recs})
    codes = sorted({str((r.get("env") or {}).get("code_hash", "none")) for r in recs})
    return (f"cost {fmt(total)} device-seconds over {len(recs)} runs on {', '.join(devices)}; "
            f"git {', '.join(shas)}{' (dirty tree)' if dirty else ''}; code {', '.join(codes)}")


def _device(env: dict[str, Any]) -> str:
    """The device a record names, with the CPU model, its kernels' instruction set and torch's thread count where
    the record carries them (records since these fields exist): float results differ between machines."""
    dev = str(env.get("device", "?"))
    if not env.get("cpu"):  # records made before these fields existed: `suite verify` says whether they reproduce
        return f"{dev} [CPU, kernels and threads not recorded]"
    threads = env.get("torch_threads")
    return f"{dev} [{env['cpu']}, {env.get('cpu_capability') or '?'}, {threads} torch thread{'s' * (threads != 1)}]"


def _gpus(rec: dict[str, Any]) -> int:
    return 1 if str((rec.get("env") or {}).get("device", "")).startswith(("NVIDIA", "Tesla", "AMD")) else 0


def _plot(repro: registry.Reproduction, g: Group, out_dir: Path) -> list[str]:
    """One PNG per declared plot and group (keyed by scale and config hash, so groups never
    overwrite each other); rewritten only when its bytes change."""
    if not repro.plots:
        return []
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = []
    for p in repro.plots:
        series = []
        for y in p.ys:
            pts: dict[float, list[float]] = defaultdict(list)
            prefix = f"{y}@{p.x}="
            for r in g.recs:
                for k, v in r["metrics"].items():
                    if k.startswith(prefix) and v is not None:
                        try:
                            pts[float(k[len(prefix):])].append(v)
                        except ValueError:
                            continue
            if pts:
                series.append((y, pts))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for y, pts in series:
            xs = sorted(pts)
            stats = [mean_std(pts[x]) for x in xs]
            ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", label=y, capsize=2)
        ax.set_xlabel(p.x)
        ax.set_ylabel(p.ylabel or "value")
        ax.set_title(p.title or p.name, fontsize=9)
        if p.logx:
            ax.set_xscale("log")
        if p.logy:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        name = f"{repro.slug}-{p.name}-{g.scale}-{g.config_hash}.png"
        path = out_dir / PLOTS / name
        if not (path.exists() and path.read_bytes() == buf.getvalue()):
            atomic_write_bytes(path, buf.getvalue())
        links.append(f"![{p.name} ({g.scale}, {g.config_hash})]({PLOTS}/{name})")
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


HEADER = ["claim", "kind", "statement", "metric", "ours (mean ± std)", "compared with", "paper", "Δ vs paper",
          "verdict", "teeth (small)"]
PREAMBLE = ("Scales: `smoke` (seconds, CPU), `small` (minutes, CPU), `full` (the paper's protocol). "
            "Provenance: `paper` (the paper's data), `paper-subset` (a real subset of it), `stand-in` "
            "(bundled or generated data). Claims are of two kinds: `paper` restates a result of the paper "
            "and counts; `check` is a mechanism or invariant, counted as \"mechanics verified\". Each paper "
            "claim names a broken variant (its teeth) that must make it fail; the teeth column says whether "
            "it did at small scale, on the seeds in brackets, each read against the method's run of that seed "
            "(a failure on one seed alone that lies within the method's own seed spread, less than "
            f"{teeth.SPREAD_Z:g} of its seed standard deviations below its mean margin, is weak evidence). "
            "Records made by older code than the reproduction's current code are stale: shown, "
            "labelled, never counted. The paper's number stands beside ours for reference; Δ is shown only "
            "for a `full` run on the paper's own data.")


def _group_heading(g: Group) -> str:
    seeds = ",".join(str(r["seed"]) for r in g.recs)
    notes = []
    parts = g.recs[0].get("assembled_from")
    if parts:
        notes.append(f"assembled from {len(parts)} jobs per seed (configs {', '.join(f'`{h}`' for h in parts)})")
    if g.stale:
        notes.append("**stale**: recorded by older code (not counted; rerun to refresh)")
    if g.job:
        notes.append(f"full job `{g.job}`")
    if g.teeth:
        notes.append(f"teeth run of the broken variant `{g.teeth}`")
    elif not g.current:
        notes.append(f"not the current `{g.scale}` preset (an older or overridden config)")
    note = "".join(f" · {n}" for n in notes)
    return f"### {g.scale} · data `{g.dataset}` ({g.provenance}) · config `{g.config_hash}` · seeds {seeds}{note}"


def _teeth_summary(repro: registry.Reproduction, recs: list[dict[str, Any]]) -> str:
    paper = [c for c in repro.claims if c.kind == "paper"]
    if not paper:
        return "—"
    toothless = sum(not c.teeth for c in paper)  # declared no_teeth (e.g. full-scale-only claims)
    paper = [c for c in paper if c.teeth]
    if not paper:
        return f"— ({toothless} without teeth)"
    said = [teeth_of(repro, c, recs).status for c in paper]
    bite, weak, defects = said.count(teeth.OK), said.count(teeth.WEAK), said.count(teeth.DEFECT)
    unrun = said.count("not run")
    return (f"{bite}/{len(paper)} fail as they should" + (f", {weak} within seed noise" if weak else "")
            + (f", **{defects} still hold**" if defects else "")
            + (f", {unrun} not run" if unrun else "") + (f"; {toothless} without teeth" if toothless else ""))


def render_track(track: str, by_slug: dict[str, list[dict[str, Any]]], out_dir: Path,
                 generated_by: str = "suite publish") -> str:
    lines = [f"# Leaderboard: track `{track}`", "",
             f"Generated by `{generated_by}` from the records in [records/](records/); do not edit by hand.", "",
             PREAMBLE, ""]
    summary = []
    beside_paper = []  # every paper claim with the paper's figure or statement, our reported value beside it
    sections = []
    for repro in registry.by_track(track):
        recs = by_slug.get(repro.slug, [])
        groups = _ranked(repro, recs)
        best = next((g for g in groups if g.counted), None)
        n_paper = sum(c.kind == "paper" for c in repro.claims)
        if best is not None:
            expected = [c for c in repro.claims if c.kind == "paper" and best.scale in c.scales]
            groups_at = deciding(repro, recs, groups)
            decides = {c.id: (best if best.scale != "full" else claim_group(c, groups_at, "full")) for c in expected}
            held = sum(_holds(c, g.recs) for c in expected if (g := decides[c.id]) is not None)
            summary.append([f"[{repro.slug}](#{repro.slug})", repro.paper.title, best.scale,
                            f"{best.dataset} ({best.provenance})",
                            f"{held}/{len(expected)}" if expected else
                            ("— (checks only)" if not n_paper else f"— (none expected at {best.scale})"),
                            _teeth_summary(repro, recs), mechanics(repro, best)])
            for c in (c for c in repro.claims if c.kind == "paper" and (c.paper is not None or c.paper_note)):
                g = decides.get(c.id, best) or best
                m, sd, n = mean_std([r["metrics"].get(c.metric) for r in g.recs])
                ours = f"{fmt(m)} ± {fmt(sd)} (n={n})" if n else "—"
                paper = " ".join(x for x in (fmt(c.paper) if c.paper is not None else "",
                                             f"({c.paper_note})" if c.paper_note else "") if x)
                beside_paper.append([f"[{repro.slug}](#{repro.slug})", f"`{c.id}`", f"`{c.metric}`", ours,
                                     f"{g.scale}, {g.provenance}", paper, _verdict(c, g.recs)])
        else:
            why = "stale records only" if groups else "not run"
            summary.append([f"[{repro.slug}](#{repro.slug})" if groups else repro.slug, repro.paper.title, why,
                            "—", f"—/{n_paper}", _teeth_summary(repro, recs) if groups else "—", "—"])
        sec = [f"## {repro.slug}", "",
               f"**{repro.paper.title}** — {repro.paper.authors} ({repro.paper.venue} {repro.paper.year}). "
               + (f"[paper]({repro.paper.url}) " if repro.paper.url else "")
               + (f"· [official code]({repro.paper.code}) " if repro.paper.code else "· no official code ")
               + f"· [reproduction](../reproductions/{repro.slug}/README.md)", ""]
        if not groups:
            sec += ["No records yet: run `suite run " + repro.slug + " --scale small --seeds 0-2` then "
                    "`suite publish --scale small`.", ""]
        for g in groups:
            sec += [_group_heading(g), ""]
            sec.append(tabulate(_claim_rows(repro, g.scale, g.provenance, g.recs, recs if g is best else None),
                                headers=HEADER, tablefmt="github", disable_numparse=True))
            sec += ["", _cost(g.recs), ""]
            sec += _tables(repro, g.recs)
            if g.counted:
                sec += _plot(repro, g, out_dir)
            sec.append("")
        sections += sec
    lines.append(tabulate(summary, headers=["reproduction", "paper", "reported scale", "data",
                                            "paper claims holding (expected there, all seeds)",
                                            "teeth", "mechanics"],
                          tablefmt="github", disable_numparse=True))
    lines.append("")
    if beside_paper:
        lines += ["### Our numbers beside the paper's", "",
                  "Every paper claim that carries the paper's figure or statement; ours is the reported group "
                  "of each reproduction (its scale and data say how comparable it is).", "",
                  tabulate(beside_paper, headers=["reproduction", "claim", "metric", "ours (mean ± std)",
                                                  "our scale, data", "paper (figure or statement)", "verdict"],
                           tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines + sections).rstrip() + "\n"


def _teeth_census(repros: dict[str, registry.Reproduction], by_slug: dict[str, list[dict[str, Any]]]) -> str:
    """One sentence: what the teeth of every paper claim that names a broken variant say, and on how many seeds."""
    said = [teeth_of(r, c, by_slug.get(slug, [])) for slug, r in repros.items() for c in r.claims
            if c.kind == "paper" and c.teeth]
    count = {k: sum(v.status == k for v in said) for k in (teeth.OK, teeth.WEAK, teeth.DEFECT, teeth.NO_EVIDENCE)}
    several = sum(v.status == teeth.OK and len(v.seeds) > 1 for v in said)
    rest = len(said) - sum(count.values())

    def n(k: str, one: str, many: str) -> str:
        return f"{count[k]} {one if count[k] == 1 else many}"
    return (f"Teeth: of the {len(said)} paper claims that name a broken variant, "
            f"{n(teeth.OK, 'fails', 'fail')} under it as expected ({several} read on several seeds, each against "
            f"the method's run of that seed), {n(teeth.WEAK, 'fails', 'fail')} on one seed alone within the method's "
            f"seed spread (weak evidence), {n(teeth.DEFECT, 'still holds', 'still hold')} under it on some seed "
            f"(a defect of those teeth), {n(teeth.NO_EVIDENCE, 'fails', 'fail')} where the method fails too (no "
            f"evidence either way)" + (f", {rest} not run or failed to run" if rest else "") + ".")


def render_index(by_slug: dict[str, list[dict[str, Any]]], generated_by: str = "suite publish") -> str:
    repros = registry.discover()
    lines = ["# Leaderboards", "",
             f"Generated by `{generated_by}` from the records in [records/](records/). One page per track. "
             "The claims matrix lists every paper claim (kind `paper`) with its verdict at each scale "
             "(all seeds of the reported group must hold: the current preset's config, current code) and "
             "whether its broken variant makes it fail (teeth); each reproduction's mechanism checks "
             "(kind `check`) are one \"mechanics\" row.", ""]
    current = [r for slug, recs in by_slug.items() if slug in repros for r in recs
               if not r.get("assembled_from") and not is_stale(repros[slug], r)]
    named = sum(bool((r.get("env") or {}).get("cpu")) for r in current)
    lines += [f"Reproducibility: each record names the code, config and seed that made it and, where recorded "
              f"({named} of the {len(current)} records of current code), the CPU, kernel instruction set, torch "
              "threads and library versions. `suite verify <slug>` reruns a published small seed-0 record on "
              "your machine and says whether every non-timing metric comes out identical: with the same code and "
              "seed another CPU or library version can differ in the last bits, and training can amplify that.",
              "", _teeth_census(repros, by_slug), "", "## Tracks", ""]
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
        groups_at = deciding(repro, recs)
        best = {scale: groups_at.get((scale, None)) for scale in SCALES}
        for claim in (c for c in repro.claims if c.kind == "paper"):
            decide = {s: claim_group(claim, groups_at, s) for s in SCALES}
            cells = [_verdict(claim, decide[s].recs) if decide[s] else "—" for s in SCALES]
            rows.append([f"[{slug}]({repro.track}.md#{slug})", f"`{claim.id}`", *cells,
                         teeth_verdict(repro, claim, recs)])
        rows.append([f"[{slug}]({repro.track}.md#{slug})", "mechanics (checks)",
                     *[mechanics(repro, best[s]) for s in SCALES], ""])
    lines.append(tabulate(rows, headers=["reproduction", "claim", *SCALES, "teeth (small)"],
                          tablefmt="github", disable_numparse=True))
    return "\n".join(lines).rstrip() + "\n"


def with_assembled(by_slug: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``by_slug`` plus the records :func:`assemble` merges from jobs (what the pages count)."""
    repros = registry.discover()
    return {slug: recs + (assemble(repros[slug], recs) if slug in repros else []) for slug, recs in by_slug.items()}


def render(out_dir: Path, by_slug: dict[str, list[dict[str, Any]]] | None = None,
           generated_by: str = "suite publish") -> list[Path]:
    """Write every track page and the index into ``out_dir`` from ``by_slug`` (default: the
    records in ``out_dir/records``); returns the pages written."""
    out_dir = Path(out_dir)
    by_slug = with_assembled(collect(out_dir / RECORDS) if by_slug is None else by_slug)
    written = []
    for track in registry.tracks():
        written.append(atomic_write_text(out_dir / f"{track}.md",
                                         render_track(track, by_slug, out_dir, generated_by)))
    written.append(atomic_write_text(out_dir / "README.md", render_index(by_slug, generated_by)))
    _prune_plots(out_dir, written)
    return written


def _prune_plots(out_dir: Path, pages: list[Path]) -> None:
    """Delete plot files no page links to (older groups, interrupted writes' temp files)."""
    folder = out_dir / PLOTS
    if not folder.is_dir():
        return
    linked = set()
    for page in pages:
        linked.update(m.split("/", 1)[1] for m in re.findall(r"\]\((plots/[^)]+)\)", page.read_text()))
    for f in folder.iterdir():
        if f.is_file() and f.name not in linked:
            f.unlink()


def local(results_root: Path, out_dir: Path) -> tuple[int, list[Path]]:
    """``suite leaderboard``: the user's own records rendered into ``out_dir`` (inside the results
    root by default). Writes no records anywhere and never touches the published ``leaderboards/``."""
    by_slug = collect(results_root)
    return sum(map(len, by_slug.values())), render(out_dir, by_slug, "suite leaderboard")


def build(results_root: Path, out_dir: Path) -> tuple[int, list[Path]]:
    """Ingest then render ``out_dir`` (what ``suite publish`` does after its checks)."""
    added = ingest(results_root, out_dir) if Path(results_root).exists() else 0
    return added, render(out_dir)
