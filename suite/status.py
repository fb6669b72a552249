"""``suite status``: the state of every run folder, read from disk (no head process needed).

States: ``not launched`` (folder without a submission or record, or an expected run without a
folder), ``queued``, ``running``, ``requeued`` (started, then put back in the queue), ``failed``,
``done``. Files decide first (``result.json`` = done; ``error.json`` newer than the submission =
failed); for submitted runs without a record, the scheduler is asked once per call: ``sacct``
(one call for all job ids), else ``squeue``; without either the state comes from the files alone
(a killed job then cannot be told from a running one). Accounting lags the controller: a job that
has started but that ``sacct`` still shows PENDING is asked of ``squeue`` (one more call, those
jobs only), so a fresh start is not read as a requeue. Local-executor jobs are checked by PID.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import pandas as pd

from suite import runner
from suite.executors import SUBMISSION_FILE

STATES = ("not launched", "queued", "running", "requeued", "interrupted", "failed", "corrupt", "done")
COLUMNS = ["reproduction", "scale", "seed", "config_hash", "state", "job_id", "requeues", "submitted",
           "started", "wall_s", "detail", "path"]

_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "SUSPENDED", "RESIZING"}
_REQUEUED = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED"}
_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "REVOKED", "SPECIAL_EXIT"}


def _read(path: Path) -> Any:
    """JSON content of ``path``; None when absent or unreadable (a folder, bytes, bad JSON)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


CORRUPT = object()


def _record(path: Path) -> Any:
    """A result/error record: None when absent, CORRUPT when present but not a valid record."""
    if not path.exists() and not path.is_symlink():
        return None
    from suite import store

    rec = store.read_record(path, quiet=True) if path.is_file() else None
    return CORRUPT if rec is None else rec


def _expand(job_id: str) -> list[str]:
    """``12_[0-3,7%2]`` (a pending array in sacct/squeue) -> ``12_0 .. 12_3, 12_7``."""
    m = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job_id)
    if not m:
        return [job_id]
    base, body = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in body.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out += [f"{base}_{i}" for i in range(int(lo), int(hi) + 1)]
        elif part:
            out.append(f"{base}_{part}")
    return out


def _parse(text: str) -> dict[str, str]:
    states: dict[str, str] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        jid, state = line.split("|", 1)
        for j in _expand(jid.strip()):
            states[j] = state.split()[0] if state.strip() else "UNKNOWN"
    return states


def scheduler_states(job_ids: Sequence[str], timeout: float = 20.0,
                     started: Collection[str] = ()) -> tuple[dict[str, str], str]:
    """Slurm states of ``job_ids`` (``123`` or ``123_4``) and the source (``sacct``/``squeue``/``none``).

    ``sacct`` is called at most once; if it fails, ``squeue`` once (a job missing from squeue has
    left the queue: ``GONE``). Jobs in ``started`` (their run wrote a start) that ``sacct`` still
    shows PENDING are asked of ``squeue`` once more: accounting is written after the controller
    starts a job, and only the controller tells a fresh start from a requeue."""
    if not job_ids:
        return {}, "none"
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", _bases(job_ids)],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode == 0:
            states = _parse(out.stdout)
            lagging = [j for j in job_ids if j in started and states.get(j) == "PENDING"]
            live = _squeue(lagging, timeout) if lagging else None
            if live:
                states.update({j: s for j, s in live.items() if s != "GONE"})
            return states, "sacct"
    except (OSError, subprocess.TimeoutExpired):
        pass
    live = _squeue(job_ids, timeout)
    return (live, "squeue") if live is not None else ({}, "none")


def _bases(job_ids: Sequence[str]) -> str:
    return ",".join(sorted({j.split("_")[0] for j in job_ids}))


def _squeue(job_ids: Sequence[str], timeout: float) -> dict[str, str] | None:
    """Live controller states of ``job_ids`` (``GONE`` when no longer queued); None if squeue fails."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", _bases(job_ids)],
                             capture_output=True, text=True, timeout=timeout)
        # squeue exits non-zero for ids it no longer knows: those jobs have left the queue
        states = _parse(out.stdout) if out.returncode == 0 else {}
        if out.returncode == 0 or "Invalid job id" in out.stderr:
            return {j: states.get(j, "GONE") for j in job_ids}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:  # a zombie has finished
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return True


def _ts(text: str | None) -> float:
    try:
        return datetime.fromisoformat(text).timestamp() if text else 0.0
    except ValueError:
        return 0.0


def _run_dirs(root: Path) -> Iterable[Path]:
    """Folders ``<root>/<slug>/<scale>/<hash>-s<seed>`` (hidden folders such as .submitit skipped)."""
    for slug in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for scale in sorted(p for p in slug.iterdir() if p.is_dir()):
            for run in sorted(p for p in scale.iterdir() if p.is_dir() and re.search(r"-s\d+$", p.name)):
                yield run


def collect(results_root: Path, expected: Sequence[runner.RunSpec] = ()) -> pd.DataFrame:
    """One row per run folder under ``results_root`` (plus ``expected`` runs that have none)."""
    root = Path(results_root)
    dirs = list(_run_dirs(root)) if root.is_dir() else []
    subs = {d: _read(d / SUBMISSION_FILE) for d in dirs}
    pending = [s["job_id"] for d, s in subs.items() if s and s.get("executor") == "slurm" and s.get("job_id")
               and not (d / runner.RESULT_FILE).exists()]
    # ask the scheduler before reading the records: a job that ends in between is then seen done
    started = {s["job_id"] for d, s in subs.items() if s and (d / runner.JOBS_FILE).exists()}
    sched, source = scheduler_states(pending, started=started)
    host = socket.gethostname()
    rows = [_row(d, subs[d], sched, source, host) for d in dirs]
    seen = {(r["reproduction"], r["scale"], r["seed"], r["config_hash"]) for r in rows}
    for spec in expected:
        h = runner.run_dir(spec, root).name.rsplit("-s", 1)[0]
        if (spec.slug, spec.scale, spec.seed, h) not in seen:
            rows.append({"reproduction": spec.slug, "scale": spec.scale, "seed": spec.seed, "config_hash": h,
                         "state": "not launched", "path": str(runner.run_dir(spec, root))})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["scheduler"] = source
    return df


def _row(d: Path, sub: dict[str, Any] | None, sched: dict[str, str], source: str, host: str) -> dict[str, Any]:
    h, _, seed = d.name.rpartition("-s")
    row: dict[str, Any] = {"reproduction": d.parent.parent.name, "scale": d.parent.name, "seed": int(seed),
                           "config_hash": h, "path": str(d), "detail": ""}
    jobs = _read(d / runner.JOBS_FILE) or []
    row["requeues"] = max(len(jobs) - 1, 0)
    row["started"] = jobs[-1].get("started") if jobs else None
    if sub:
        row["job_id"], row["submitted"] = sub.get("job_id"), sub.get("submitted")
    rec = _record(d / runner.RESULT_FILE)
    if rec is CORRUPT:
        row.update(state="corrupt", detail=f"{runner.RESULT_FILE} is not a valid record; rerun with --force")
        return row
    if rec is not None:
        env = rec.get("env") or {}
        row.update(state="done", started=rec.get("started"), wall_s=rec.get("wall_s"),
                   requeues=env.get("requeues", row["requeues"]))
        return row
    err = _record(d / runner.ERROR_FILE)
    if err is CORRUPT:
        err = None
    if err is not None and (not sub or _ts(err.get("started")) >= _ts(sub.get("submitted"))
                            or (d / runner.ERROR_FILE).stat().st_mtime >= _ts(sub.get("submitted"))):
        row.update(state="failed", started=err.get("started"), wall_s=err.get("wall_s"),
                   detail=str(err.get("error") or "")[:120])
        return row
    marker = _read(d / runner.RUNNING_FILE)
    if isinstance(marker, dict) and not sub:
        row["started"] = marker.get("started")
        if marker.get("interrupted"):
            row.update(state="interrupted", detail="stopped by Ctrl-C; rerun to redo it")
        elif marker.get("host") == host and not _pid_alive(str(marker.get("pid"))):
            row.update(state="interrupted", detail=f"process {marker.get('pid')} ended without a record (killed?)")
        else:
            row.update(state="running", detail=f"pid {marker.get('pid')} on {marker.get('host')}")
        return row
    if not sub:
        row["state"] = "running" if jobs else "not launched"
        return row
    kind, jid = sub.get("executor"), str(sub.get("job_id") or "")
    if kind == "local" and sub.get("host") == host:
        alive = _pid_alive(jid)
        row["state"] = ("running" if jobs else "queued") if alive else "failed"
        if not alive:
            row["detail"] = "local job process ended without a result"
        return row
    state = sched.get(jid)
    if kind != "slurm" or state is None:
        # no scheduler answer (no sacct/squeue, or accounting not yet aware): trust the files
        row["state"] = "running" if jobs else "queued"
        if kind == "slurm" and source == "none":
            row["detail"] = "no sacct/squeue: a killed job looks running"
        return row
    if state == "PENDING":
        row["state"] = "requeued" if jobs else "queued"
    elif state in _REQUEUED:
        row["state"] = "requeued"
    elif state in _RUNNING:
        row["state"] = "running"
    elif state in _FAILED:
        row.update(state="failed", detail=f"Slurm state {state}")
    elif state in ("COMPLETED", "GONE"):
        # the result may have been written just now: look again before calling it failed
        if (d / runner.RESULT_FILE).exists():
            row["state"] = "done"
        else:
            row.update(state="failed", detail=f"job {state.lower()} without a result")
    else:
        row.update(state="queued", detail=f"Slurm state {state}")
    return row


def render(df: pd.DataFrame) -> str:
    """A table of the runs and a one-line count per state."""
    if df.empty:
        return "no runs found"
    counts = df["state"].value_counts()
    summary = ", ".join(f"{int(counts[s])} {s}" for s in STATES if s in counts)
    cols = ["reproduction", "scale", "seed", "state", "job_id", "requeues", "wall_s", "detail"]
    show = df[cols].copy()
    show = show.astype(object).where(show.notna(), "")
    table = show.to_markdown(index=False) if _has_tabulate() else show.to_string(index=False)
    src = df.attrs.get("scheduler")
    tail = f" (scheduler: {src})" if src and src != "none" else ""
    return f"{table}\n\n{summary}{tail}"


def _has_tabulate() -> bool:
    try:
        import tabulate
        del tabulate  # only whether it is installed
    except ImportError:
        return False
    return True


__all__ = ["STATES", "collect", "render", "scheduler_states"]
