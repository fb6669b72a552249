"""Run one (reproduction, scale, seed, overrides) and store its result record.

The run folder is content-addressed: ``<results>/<slug>/<scale>/<confighash>-s<seed>/``.
``result.json`` is written atomically and only on success; a failure writes ``error.json`` with
the traceback and returns a record with ``status: failed`` (other runs go on). A run whose
``result.json`` exists is skipped unless ``force``. A dry run builds the pipeline and writes nothing.

A run whose resources declare ``processes > 1`` (``Resources(processes=...)``, or ``--processes``) runs as that many
ranks of one ``torch.distributed`` group (:mod:`suite.distributed`): here the runner spawns them itself; in a
Slurm job they are the job's tasks (:class:`suite.executors.RunJob`). Every rank runs ``repro.run(cfg, ctx)``.
Rank 0 owns the run folder: the lock, the reuse decision (broadcast to the others, so that every rank takes the
same branch), ``running.json``, ``log.txt``, the record; rank ``r > 0`` runs in ``<folder>/rank<r>/`` (its log,
its checkpoints, its ``error.json``), takes no lock and writes no record. The record's ``env.world_size`` says
how many ranks made it. A dry run and a rehearsal run as one process (world 1).
"""
from __future__ import annotations

import contextlib

import json
import os
import random
import resource
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from suite import config as config_mod
from suite import distributed, environment, registry
from suite.context import RunContext, default_data_root
from suite.errors import SuiteError
from suite.io import atomic_write_json, jsonable
from suite.spec import Outcome

SCHEMA = 1
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
JOBS_FILE = "jobs.json"
RUNNING_FILE = "running.json"  # pid, host, start of a run in progress (`suite status` reads it)
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class RunSpec:
    """One run: which reproduction, at which scale, with which seed and config overrides."""

    slug: str
    scale: str
    seed: int
    overrides: tuple[str, ...] = ()


def default_results_root() -> Path:
    return Path(os.environ.get("SUITE_RESULTS", "results"))


def resolve(spec: RunSpec) -> tuple[registry.Reproduction, Any, str]:
    repro = registry.get(spec.slug)
    cfg = config_mod.resolve(repro, spec.scale, spec.overrides)
    return repro, cfg, config_mod.config_hash(repro.slug, cfg)


def run_dir(spec: RunSpec, results_root: Path) -> Path:
    _, _, h = resolve(spec)
    return Path(results_root) / spec.slug / spec.scale / f"{h}-s{spec.seed}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _peak_mem_mb(dev: torch.device) -> float:
    """Peak resident memory of this process (ru_maxrss), or peak CUDA allocation on a GPU."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reusable(result_path: Path, repro: registry.Reproduction, quiet: bool = False) -> dict[str, Any] | None:
    """The stored record if it can stand for this run: status ok and produced by the current code
    (same code hash). A record of older code is stale: the run is redone and the record replaced."""
    from suite import store

    done = store.read_record(result_path, quiet=quiet)
    if done is None or done.get("status") != "ok":
        return None
    stored = (done.get("env") or {}).get("code_hash")
    if stored != environment.code_hash(repro.module):
        if not quiet:
            store.warn(str(result_path), f"stale (made by code {stored}, the code is now "
                                         f"{environment.code_hash(repro.module)}); running it again")
        return None
    return done


def declared_processes(spec: RunSpec) -> int:
    """The ranks a run declares (its ``Resources.processes`` for the scale, job or part), 1 when undeclared."""
    declared = registry.get(spec.slug).declared_resources(spec.scale, spec.overrides)
    return declared.processes if declared is not None else 1


def is_done(spec: RunSpec, results_root: Path) -> bool:
    """Whether ``spec`` has a record that a rerun would return instead of running (ok, current code)."""
    path = run_dir(spec, Path(results_root)) / RESULT_FILE
    return path.exists() and _reusable(path, registry.get(spec.slug), quiet=True) is not None


def _jobs(folder: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((folder / JOBS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def execute(spec: RunSpec, results_root: Path | None = None, *, device: str | None = None,
            force: bool = False, data_root: Path | None = None, show_progress: bool = False,
            dry_run: bool = False, rehearse: bool = False, processes: int | None = None) -> dict[str, Any]:
    """Run ``spec`` and return its result record (see DESIGN.md for the schema).

    ``rehearse``: run the full-scale path on fixtures with the budgets cut (:mod:`suite.rehearsal`);
    the record is marked ``rehearsal`` and stored under ``<results>/<slug>/rehearsal/``.
    ``processes``: ranks of the run (default: the reproduction's declared ``Resources.processes``); more than one
    spawns them here (see the module docstring). A process whose environment already holds a rendezvous
    (``WORLD_SIZE > 1``: a spawned rank, a Slurm task, torchrun) runs as one rank of that group.

    Raises :class:`suite.errors.SuiteError` for bad input (unknown name, key, scale or device);
    a failure inside the reproduction is caught, stored in ``error.json`` and returned as a
    record with ``status: failed``.
    """
    if rehearse:
        return _rehearse(spec, results_root, device, show_progress)
    repro, cfg, h = resolve(spec)
    dev = environment.pick_device(device)
    root = Path(results_root) if results_root is not None else default_results_root()
    folder = root / spec.slug / spec.scale / f"{h}-s{spec.seed}"
    data_root = Path(data_root) if data_root else default_data_root()

    if dry_run:
        tmp = Path(tempfile.mkdtemp(prefix=f"suite-dry-{spec.slug}-"))
        try:
            ctx = RunContext(scale=spec.scale, seed=spec.seed, device=dev, run_dir=tmp,
                             data_root=data_root, dry_run=True, show_progress=show_progress)
            seed_everything(spec.seed)
            repro.run(cfg, ctx)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {"reproduction": spec.slug, "scale": spec.scale, "seed": spec.seed,
                "config": config_mod.canonical(cfg), "config_hash": h, "status": "dry-run"}

    if distributed.env_world_size() > 1:  # this process is one rank of a distributed run
        return _execute_rank(spec, repro, cfg, h, device, folder, data_root, show_progress, force)
    procs = declared_processes(spec) if processes is None else processes
    if procs < 1:
        raise SuiteError(f"--processes must be >= 1, got {procs}")
    if dev.type == "cuda" and procs > torch.cuda.device_count():
        raise SuiteError(f"{spec.slug} runs as {procs} processes, one per GPU, but this machine has "
                         f"{torch.cuda.device_count()}; pass --processes {torch.cuda.device_count()} or run on Slurm")

    result_path = folder / RESULT_FILE
    if result_path.exists() and not force:
        done = _reusable(result_path, repro)  # a corrupt or stale record is redone, not fatal
        if done is not None:
            return done
    if procs > 1:
        return _launch(spec, repro, root, folder, procs, device=device, force=force, data_root=data_root,
                       show_progress=show_progress)

    folder.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(folder / LOCK_FILE, "a") as lock:
        # One process per run folder: a second `suite run` of the same run waits here, then finds
        # the first one's record instead of computing it twice.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result_path.exists() and not force:
            done = _reusable(result_path, repro, quiet=True)
            if done is not None:
                return done
        return _execute_locked(spec, repro, cfg, h, dev, folder, data_root, show_progress)


# --------------------------------------------------------------------------- distributed runs

def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the rendezvous of ranks spawned on this machine)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(spec: RunSpec, repro: registry.Reproduction, root: Path, folder: Path, procs: int, *,
            device: str | None, force: bool, data_root: Path | None, show_progress: bool) -> dict[str, Any]:
    """Run ``spec`` as ``procs`` ranks on this machine (torch.multiprocessing, spawn, a free port on 127.0.0.1)
    and return rank 0's record. A rank that dies or raises makes the others stop (torch's process context
    terminates them) and the run fail: rank 0's ``error.json`` holds its error when rank 0 could not write it."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    with tempfile.TemporaryDirectory(prefix="suite-ranks-") as tmp:
        reply = Path(tmp) / "rank0.json"
        pctx = mp.start_processes(
            _rank_main, args=(procs, free_port(), spec, str(root), _portable(repro), device, force,
                              str(data_root) if data_root else None, show_progress, str(reply)),
            nprocs=procs, start_method="spawn", join=False)
        failure: Exception | None = None
        try:
            while not pctx.join():
                pass
        except ProcessException as exc:  # a rank raised or died; join() has terminated the others
            failure = exc
        except BaseException:  # Ctrl-C: stop every rank, then let the CLI report it
            for p in pctx.processes:
                if p.is_alive():
                    p.terminate()
            for p in pctx.processes:
                p.join(30)
            raise
        rec = json.loads(reply.read_text()) if reply.exists() else None
    if rec is not None and "suite_error" in rec:  # bad input found inside run: exit 2, as in one process
        raise SuiteError(rec["suite_error"])
    if rec is not None:  # rank 0's record; an ok one waited at the end of the run for every rank
        if failure is not None and rec.get("status") == "ok":
            import logging

            logging.getLogger("suite").warning("%s: a rank exited with an error after the run finished (%s)",
                                               spec.slug, str(failure).strip().splitlines()[-1])
        return rec
    # rank 0 was stopped before it could write its record (another rank failed first): write the failure
    bad = getattr(failure, "error_index", "?")
    text = str(failure).strip() or type(failure).__name__
    return _write_launch_failure(spec, repro, folder, procs, device,
                                 f"rank {bad} of {procs} failed: {text.splitlines()[-1]}", text)


def _portable(repro: registry.Reproduction) -> registry.Reproduction | None:
    """What a spawned rank needs to find the reproduction: nothing for one of the ``reproductions`` package (the
    rank discovers it), the object itself for one registered at run time (a test's, a plugin's)."""
    return None if repro.module.startswith("reproductions.") else repro


def _write_launch_failure(spec: RunSpec, repro: registry.Reproduction, folder: Path, procs: int,
                          device: str | None, error: str, trace: str) -> dict[str, Any]:
    import fcntl

    _, cfg, h = resolve(spec)
    env = environment.capture(environment.pick_device(device))
    env.update(code_hash=environment.code_hash(repro.module), world_size=procs)
    record = {"schema": SCHEMA, "reproduction": spec.slug, "scale": spec.scale, "seed": spec.seed,
              "overrides": list(spec.overrides), "config": config_mod.canonical(cfg), "config_hash": h,
              "metrics": {}, "claims": {}, "dataset": None, "env": env,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": None,
              "peak_mem_mb": None, "status": "failed", "error": error, "traceback": trace,
              "rank_errors": _rank_errors(folder)}
    if record["rank_errors"]:
        record["error"] = "; ".join(f"{k}: {v}" for k, v in record["rank_errors"].items()) + f" ({error})"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = jsonable(record)
        atomic_write_json(folder / ERROR_FILE, record)
        (folder / RUNNING_FILE).unlink(missing_ok=True)
    return record


def _rank_main(local: int, world: int, port: int, spec: RunSpec, root: str, repro: registry.Reproduction | None,
               device: str | None, force: bool, data_root: str | None, show_progress: bool, reply: str) -> None:
    """One spawned rank: the rendezvous environment, then the same :func:`execute` as any run. Rank 0 hands its
    record to the launcher through ``reply``; a failed rank exits non-zero so that the launcher stops the rest."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(local), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if repro is not None:  # registered at run time (tests, plugins): bring it along, without discovering every
        registry.add(repro)  # reproduction (seconds of imports per rank)
    try:
        rec = execute(spec, Path(root), device=device, force=force, data_root=Path(data_root) if data_root else None,
                      show_progress=show_progress and local == 0)
    except SuiteError as exc:
        if local == 0:
            atomic_write_json(Path(reply), {"suite_error": str(exc)})
        raise
    if local == 0:
        atomic_write_json(Path(reply), rec)
    if rec.get("status") not in ("ok", "rehearsal"):
        raise SystemExit(1)


def _rank_errors(folder: Path) -> dict[str, str]:
    """The errors ranks > 0 left in ``<folder>/rank<r>/error.json``."""
    out = {}
    for path in sorted(folder.glob("rank*/" + ERROR_FILE)):
        try:
            out[path.parent.name] = json.loads(path.read_text()).get("error", "?")
        except (OSError, json.JSONDecodeError):
            out[path.parent.name] = "unreadable error.json"
    return out


def _execute_rank(spec: RunSpec, repro: registry.Reproduction, cfg: Any, h: str, device: str | None, folder: Path,
                  data_root: Path | None, show_progress: bool, force: bool) -> dict[str, Any]:
    """This process as one rank of a distributed run (the rendezvous is in the environment): join the group,
    let rank 0 decide under the folder lock whether the stored record stands, broadcast that decision, then
    run. Rank 0 returns the record; rank ``r > 0`` a short ``{"status", "rank"}`` (``error`` on failure)."""
    import fcntl

    dev = distributed.init(environment.pick_device(device))
    r, world = distributed.rank(), distributed.world_size()
    if r == 0:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result_path = folder / RESULT_FILE
            done = _reusable(result_path, repro, quiet=True) if result_path.exists() and not force else None
            distributed.broadcast(done)  # the same decision on every rank, or they part ways in a collective
            if done is not None:
                distributed.shutdown()
                return done
            rec = _execute_locked(spec, repro, cfg, h, dev, folder, data_root, show_progress, world=world)
    else:
        done = distributed.broadcast(None)
        if done is not None:
            distributed.shutdown()
            return done
        rec = _execute_other_rank(spec, repro, cfg, dev, folder / f"rank{r}", data_root)
    if rec.get("status") == "ok":  # after a failure a peer may be stuck in a collective: leave by exiting
        distributed.shutdown()
    return rec


def _execute_other_rank(spec: RunSpec, repro: registry.Reproduction, cfg: Any, dev: torch.device, rdir: Path,
                        data_root: Path | None) -> dict[str, Any]:
    """Rank ``r > 0``: ``repro.run`` in ``<folder>/rank<r>/`` (its log and checkpoints), then the end-of-run
    barrier that tells rank 0 every rank finished. A failure is stored in that folder's ``error.json`` (rank 0
    copies it into the run's error record) and returned."""
    r = distributed.rank()
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / ERROR_FILE).unlink(missing_ok=True)
    ctx = RunContext(scale=spec.scale, seed=spec.seed, device=dev, run_dir=rdir, data_root=data_root)
    seed_everything(spec.seed)
    threads = torch.get_num_threads()
    if spec.scale == "smoke":
        torch.set_num_threads(1)
    try:
        repro.run(cfg, ctx)
        distributed.barrier()
        return {"status": "ok", "rank": r}
    except SuiteError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded for rank 0's error record
        rec = {"status": "failed", "rank": r, "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()}
        atomic_write_json(rdir / ERROR_FILE, rec)
        return rec
    finally:
        torch.set_num_threads(threads)


def _execute_in_worker(spec: RunSpec, results_root: Path | None, threads: int, kwargs: dict[str, Any]
                       ) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return execute(spec, results_root, **kwargs)


def execute_many(specs: list[RunSpec], results_root: Path | None = None, *, jobs: int = 1,
                 **kwargs: Any) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """:func:`execute` each spec, yielding ``(spec, record)`` as runs finish. ``jobs > 1`` runs that
    many at once, each in a fresh process with ``cpu_count // jobs`` torch threads (runs write to
    separate folders; environment changes such as a rehearsal's private cache stay in their process).
    A :class:`SuiteError` raised inside a run stops the others and is re-raised."""
    if jobs < 1:
        raise SuiteError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(specs) <= 1:
        for spec in specs:
            yield spec, execute(spec, results_root, **kwargs)
        return
    import concurrent.futures as cf
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(specs)), max_tasks_per_child=1,
                                  mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_execute_in_worker, spec, results_root, threads, kwargs): spec for spec in specs}
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def rehearsal_spec(spec: RunSpec) -> RunSpec:
    """The full-scale spec with the reproduction's declared rehearsal budget cuts applied first."""
    from suite import rehearsal

    if spec.scale != "full":
        raise SuiteError(f"--rehearse runs the full-scale path; use --scale full (got --scale {spec.scale})")
    rehearsal.data_fixtures(spec.slug)  # a malformed [data], [unevaluated] or [job_budget] table exits 2
    rehearsal.excused(spec.slug)        # here, before any work
    cuts = rehearsal.job_budget(spec.slug)
    repro, cfg, _ = resolve(spec)
    extra = cuts.get(repro.job_of("full", config_mod.canonical(cfg)) or "", ())
    return RunSpec(spec.slug, "full", spec.seed, rehearsal.budget_overrides(spec.slug) + tuple(spec.overrides) + extra)


def full_runs(spec: RunSpec, rehearse: bool = False) -> list[RunSpec]:
    """The runs of ``spec``: at full scale without ``--set``, the preset and every declared job of the
    reproduction (a full protocol made of several configurations, ``jobs=`` of its registration), where
    a reproduction that declares an :class:`~suite.spec.Assembly` runs its preset as one job per part
    (s4d: one per LRA task, ``lra_tasks=<task>``; the leaderboard assembles them). A rehearsal keeps the
    preset whole, so that its record evaluates the claims that need every part. Otherwise ``spec`` alone."""
    if spec.scale != "full" or spec.overrides:
        return [spec]
    repro = registry.get(spec.slug)
    runs = [spec]
    if repro.assembly is not None and not rehearse:
        split = repro.assembly.split
        parts = config_mod.canonical(config_mod.resolve(repro, "full"))[split]
        runs = [RunSpec(spec.slug, spec.scale, spec.seed, (f"{split}={part}",)) for part in parts]
    return runs + [RunSpec(spec.slug, spec.scale, spec.seed, overrides) for overrides in repro.jobs.values()]


def _rehearse(spec: RunSpec, results_root: Path | None, device: str | None, show_progress: bool
              ) -> dict[str, Any]:
    """Fixtures from a dry run, then the full path twice in one folder (the second resumes from the
    first's checkpoints); see :mod:`suite.rehearsal`."""
    from suite import devicecheck, rehearsal

    spec = rehearsal_spec(spec)
    repro, cfg, h = resolve(spec)
    rehearsal.model_targets(spec.slug, cfg)  # a bad [models] declaration exits 2 before any work
    dev = environment.pick_device(device)
    # on a CPU the passes run on a simulated second device (cpu:1): a tensor left on the host, or a
    # .numpy() of a device tensor, raises here as it would on a GPU (suite/devicecheck.py)
    checked = dev.type == "cpu"
    run_dev = devicecheck.DEVICE if checked else dev
    guard = devicecheck.DeviceCheck if checked else contextlib.nullcontext
    root = Path(results_root) if results_root is not None else default_results_root()
    folder = root / spec.slug / "rehearsal" / f"{h}-s{spec.seed}"
    work = rehearsal.scratch()
    try:
        with rehearsal.environment(SUITE_CACHE=str(work / "cache")):
            empty = work / "no-data"
            empty.mkdir()
            ctx = RunContext(scale="full", seed=spec.seed, device=dev, run_dir=work / "dry-run",
                             data_root=empty, dry_run=True, show_progress=show_progress)
            seed_everything(spec.seed)
            repro.run(cfg, ctx)  # every loader writes its published-format fixture into the private cache
            data_root = rehearsal.gather_fixtures(work / "cache", work)
            rehearsal.write_data(spec.slug, data_root)
            rehearsal.write_models(spec.slug, cfg, data_root)
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            with guard():
                first = _execute_locked(spec, repro, cfg, h, run_dev, folder, data_root, show_progress,
                                        rehearsal=True)
            if first["status"] != "rehearsal":
                return first
            # the resume pass reads the first pass's checkpoints on the same (simulated) device
            with guard():
                second = _execute_locked(spec, repro, cfg, h, run_dev, folder, data_root, show_progress,
                                         rehearsal=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if second["status"] == "rehearsal":
        differ = rehearsal.differing_metrics(spec.slug, first["metrics"], second["metrics"])
        second.setdefault("notes", {})["device_check"] = (
            f"{run_dev} simulated on the CPU for both passes (suite/devicecheck.py)"
            if checked else "none (ran on the device itself)")
        # every rank's checkpoints: rank 0's in the folder, rank r's under rank<r>/ (suite/train.py names them)
        checkpoints = sorted(folder.rglob("checkpoint*.pt"))
        second["notes"]["rehearsal_resume"] = {
            "checkpoints_resumed": [p.relative_to(folder).as_posix() for p in checkpoints],
            "metrics_identical": not differ, "metrics_differing": differ[:20]}
        atomic_write_json(folder / RESULT_FILE, second)
        # the checkpoints have served (the resume pass read them): at full model sizes they weigh
        # gigabytes per rehearsal (bibench 3.5 GB), and a rehearsal of every reproduction filled CI's disk
        for p in checkpoints:
            p.unlink(missing_ok=True)
    return second


def _execute_locked(spec: RunSpec, repro: registry.Reproduction, cfg: Any, h: str, dev: torch.device,
                    folder: Path, data_root: Path | None, show_progress: bool, rehearsal: bool = False,
                    world: int = 1) -> dict[str, Any]:
    """The run itself, in one process or as rank 0 of ``world`` (which then waits at the end for every rank)."""
    result_path = folder / RESULT_FILE
    ctx = RunContext(scale=spec.scale, seed=spec.seed, device=dev, run_dir=folder,
                     data_root=data_root, show_progress=show_progress)
    env = environment.capture(dev)
    env["code_hash"] = environment.code_hash(repro.module)
    env["world_size"] = world
    jobs = _jobs(folder)
    if jobs:
        env["slurm_job_ids"] = [j.get("job_id") for j in jobs]
        env["requeues"] = max(len(jobs) - 1, 0)
    record: dict[str, Any] = {
        "schema": SCHEMA, "reproduction": spec.slug, "scale": spec.scale, "seed": spec.seed,
        "overrides": list(spec.overrides), "config": config_mod.canonical(cfg), "config_hash": h,
        "metrics": {}, "claims": {}, "dataset": None, "env": env,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": None, "peak_mem_mb": None, "status": "running", "error": None,
    }
    marker = {"pid": os.getpid(), "host": environment.socket.gethostname(), "started": record["started"]}
    atomic_write_json(folder / RUNNING_FILE, marker)
    seed_everything(spec.seed)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    threads = torch.get_num_threads()
    if spec.scale == "smoke":
        torch.set_num_threads(1)  # smoke is defined as seconds on one CPU core
    env["torch_threads"] = torch.get_num_threads()  # the count the run computes with
    t0 = time.perf_counter()
    try:
        outcome = repro.run(cfg, ctx)
        if world > 1:
            distributed.barrier()  # every rank finished its run (a failed rank never arrives: this raises)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"{spec.slug}.run must return suite.spec.Outcome, got {type(outcome).__name__}")
        metrics = jsonable(outcome.metrics)
        claims = {}
        job = repro.job_of(spec.scale, record["config"])
        for c in repro.claims:
            claims[c.id] = {**c.check(metrics, spec.scale, job), "kind": c.kind,
                            "dataset": outcome.dataset_of(c.metric).as_dict()}
        record.update(
            metrics=metrics,
            claims=claims,
            dataset=outcome.dataset.as_dict(),
            notes=jsonable({**ctx.notes, **outcome.notes}),
            status="ok",
        )
    except SuiteError:  # bad input found inside run (a ConfigError): exit 2, leave nothing behind
        torch.set_num_threads(threads)
        (folder / RUNNING_FILE).unlink(missing_ok=True)
        if not any(p.name not in ("log.txt", LOCK_FILE) for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    except KeyboardInterrupt:  # Ctrl-C: mark the run interrupted (the CLI exits 130)
        atomic_write_json(folder / RUNNING_FILE, {**marker, "interrupted": True})
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the reproduction is recorded
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        record["traceback"] = traceback.format_exc()
        if world > 1:  # a rank that failed first is often the cause of rank 0's error: name it
            record["rank_errors"] = _rank_errors(folder)
            if record["rank_errors"]:  # the failed rank's own error first, rank 0's (often a closed peer) after
                record["error"] = "; ".join(f"{k}: {v}" for k, v in record["rank_errors"].items()) + \
                    f" (rank0: {record['error']})"
    finally:
        torch.set_num_threads(threads)
    record["wall_s"] = round(time.perf_counter() - t0, 4)
    record["peak_mem_mb"] = round(_peak_mem_mb(dev), 1)
    record = jsonable(record)
    if rehearsal:
        from suite import rehearsal as rehearsal_mod

        record = rehearsal_mod.mark(record)
    if record["status"] in ("ok", "rehearsal"):
        atomic_write_json(result_path, record)
        (folder / ERROR_FILE).unlink(missing_ok=True)
    else:
        atomic_write_json(folder / ERROR_FILE, record)
    (folder / RUNNING_FILE).unlink(missing_ok=True)
    return record
