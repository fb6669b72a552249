"""Run generated Python programs in a subprocess: the one sandbox of the code-generation papers.

Each program runs in a fresh isolated interpreter (``python -I``: no user site, no PYTHON* variables,
no script directory on the path) in an empty temporary working directory, in its own process group
(killed as a group when the time limit is hit), with an address-space limit on Linux. This keeps a
wrong or looping candidate from hanging or exhausting the job; it is not a security boundary: model-
written code at full scale belongs inside a container or VM as well (the reproductions' READMEs say so).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

from suite.errors import ConfigError

Status = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class Result:
    """``status``: ok (exit 0 in time), error (non-zero exit) or timeout; ``stdout`` as text."""

    status: Status
    stdout: str = ""
    returncode: int | None = None


def _limits(memory_mb: int):
    def apply() -> None:  # runs in the child before exec
        try:
            import resource

            cap = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        except (ImportError, ValueError, OSError):
            pass
    return apply


def run(program: str, timeout: float = 5.0, memory_mb: int = 2048) -> Result:
    """Execute ``program`` (source text) once; see the module docstring."""
    if timeout <= 0 or memory_mb < 64:
        raise ConfigError(f"sandbox.run: timeout={timeout} must be > 0 and memory_mb={memory_mb} >= 64")
    with tempfile.TemporaryDirectory(prefix="sandbox-") as d:
        p = subprocess.Popen([sys.executable, "-I", "-c", program], cwd=d, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True,
                             preexec_fn=_limits(memory_mb) if sys.platform.startswith("linux") else None)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the program and anything it started
            except ProcessLookupError:
                pass
            p.communicate()
            return Result("timeout")
    return Result("ok" if p.returncode == 0 else "error", out or "", p.returncode)


def passes(program: str, timeout: float = 5.0) -> bool:
    """True when ``program`` exits 0 within ``timeout`` (a HumanEval-style program with its asserts)."""
    return run(program, timeout).status == "ok"


def run_many(programs: Sequence[str], timeout: float = 5.0, workers: int | None = None) -> list[Result]:
    """:func:`run` for each program, ``workers`` subprocesses at a time (default: the CPU count)."""
    n = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
        return list(pool.map(lambda prog: run(prog, timeout), programs))


__all__ = ["Result", "run", "passes", "run_many"]
