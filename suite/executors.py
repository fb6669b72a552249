"""Dispatch runs: ``inline`` (this process), ``local`` (submitit subprocesses) or ``slurm`` (submitit).

One entry point, :func:`submit`. Resources merge as *profile < the reproduction's resources for the
scale < CLI flags*. Runs of one submission that need the same resources go out as ONE job array
(``map_array``: one ``sbatch`` call), split at the profile's ``max_array_size`` with a pause between
arrays; ``max_parallel`` caps how many tasks of an array run at once.

Every job runs :class:`RunJob`, a submitit ``Checkpointable`` whose state is the run folder: on
USR2 (preemption or time limit) it requeues itself and the run resumes from the checkpoint the
training loop keeps in the run folder. Each job start appends ``{job_id, started, git_sha}`` to
``<run_dir>/jobs.json`` (the runner copies the ids and the requeue count into the record); a run
whose ``result.json`` exists is returned as is, never recomputed or counted twice.

:func:`submit` writes ``<run_dir>/submission.json`` (job id, git sha at submit, resources) and
returns as soon as the jobs are queued. ``suite status`` (:mod:`suite.status`) reads these files.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import logging
import math
import os
import socket
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import submitit
from submitit.core.utils import FailedJobError
from submitit.helpers import Checkpointable, DelayedSubmission

from suite import environment, registry, runner
from suite.errors import ConfigError, SuiteError, UnknownNameError
from suite.io import atomic_write_json
from suite.runner import RunSpec
from suite.spec import Resources

log = logging.getLogger("suite.executors")

EXECUTORS = ("inline", "local", "slurm")
SUBMISSION_FILE = "submission.json"
PROFILE_DIR = environment.REPO_ROOT / "slurm" / "profiles"


class SubmissionError(SuiteError):
    """The scheduler refused a submission (impossible resources, unknown partition, dirty tree)."""


# --------------------------------------------------------------------------- profiles

@dataclass(frozen=True)
class Profile:
    """A site profile (``slurm/profiles/<name>.toml``): where and how jobs go on one cluster."""

    name: str
    description: str = ""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()          # shell lines before the job (module load, venv activate)
    array_parallelism: int = 256          # tasks of one array running at once
    max_array_size: int = 1000            # the cluster's MaxArraySize - 1
    array_pause_s: float = 1.0            # pause between two arrays (sbatch socket timeouts)
    signal_delay_s: int = 90              # USR2 this long before the time limit
    max_num_timeout: int = 3              # requeues allowed after time-outs
    resources: Resources = field(default_factory=Resources)  # defaults below the reproduction's
    sbatch: Mapping[str, Any] = field(default_factory=dict)   # other sbatch flags, --key=value
    path: str = ""


_PROFILE_KEYS = {f.name for f in dataclasses.fields(Profile)} - {"name", "path"}


def profile_dirs() -> list[Path]:
    """``slurm/profiles/`` of the repository, then every folder in ``$SUITE_PROFILES``."""
    dirs = [PROFILE_DIR]
    dirs += [Path(p) for p in os.environ.get("SUITE_PROFILES", "").split(os.pathsep) if p]
    return dirs


def list_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")})


def load_profile(name: str) -> Profile:
    """Read profile ``name``; a later folder in :func:`profile_dirs` wins over an earlier one."""
    found = [d / f"{name}.toml" for d in profile_dirs() if (d / f"{name}.toml").is_file()]
    if not found:
        known = list_profiles()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown profile '{name}'; {hint}valid: {', '.join(known) or '(none)'} "
                               f"(add slurm/profiles/{name}.toml or a folder in $SUITE_PROFILES)")
    path = found[-1]
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML ({exc}); fix the file") from None
    unknown = sorted(set(raw) - _PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"profile {path}: unknown keys {unknown}; valid: {sorted(_PROFILE_KEYS)}")
    res_raw = raw.pop("resources", {})
    bad = sorted(set(res_raw) - {f.name for f in dataclasses.fields(Resources)})
    if bad:
        raise ConfigError(f"profile {path}: unknown [resources] keys {bad}; use cpus, gpus, mem_gb, time_min, "
                          "processes, nodes")
    for key in ("partition", "account", "qos", "constraint"):
        if raw.get(key) == "":
            raw[key] = None
    raw["setup"] = tuple(raw.get("setup", ()))
    try:
        return Profile(name=name, resources=Resources(**res_raw), path=str(path), **raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"profile {path}: {exc}; fix the file") from None


# --------------------------------------------------------------------------- resources

@dataclass(frozen=True)
class ResourceOverrides:
    """CLI flags (``--cpus --gpus --mem-gb --time-min --partition --processes --nodes``); ``None`` keeps the lower
    layer."""

    cpus: int | None = None
    gpus: int | None = None
    mem_gb: float | None = None
    time_min: float | None = None   # minutes; a fraction is allowed for local tests
    partition: str | None = None
    processes: int | None = None
    nodes: int | None = None


@dataclass(frozen=True)
class JobResources:
    """What one job of a group asks for (the grouping key of job arrays)."""

    cpus: int
    gpus: int
    mem_gb: float
    time_min: float
    partition: str | None
    processes: int = 1    # ranks of the run: Slurm tasks of the job (processes / nodes per node)
    nodes: int = 1        # machines of the job; cpus, gpus and mem_gb are per node


def merge_resources(profile: Profile | None, repro: Resources | None,
                    overrides: ResourceOverrides | None = None) -> JobResources:
    """profile < the reproduction's resources for the scale (when it declares them) < CLI flags."""
    base = profile.resources if profile is not None else Resources()
    layer = repro if repro is not None else base
    o = overrides or ResourceOverrides()
    out = JobResources(
        cpus=o.cpus if o.cpus is not None else layer.cpus,
        gpus=o.gpus if o.gpus is not None else layer.gpus,
        mem_gb=o.mem_gb if o.mem_gb is not None else layer.mem_gb,
        time_min=o.time_min if o.time_min is not None else layer.time_min,
        partition=o.partition if o.partition is not None else (profile.partition if profile else None),
        processes=o.processes if o.processes is not None else layer.processes,
        nodes=o.nodes if o.nodes is not None else layer.nodes,
    )
    if (out.cpus < 1 or out.gpus < 0 or out.mem_gb <= 0 or out.time_min <= 0 or out.processes < 1
            or out.nodes < 1):
        raise ConfigError(f"resources {out} are not positive; fix --cpus/--gpus/--mem-gb/--time-min/--processes/"
                          f"--nodes")
    if out.processes % out.nodes:
        raise ConfigError(f"resources {out}: {out.processes} processes do not split evenly over {out.nodes} nodes; "
                          f"pass --processes a multiple of --nodes")
    if out.gpus > 0 and out.processes // out.nodes > out.gpus:
        raise ConfigError(f"resources {out}: {out.processes // out.nodes} processes per node on {out.gpus} GPUs; a "
                          f"distributed run has one rank per GPU: lower --processes, raise --gpus or --nodes")
    return out


def resources_for(spec: RunSpec, profile: Profile | None, overrides: ResourceOverrides | None) -> JobResources:
    repro = registry.get(spec.slug)
    declared = repro.declared_resources(spec.scale, spec.overrides)  # a full job or assembly part may declare its own
    return merge_resources(profile, declared, overrides)


def submitit_params(kind: str, res: JobResources, profile: Profile | None = None, *,
                    max_parallel: int | None = None, name: str = "suite") -> dict[str, Any]:
    """The executor's ``update_parameters`` kwargs for ``res`` (the only place that names them)."""
    p = profile or Profile(name="default")
    if kind == "slurm":
        # a distributed run (processes > 1): one Slurm task per rank, the job's cpus split among them; every
        # task sees the node's gpus (rank r takes cuda:LOCAL_RANK, suite/distributed.py)
        params: dict[str, Any] = {
            "job_name": name,
            "time": max(1, math.ceil(res.time_min)),
            "cpus_per_task": max(1, res.cpus // (res.processes // res.nodes)),
            "mem": f"{int(res.mem_gb)}GB" if res.mem_gb == int(res.mem_gb) else f"{int(res.mem_gb * 1024)}MB",
            "signal_delay_s": p.signal_delay_s,
            "array_parallelism": max_parallel or p.array_parallelism,
            "stderr_to_stdout": True,
        }
        if res.gpus:
            params["gpus_per_node"] = res.gpus
        if res.processes > 1:  # submitit's SlurmExecutor spelling of --ntasks-per-node
            params["ntasks_per_node"] = res.processes // res.nodes
        if res.nodes > 1:  # the ranks of several machines meet through submitit's TorchDistributedEnvironment
            params["nodes"] = res.nodes
        for key, value in (("partition", res.partition), ("account", p.account), ("qos", p.qos),
                           ("constraint", p.constraint)):
            if value:
                params[key] = value
        if p.setup:
            params["setup"] = list(p.setup)
        if p.sbatch:
            params["additional_parameters"] = dict(p.sbatch)
        return params
    if res.nodes > 1:
        raise ConfigError(f"the {kind} executor runs on this machine only, and these runs ask for {res.nodes} nodes; "
                          f"submit to Slurm (--executor slurm) or pass --nodes 1")
    if kind == "local":
        params = {"timeout_min": res.time_min, "signal_delay_s": p.signal_delay_s,
                  "gpus_per_node": res.gpus, "stderr_to_stdout": True}
        if res.processes > 1:
            params["tasks_per_node"] = res.processes
        if p.setup:
            params["setup"] = list(p.setup)
        return params
    if kind == "debug":
        return {}
    raise UnknownNameError(f"unknown executor '{kind}'; valid: {', '.join(EXECUTORS)}")


# --------------------------------------------------------------------------- the job

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _job_id() -> str | None:
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job
        return os.environ.get("SLURM_JOB_ID")


def _num_tasks() -> int:
    """Tasks of this job (the ranks of a distributed run), 1 outside a submitit job."""
    try:
        return int(submitit.JobEnvironment().num_tasks)
    except RuntimeError:
        return 1


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def register_extra(target: str) -> None:
    """Import ``module:attr`` naming a :class:`~suite.registry.Reproduction` and register it
    (reproductions that live outside the ``reproductions`` package, e.g. in plugins or tests)."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    rep = getattr(obj, attr) if attr else None
    if rep is None:
        return
    if rep.slug in registry.discover():
        return
    registry.reproduction(track=rep.track, paper=rep.paper, config=rep.config, scales=rep.scales,
                          claims=rep.claims, resources=rep.resources, plots=rep.plots,
                          slug=rep.slug)(rep.run)




class RunJob(Checkpointable):
    """The callable every job runs: ``RunJob(root)(spec)`` -> the run's result record.

    It holds only paths and names, so its pickle stays small and valid across requeues; the
    training state lives in the run folder (``checkpoint.pt``, written atomically by the loop).
    A failed run raises so that the job ends non-zero (Slurm state FAILED); ``error.json`` has
    the traceback.

    A job of several tasks (``Resources.processes > 1``: ``--ntasks-per-node``) is a distributed run: every task
    is a rank, whose rank and world come from submitit's ``JobEnvironment`` and are exported as the env://
    rendezvous (``TorchDistributedEnvironment``) before :func:`suite.runner.execute` joins the group; rank 0
    keeps ``jobs.json`` and the record (:mod:`suite.runner`).
    """

    def __init__(self, results_root: str | Path, data_root: str | Path | None = None,
                 extra: Sequence[str] = (), device: str | None = None) -> None:
        self.results_root = str(results_root)
        self.data_root = str(data_root) if data_root else None
        self.extra = tuple(extra)
        self.device = device

    def __call__(self, spec: RunSpec) -> dict[str, Any]:
        for target in self.extra:
            register_extra(target)
        root = Path(self.results_root)
        folder = runner.run_dir(spec, root)
        done = folder / runner.RESULT_FILE
        tasks, rank = _num_tasks(), 0
        if tasks > 1:  # one task per rank: export the rendezvous (the device is cuda:LOCAL_RANK, all GPUs visible)
            from submitit.helpers import TorchDistributedEnvironment

            rank = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True).rank
        elif done.exists():  # finished earlier (e.g. the signal came after the record was written)
            return json.loads(done.read_text())
        if rank == 0 and not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            jobs = _read_json(folder / runner.JOBS_FILE, [])
            jobs.append({"job_id": _job_id(), "started": _now(), "host": socket.gethostname(),
                         "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                         "git_sha": environment.git_state()["git_sha"]})
            atomic_write_json(folder / runner.JOBS_FILE, jobs)
        # the job's tasks are the ranks: a one-task job runs one process (never spawns ranks of its own);
        # with several, rank 0 decides the reuse of a stored record for all (suite/runner.py)
        record = runner.execute(spec, root, device=self.device, processes=1 if tasks == 1 else None,
                                data_root=Path(self.data_root) if self.data_root else None)
        if record.get("status") != "ok":
            raise RuntimeError(f"{spec.slug} {spec.scale} seed {spec.seed} failed: {record.get('error')} "
                               f"(traceback in {folder / runner.ERROR_FILE})")
        return record

    def checkpoint(self, spec: RunSpec) -> Any:
        """Requeue a fresh callable with the same spec; the run folder carries the state."""
        return DelayedSubmission(RunJob(self.results_root, self.data_root, self.extra, self.device), spec)


# --------------------------------------------------------------------------- submission

@dataclass
class Submitted:
    """One run of a submission: its folder, job id (``None`` when skipped) and resources."""

    spec: RunSpec
    run_dir: Path
    resources: JobResources | None
    job_id: str | None
    job: Any = None          # the submitit Job (None for inline runs and skipped runs)
    skipped: str = ""        # why it was not submitted ("done")


def _executor(kind: str, folder: Path, profile: Profile | None) -> Any:

    timeouts = profile.max_num_timeout if profile else 3
    if kind == "slurm":
        return submitit.SlurmExecutor(folder=folder, max_num_timeout=timeouts)
    if kind == "local":
        return submitit.LocalExecutor(folder=folder, max_num_timeout=timeouts)
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise UnknownNameError(f"unknown executor '{kind}'; valid: {', '.join(EXECUTORS)}")


def _sbatch_error(exc: Exception, res: JobResources) -> SubmissionError:
    text = " ".join(str(exc).split())
    reason = text
    for marker in ("sbatch: error:", "error:"):
        if marker in text:
            reason = text.split(marker)[-1].strip()
            break
    return SubmissionError(
        f"Slurm refused the job (cpus={res.cpus}, gpus={res.gpus}, mem={res.mem_gb} GB, "
        f"time={math.ceil(res.time_min)} min, partition={res.partition or 'default'}): {reason[:300]}; "
        f"lower --cpus/--gpus/--mem-gb/--time-min or pick another --partition/--profile")


def _archive(run_dir: Path) -> list[dict[str, Any]]:
    """Earlier submissions of this run (with the jobs they started); clears ``jobs.json`` so the
    runner counts requeues of the new submission only. Called before the new job is queued."""
    prev = _read_json(run_dir / SUBMISSION_FILE, None)
    history: list[dict[str, Any]] = []
    if prev:
        history = list(prev.pop("previous", []))
        prev["jobs"] = _read_json(run_dir / runner.JOBS_FILE, [])
        history.append(prev)
    (run_dir / runner.JOBS_FILE).unlink(missing_ok=True)
    return history


def _write_submission(sub: Submitted, kind: str, profile: Profile | None, git: Mapping[str, Any],
                      folder: Path, submitted: str, history: list[dict[str, Any]]) -> None:
    job_id = sub.job_id or ""
    record = {
        "job_id": job_id, "array_job_id": job_id.split("_")[0] if job_id else None,
        "executor": kind, "profile": profile.name if profile else None,
        "submitted": submitted, "host": socket.gethostname(), "submitit_folder": str(folder),
        "git_sha": git.get("git_sha"), "git_dirty": git.get("git_dirty"),
        "git_diff_hash": git.get("git_diff_hash"),
        "resources": dataclasses.asdict(sub.resources) if sub.resources else None,
        "spec": dataclasses.asdict(sub.spec), "previous": history,
    }
    atomic_write_json(sub.run_dir / SUBMISSION_FILE, record)


def submit_runs(specs: Sequence[RunSpec], *, executor: str = "slurm", profile: str | Profile | None = None,
                results_root: Path, overrides: ResourceOverrides | None = None,
                max_parallel: int | None = None, allow_dirty: bool = False, folder: Path | None = None,
                force: bool = False, data_root: Path | None = None, extra: Sequence[str] = (),
                device: str | None = None) -> list[Submitted]:
    """Queue ``specs`` and return one :class:`Submitted` per spec (see :func:`submit`)."""
    if executor not in EXECUTORS + ("debug",):
        raise UnknownNameError(f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}")
    prof = load_profile(profile) if isinstance(profile, str) else profile
    results_root = Path(results_root).resolve()
    for target in extra:
        register_extra(target)
    specs = list(dict.fromkeys(specs))
    out: list[Submitted] = []
    todo: list[Submitted] = []
    for spec in specs:
        rdir = runner.run_dir(spec, results_root)
        if not force and runner.is_done(spec, results_root):
            out.append(Submitted(spec, rdir, None, None, skipped="done"))
            continue
        sub = Submitted(spec, rdir, resources_for(spec, prof, overrides), None)
        out.append(sub)
        todo.append(sub)
    if not todo:
        return out
    if force:  # the job skips a run whose result exists, so --force removes the old record first
        for sub in todo:
            (sub.run_dir / runner.RESULT_FILE).unlink(missing_ok=True)

    if executor == "inline":
        for sub in todo:
            rec = runner.execute(sub.spec, results_root, device=device, data_root=data_root,
                                 processes=sub.resources.processes if sub.resources else None)
            sub.job_id = "inline"
            if rec.get("status") != "ok":
                log.warning("%s %s seed %d failed: %s", sub.spec.slug, sub.spec.scale, sub.spec.seed,
                            rec.get("error"))
        return out

    git = environment.git_state()
    if git.get("git_dirty") and not allow_dirty and executor != "debug":
        raise SubmissionError("the git tree has uncommitted changes, so the jobs could run code no commit "
                              "holds; commit them or pass --allow-dirty (the diff hash is then recorded)")
    log_folder = Path(folder) if folder else results_root / ".submitit"
    ex = _executor(executor, log_folder / "%j", prof)
    job = RunJob(results_root, data_root, extra, device)

    groups: dict[JobResources, list[Submitted]] = defaultdict(list)
    for sub in todo:
        assert sub.resources is not None
        groups[sub.resources].append(sub)
    chunk = max(1, prof.max_array_size if prof else 1000)
    if executor == "local" and max_parallel:
        chunk = min(chunk, max_parallel)  # local processes have no array throttle: run in waves
    pause = prof.array_pause_s if prof else 1.0
    first = True
    for res, subs in groups.items():
        slugs = sorted({s.spec.slug for s in subs})
        name = f"suite-{slugs[0]}" if len(slugs) == 1 else "suite"
        ex.update_parameters(**submitit_params(executor, res, prof, max_parallel=max_parallel, name=name))
        for start in range(0, len(subs), chunk):
            part = subs[start:start + chunk]
            if not first:
                if executor == "local" and max_parallel:
                    for prev in out:  # waves: wait for the previous one
                        if prev.job is not None:
                            prev.job.wait()
                time.sleep(pause)
            first = False
            histories = [_archive(s.run_dir) if s.run_dir.exists() else [] for s in part]
            submitted = _now()
            try:
                jobs = ex.map_array(job, [s.spec for s in part])
            except FailedJobError as exc:  # sbatch said no (impossible resources, bad partition)
                raise _sbatch_error(exc, res) from None
            for sub, j, hist in zip(part, jobs, histories):
                sub.job, sub.job_id = j, str(j.job_id)
                sub.run_dir.mkdir(parents=True, exist_ok=True)
                _write_submission(sub, executor, prof, git, log_folder, submitted, hist)
    return out


def plan(specs: Sequence[RunSpec], *, profile: str | Profile | None = None, results_root: Path,
         overrides: ResourceOverrides | None = None, force: bool = False) -> list[dict[str, Any]]:
    """What a submission would ask for, one row per resource group (the job arrays it would make):
    reproductions, jobs, cpus/gpus per job, the time limit per job, and the GPU- and CPU-hours those
    limits reserve (an upper bound: each reproduction's declared ``Resources`` for the scale). Runs
    already done are counted apart (``skipped``). Submits nothing."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    results_root = Path(results_root).resolve()
    groups: dict[JobResources, list[RunSpec]] = defaultdict(list)
    skipped: list[RunSpec] = []
    for spec in dict.fromkeys(specs):
        if not force and runner.is_done(spec, results_root):
            skipped.append(spec)
            continue
        groups[resources_for(spec, prof, overrides)].append(spec)
    rows = []
    for res, group in groups.items():
        hours = len(group) * res.time_min / 60 * res.nodes  # cpus, gpus and memory are per node
        rows.append({"reproductions": ", ".join(sorted({s.slug for s in group})), "jobs": len(group),
                     "cpus/job": res.cpus * res.nodes, "gpus/job": res.gpus * res.nodes,
                     "mem_gb/job": res.mem_gb * res.nodes, "time_min/job": res.time_min,
                     "partition": res.partition or "-",
                     "gpu_hours": round(hours * res.gpus, 2), "cpu_hours": round(hours * res.cpus, 2)})
    rows.sort(key=lambda r: (-r["gpu_hours"], -r["cpu_hours"], r["reproductions"]))
    if skipped:
        rows.append({"reproductions": f"(done, skipped: {len(skipped)} runs)", "jobs": 0, "cpus/job": "-",
                     "gpus/job": "-", "mem_gb/job": "-", "time_min/job": "-", "partition": "-",
                     "gpu_hours": 0.0, "cpu_hours": 0.0})
    return rows


def render_plan(rows: Sequence[Mapping[str, Any]]) -> str:
    """The plan as a table with a total row (GPU-hours are the reserved upper bound)."""
    from tabulate import tabulate

    total = {"reproductions": "TOTAL", "jobs": sum(r["jobs"] for r in rows),
             "gpu_hours": round(sum(r["gpu_hours"] for r in rows), 2),
             "cpu_hours": round(sum(r["cpu_hours"] for r in rows), 2)}
    cols = ["reproductions", "jobs", "cpus/job", "gpus/job", "mem_gb/job", "time_min/job", "partition",
            "gpu_hours", "cpu_hours"]
    table = [[r.get(c, "") for c in cols] for r in [*rows, total]]
    return (tabulate(table, headers=cols, tablefmt="github") + "\n(time limits are each reproduction's "
            "declared Resources for the scale: the hours are what the jobs reserve, an upper bound)")


def submit(specs: Sequence[RunSpec], *, executor: str = "slurm", profile: str | Profile | None = None,
           results_root: Path, overrides: ResourceOverrides | None = None, max_parallel: int | None = None,
           allow_dirty: bool = False, folder: Path | None = None, force: bool = False,
           data_root: Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    """Queue ``specs`` and return the job id of each queued run (``<array>_<index>`` on Slurm).

    Runs whose ``result.json`` exists are skipped (``force`` reruns them). ``inline`` runs them
    here and now; ``local``/``slurm`` return once the jobs are queued. A dirty git tree is refused
    for local/slurm unless ``allow_dirty``. Each queued run gets ``submission.json``.
    """
    subs = submit_runs(specs, executor=executor, profile=profile, results_root=results_root,
                       overrides=overrides, max_parallel=max_parallel, allow_dirty=allow_dirty,
                       folder=folder, force=force, data_root=data_root, extra=extra)
    for s in subs:
        if s.skipped == "done":
            log.warning("skipped %s %s seed %d: result exists in %s (use --force to rerun)",
                        s.spec.slug, s.spec.scale, s.spec.seed, s.run_dir)
    return [s.job_id for s in subs if s.job_id]


def array_ids(job_ids: Iterable[str]) -> list[str]:
    """The distinct array (or plain) job ids behind per-run ids like ``123_4``."""
    return list(dict.fromkeys(j.split("_")[0] for j in job_ids))


__all__ = ["plan", "render_plan", "EXECUTORS", "Profile", "ResourceOverrides", "JobResources", "RunJob", "Submitted",
           "SubmissionError", "load_profile", "list_profiles", "profile_dirs", "merge_resources",
           "resources_for", "submitit_params", "submit", "submit_runs", "array_ids", "register_extra"]
