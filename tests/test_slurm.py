"""End-to-end tests against a real Slurm cluster (slurm/local-cluster/up.sh); skipped without sbatch.

Each test has its own submitit folder and results root (job ids restart at 1 on a fresh cluster,
and submitit would otherwise read a stale result pickle of an earlier job with the same id).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from suite import environment, executors, registry, runner, status
from suite.errors import SuiteError
from suite.executors import ResourceOverrides, SubmissionError
from tests.test_executors import CKPT, CKPT_EXTRA, TOY_EXTRA, _resume_steps, _wait
from tests.toy import TOY

pytestmark = pytest.mark.slurm
REPO = environment.REPO_ROOT


@pytest.fixture
def repros():
    with registry.temporarily(TOY), registry.temporarily(CKPT):
        yield


def _submit(specs, tmp_path, **kw):
    kw.setdefault("profile", "local")
    return executors.submit_runs(specs, executor="slurm", results_root=tmp_path / "results",
                                 folder=tmp_path / "submitit", allow_dirty=True, **kw)


def _states(tmp_path) -> list[str]:
    return status.collect(tmp_path / "results")["state"].tolist()


def test_cli_submit_one_array_and_leaderboard(slurm_cluster, tmp_path):
    """(a) ``suite submit fasterpam --scale smoke --seeds 0-3 --profile local``: one array, four records."""
    try:
        registry.get("fasterpam")
    except SuiteError as exc:
        pytest.skip(f"fasterpam is not available yet ({exc})")
    results = tmp_path / "results"
    cli = [sys.executable, "-m", "suite.cli"]
    out = subprocess.run(cli + ["submit", "fasterpam", "--scale", "smoke", "--seeds", "0-3", "--profile", "local",
                                "--allow-dirty", "--results", str(results), "--folder", str(tmp_path / "submitit")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 4 and len(executors.array_ids(ids)) == 1, ids  # one sbatch call, an array of 4
    subs = sorted(results.glob("fasterpam/smoke/*/submission.json"))
    assert len(subs) == 4 and {json.loads(p.read_text())["job_id"] for p in subs} == set(ids)
    _wait(lambda: _states(tmp_path) == ["done"] * 4, 150)
    lb = tmp_path / "leaderboards"
    out = subprocess.run(cli + ["leaderboard", "--results", str(results), "--out", str(lb)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    pages = "".join(p.read_text() for p in lb.rglob("*.md"))
    assert "fasterpam" in pages


def test_api_submit_is_one_array(slurm_cluster, tmp_path, repros):
    """Four seeds that share resources go out as one array job; the records carry its task ids."""
    subs = _submit([runner.RunSpec("_toy", "smoke", s) for s in range(4)], tmp_path, extra=(TOY_EXTRA,))
    ids = [s.job_id for s in subs]
    assert len(executors.array_ids(ids)) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]
    _wait(lambda: _states(tmp_path) == ["done"] * 4, 90)
    for s in subs:
        rec = json.loads((s.run_dir / runner.RESULT_FILE).read_text())
        assert rec["env"]["slurm_job_ids"] == [s.job_id] and rec["env"]["requeues"] == 0
        assert rec["env"]["slurm_job_id"] == s.job_id


def test_preempted_run_resumes_from_checkpoint(slurm_cluster, tmp_path, repros):
    """(b) USR2 through ``job._interrupt()``: checkpoint, requeue, resume; same numbers as a straight run."""
    spec = runner.RunSpec("_ckpt_test", "smoke", 5, ("steps=40", "sleep_s=0.25"))
    # a limit far above the run time, so that submitit counts the signal as a preemption
    (sub,) = _submit([spec], tmp_path, overrides=ResourceOverrides(time_min=60), extra=(CKPT_EXTRA,))
    log = sub.run_dir / "log.txt"
    _wait(lambda: log.exists() and "step 4/" in log.read_text(), 60)
    sub.job._interrupt()
    _wait(lambda: (sub.run_dir / runner.RESULT_FILE).exists(), 90)
    rec = json.loads((sub.run_dir / runner.RESULT_FILE).read_text())
    assert rec["status"] == "ok" and rec["metrics"]["steps"] == 40
    assert rec["env"]["requeues"] == 1 and rec["env"]["slurm_job_ids"] == [sub.job_id, sub.job_id]
    resumes = _resume_steps(sub.run_dir)
    assert len(resumes) == 1 and 4 <= resumes[0] < 40  # the step counter continued
    straight = runner.execute(runner.RunSpec("_ckpt_test", "smoke", 5, ("steps=40",)), tmp_path / "straight")
    assert rec["metrics"] == straight["metrics"]
    assert _states(tmp_path) == ["done"]


def test_impossible_request_fails_at_submit(slurm_cluster, tmp_path, repros):
    """(c) more CPUs than the node has: refused by sbatch (EnforcePartLimits=ALL) with a clear error."""
    with pytest.raises(SubmissionError) as err:
        _submit([runner.RunSpec("_toy", "smoke", 0)], tmp_path,
                overrides=ResourceOverrides(cpus=(os.cpu_count() or 1) + 64))
    msg = str(err.value)
    assert "Slurm refused" in msg and "--cpus" in msg and "\n" not in msg


def test_cancelled_job_shows_failed(slurm_cluster, tmp_path, repros):
    """(d) a job killed with scancel is failed in ``suite status``, not running forever."""
    spec = runner.RunSpec("_ckpt_test", "smoke", 0, ("steps=400", "sleep_s=0.25"))
    (sub,) = _submit([spec], tmp_path, extra=(CKPT_EXTRA,))
    _wait(lambda: (sub.run_dir / runner.JOBS_FILE).exists(), 60)
    assert _states(tmp_path) == ["running"]
    subprocess.run(["scancel", sub.job_id], check=True, timeout=30)
    t0 = time.time()
    _wait(lambda: _states(tmp_path) == ["failed"], 30)
    df = status.collect(tmp_path / "results")
    assert "CANCELLED" in df["detail"].iloc[0], df.to_dict("records")
    assert time.time() - t0 < 30
