"""Environment capture for result records: git sha and dirty flag, versions, device, host, Slurm."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """``{"git_sha", "git_dirty", "git_diff_hash"}``; sha is "unknown" outside a git checkout."""
    sha = _git("rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": "unknown", "git_dirty": None, "git_diff_hash": None}
    # Untracked files count where code lives (a new reproduction not yet committed is not HEAD's code).
    status = _git("status", "--porcelain", "--untracked-files=all", "--", "suite", "reproductions",
                  "pyproject.toml") or ""
    dirty = any(line.strip() and not line.rstrip().endswith(".md") for line in status.splitlines())
    diff_hash = None
    if dirty:
        diff = _git("diff", "HEAD") or ""
        diff_hash = hashlib.sha256(diff.encode()).hexdigest()[:12]
    return {"git_sha": sha.strip(), "git_dirty": dirty, "git_diff_hash": diff_hash}


def code_hash(module: str) -> str:
    """12 hex digits of sha256 over the source of ``suite`` and of the reproduction's package:
    identifies the code that produced a record even when the tree was not committed."""
    import importlib

    h = hashlib.sha256()
    roots = [REPO_ROOT / "suite"]
    if module.startswith("reproductions."):
        pkg = importlib.import_module(".".join(module.split(".")[:2]))
        roots.append(Path(pkg.__file__).parent)
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            if "test_" in f.name or "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(REPO_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def pick_device(requested: str | None = None) -> torch.device:
    """``cuda`` when present, else ``cpu``; an explicit request must be available."""
    from suite.errors import SuiteError

    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError:
        raise SuiteError(f"unknown device '{requested}'; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SuiteError(f"device '{requested}' requested but no CUDA device is visible; use --device cpu")
    return dev


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def capture(dev: torch.device) -> dict[str, Any]:
    import numpy

    env = dict(git_state())
    env.update(
        python=sys.version.split()[0],
        torch=torch.__version__,
        numpy=numpy.__version__,
        device=device_name(dev),
        host=socket.gethostname(),
        slurm_job_id=os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID")) and
        "_".join(filter(None, [os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
                               os.environ.get("SLURM_ARRAY_TASK_ID")])),
    )
    return env
