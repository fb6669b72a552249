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


# The harness: modules that declare, resolve, launch, store or render a run but compute none of its
# metrics. Editing one does not make a record stale (the resolved config is in the record and its
# hash; claims are re-checked from stored metrics), and the import walk of ``code_files`` stops at
# them, so what they import (the runner, the store, the CLI) is not counted either.
HARNESS_ONLY = {f"suite/{m}.py" for m in (
    "__init__", "spec", "registry", "errors", "io", "config", "teeth", "runner", "store",
    "environment", "executors", "leaderboard", "publish", "status", "index", "cli", "rehearsal", "devicecheck",
    "readme_results", "verify")}


def _package_files(pkg_dir: Path) -> list[Path]:
    """A reproduction package's source files, tests excluded."""
    return [f for f in sorted(pkg_dir.rglob("*.py"))
            if not f.name.startswith("test_") and "__pycache__" not in f.parts]


def _code_imports(path: Path) -> set[Path]:
    """Source files a file's ``import`` statements run (static): ``suite`` modules, and the whole
    package of another reproduction it imports (importing any module of it runs its ``__init__``,
    which imports the rest; a benchmark that calls other papers' selectors depends on their code)."""
    import ast

    out: set[Path] = set()
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return out
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
        parts = name.split(".")
        if parts[0] == "reproductions" and len(parts) > 1:
            pkg = REPO_ROOT / "reproductions" / parts[1]
            if (pkg / "__init__.py").exists():
                out.update(_package_files(pkg))
            continue
        if name != "suite" and not name.startswith("suite."):
            continue
        base = REPO_ROOT.joinpath(*parts)
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.exists():
                out.add(cand)
        for i in range(1, len(parts)):  # importing suite.data.x runs suite/data/__init__.py
            init = REPO_ROOT.joinpath(*parts[:i], "__init__.py")
            if init.exists():
                out.add(init)
    return out


def _rel(f: Path) -> str:
    return f.relative_to(REPO_ROOT).as_posix()


@functools.lru_cache(maxsize=None)
def code_files(module: str) -> tuple[Path, ...]:
    """The source files that compute a reproduction's metrics: its package (tests excluded), every
    ``suite`` module and every other reproduction's package it imports, transitively, less the harness
    vocabulary (HARNESS_ONLY)."""
    pkg_files: list[Path] = []
    if module.startswith("reproductions."):
        pkg_dir = REPO_ROOT.joinpath(*module.split(".")[:2])
        pkg_files = _package_files(pkg_dir)
    seen: set[Path] = set()
    todo = list(pkg_files)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        if _rel(f) in HARNESS_ONLY:
            continue  # the walk stops at the harness
        todo += [g for g in _code_imports(f) if g not in seen]
    keep = [f for f in seen if _rel(f) not in HARNESS_ONLY
            and not f.name.startswith("test_")]
    return tuple(sorted(keep))


def code_hash(module: str) -> str:
    """12 hex digits of sha256 over :func:`code_files`: identifies the code that produced a
    record, committed or not. A record whose hash differs from the current code's is stale."""
    h = hashlib.sha256()
    for f in code_files(module):
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
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SuiteError(f"device '{requested}' does not exist ({torch.cuda.device_count()} visible); use cuda:0")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SuiteError(f"device '{requested}' requested but MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SuiteError(f"device '{requested}' cannot run a reproduction; use cpu, cuda or cuda:N")
    return dev


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else the platform's word for it). Records carry it
    because float results differ between CPUs at the last bits, and a discrete search can amplify that."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_id() -> str | None:
    """What a CPU's name can hide (a virtual machine shows "Intel(R) Xeon(R) Processor" for several hosts): family,
    model and stepping, cache size and a digest of the feature flags, which decide the kernels MKL and oneDNN pick.
    Two records of the same code and seed that differ in the last bits usually differ here. None off Linux."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return None
    f = {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in first.splitlines()) if sep}
    flags = hashlib.sha256(" ".join(sorted(f.get("flags", "").split())).encode()).hexdigest()[:8]
    return (f"family {f.get('cpu family', '?')} model {f.get('model', '?')} stepping {f.get('stepping', '?')}, "
            f"cache {f.get('cache size', '?')}, flags {flags}")


# Libraries whose numerics a reproduction's metrics pass through (k-means, Hungarian matching, linear algebra,
# tokenisers, pretrained-model code): a different version can move a discrete outcome with the same code and seed.
NUMERIC_PACKAGES = ("scipy", "scikit-learn", "pandas", "kmedoids", "transformers", "tokenizers",
                    "sentence-transformers", "safetensors")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`NUMERIC_PACKAGES` (None where it is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def capture(dev: torch.device) -> dict[str, Any]:
    import numpy

    env = dict(git_state())
    env.update(
        python=sys.version.split()[0],
        torch=torch.__version__,
        numpy=numpy.__version__,
        device=device_name(dev),
        # The kernels torch picked (its instruction set) and how many threads split a reduction both
        # change float results at the last bits; with the CPU model they say where a record was made.
        cpu=cpu_model(),
        cpu_id=cpu_id(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        torch_threads=torch.get_num_threads(),
        packages=package_versions(),
        host=socket.gethostname(),
        slurm_job_id=os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID")) and
        "_".join(filter(None, [os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
                               os.environ.get("SLURM_ARRAY_TASK_ID")])),
    )
    return env
