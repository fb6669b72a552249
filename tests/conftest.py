"""Shared fixtures of the harness tests."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on 2 cores: one torch thread per worker, or the workers oversubscribe the CPU.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A running Slurm cluster (slurm/local-cluster/up.sh in CI); skips when ``sbatch`` is absent.

    With ``sbatch`` on PATH but no controller answering they skip too, unless
    ``SUITE_REQUIRE_SLURM=1`` (set by CI), where they fail so that CI cannot pass without them.
    """
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not found: start a cluster with slurm/local-cluster/up.sh (see slurm/README.md)")
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=30)
        ok, why = out.returncode == 0 and bool(out.stdout.strip()), out.stderr.strip()[:200]
    except subprocess.TimeoutExpired:
        ok, why = False, "sinfo timed out"
    if not ok:
        msg = f"sbatch is installed but no Slurm controller answers ({why}); run slurm/local-cluster/up.sh"
        if os.environ.get("SUITE_REQUIRE_SLURM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return out.stdout.split()[0].rstrip("*")
