"""Executors without a cluster: profiles, resource merge, sbatch rendering, arrays (debug executor),
submission records, status, and the real requeue path with submitit's local executor."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import submitit
import torch
from submitit.slurm.slurm import _make_sbatch_string

from suite import environment, executors, registry, runner, status
from suite.errors import ConfigError, UnknownNameError
from suite.executors import Profile, ResourceOverrides, RunJob, SubmissionError
from suite.registry import Reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources
from suite.train import TrainConfig, fit
from tests.toy import TOY, toy_run

CKPT_EXTRA = "tests.test_executors:CKPT"
TOY_EXTRA = "tests.toy:TOY"


# --------------------------------------------------------------------------- a checkpointing test run

@dataclass
class CkptConfig:
    steps: int = 12
    sleep_s: float = 0.0   # per step, in the first job attempt only (later attempts run at full speed)
    fail: bool = False


def ckpt_run(cfg: CkptConfig, ctx) -> Outcome:
    """Least squares by SGD through the shared training loop, checkpointing every step."""
    if cfg.fail:
        raise RuntimeError("failure requested")
    g = ctx.generator()
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    model = torch.nn.Linear(4, 1)
    jobs = ctx.run_dir / runner.JOBS_FILE
    pause = cfg.sleep_s if not jobs.exists() or len(json.loads(jobs.read_text())) <= 1 else 0.0
    res = fit(model, lambda m, b: ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(), (x, y),
              TrainConfig(steps=cfg.steps, batch_size=16, lr=0.05, optimizer="sgd", checkpoint_every=1,
                          log_every=1), ctx=ctx, on_step=lambda s: time.sleep(pause))
    metrics = {"loss": res.final_loss, "w0": float(model.weight[0, 0].detach()), "steps": float(res.step)}
    return Outcome(metrics, DatasetRef("gaussian", "stand-in"), notes={"resumed_from_step": res.resumed_from_step})


CKPT = Reproduction(
    slug="_ckpt_test", track="_toytrack", paper=Paper(title="Checkpoint test", authors="Nobody", year=2024),
    config=CkptConfig, scales={"smoke": {}, "small": {}, "full": {}},
    claims=(Claim(id="fits", text="loss goes down", metric="loss", op="<", ref=100.0, kind="check"),),
    run=ckpt_run, resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=5)}, module="tests.test_executors",
)


@pytest.fixture
def repros():
    with registry.temporarily(TOY), registry.temporarily(CKPT):
        yield


@pytest.fixture
def clean_git(monkeypatch):
    monkeypatch.setattr(environment, "git_state",
                        lambda: {"git_sha": "abc123", "git_dirty": False, "git_diff_hash": None})


# --------------------------------------------------------------------------- profiles and resources

def test_local_profile_and_unknown_profile(tmp_path, monkeypatch):
    p = executors.load_profile("local")
    assert p.partition == "debug" and p.max_array_size >= 1 and p.resources.cpus == 1
    with pytest.raises(UnknownNameError, match="valid: .*local"):
        executors.load_profile("lcoal")
    (tmp_path / "site.toml").write_text('partition = "gpu"\nsetup = ["module load cuda"]\n[resources]\ngpus = 2\n')
    (tmp_path / "bad.toml").write_text('partitoin = "gpu"\n')
    monkeypatch.setenv("SUITE_PROFILES", str(tmp_path))
    site = executors.load_profile("site")
    assert site.setup == ("module load cuda",) and site.resources.gpus == 2
    assert "site" in executors.list_profiles()
    with pytest.raises(ConfigError, match="partitoin"):
        executors.load_profile("bad")


def test_merge_order_profile_repro_cli():
    prof = Profile(name="p", partition="cpu", resources=Resources(cpus=4, gpus=0, mem_gb=8, time_min=60))
    assert executors.merge_resources(prof, None) == executors.JobResources(4, 0, 8, 60, "cpu")
    declared = Resources(cpus=2, gpus=1, mem_gb=3, time_min=7)
    assert executors.merge_resources(prof, declared) == executors.JobResources(2, 1, 3, 7, "cpu")
    cli = ResourceOverrides(cpus=16, time_min=120, partition="big")
    assert executors.merge_resources(prof, declared, cli) == executors.JobResources(16, 1, 3, 120, "big")
    with pytest.raises(ConfigError):
        executors.merge_resources(prof, declared, ResourceOverrides(cpus=0))


def test_a_full_job_or_assembly_part_may_declare_its_own_resources(tmp_path):
    from suite.spec import Assembly

    big, part, job = (Resources(cpus=8, gpus=1, mem_gb=64, time_min=2880), Resources(cpus=2, gpus=1, mem_gb=8, time_min=60),
                      Resources(cpus=4, gpus=2, mem_gb=32, time_min=600))
    parts = replace(TOY, slug="_parts", assembly=Assembly(split="ks", derive=lambda m: {}), jobs={"slow": ("mode=slow",)},
                    resources={"full": big, "full:1": part, "full:slow": job})
    with registry.temporarily(parts):
        runs = runner.full_runs(runner.RunSpec("_parts", "full", 0))
        assert [r.overrides for r in runs] == [("ks=1",), ("ks=2",), ("ks=4",), ("mode=slow",)]
        got = [executors.resources_for(r, None, None) for r in runs]
        assert [(g.cpus, g.time_min) for g in got] == [(2, 60), (8, 2880), (8, 2880), (4, 600)]
        assert registry.get("_parts").resources_for("small") == Resources()  # undeclared: the defaults
        rows = executors.plan(runs, results_root=tmp_path)  # three arrays: one per distinct resources
        assert sorted(r["jobs"] for r in rows if "TOTAL" not in r["reproductions"]) == [1, 1, 2]
    with pytest.raises(TypeError, match="resources key 'full:8'"):  # no such part: refused at registration
        registry.reproduction(track="_t", paper=TOY.paper, config=TOY.config, scales=TOY.scales, claims=TOY.claims,
                              resources={"full:8": part}, slug="_bad_parts",
                              assembly=Assembly(split="ks", derive=lambda m: {}))(toy_run)
    assert "_bad_parts" not in registry.discover()


def test_sbatch_rendering(tmp_path):
    prof = Profile(name="site", partition="gpu", account="proj", qos="high", constraint="a100",
                   setup=("module load cuda/12.1",), array_parallelism=8, signal_delay_s=120,
                   sbatch={"exclude": "node01"})
    res = executors.JobResources(cpus=6, gpus=1, mem_gb=2.5, time_min=90.5, partition="gpu")
    params = executors.submitit_params("slurm", res, prof, max_parallel=3, name="suite-x")
    text = _make_sbatch_string(command="python -m x", folder=tmp_path, map_count=10, **params)
    for line in ("--cpus-per-task=6", "--gpus-per-node=1", "--mem=2560MB", "--time=91", "--partition=gpu",
                 "--account=proj", "--qos=high", "--constraint=a100", "--array=0-9%3", "--signal=USR2@120",
                 "--exclude=node01", "--job-name=suite-x", "module load cuda/12.1"):
        assert line in text, line
    assert "--array=0-9%8" in _make_sbatch_string(
        command="x", folder=tmp_path, map_count=10, **executors.submitit_params("slurm", res, prof))


def test_a_distributed_run_is_one_job_of_several_tasks(tmp_path):
    """Resources(processes=N): one Slurm task per rank (--ntasks-per-node), the job's cpus split among them, every
    GPU on the node; the CLI's --processes wins over the reproduction's, and a rank needs a GPU of its own."""
    declared = Resources(cpus=16, gpus=4, mem_gb=64, time_min=60, processes=4)
    res = executors.merge_resources(None, declared)
    assert res.processes == 4
    params = executors.submitit_params("slurm", res)
    assert (params["ntasks_per_node"], params["cpus_per_task"], params["gpus_per_node"]) == (4, 4, 4)
    text = _make_sbatch_string(command="python -m x", folder=tmp_path, **params)
    for line in ("--ntasks-per-node=4", "--cpus-per-task=4", "--gpus-per-node=4"):
        assert line in text, line
    assert executors.submitit_params("local", res)["tasks_per_node"] == 4
    one = executors.merge_resources(None, declared, ResourceOverrides(processes=1))
    assert "ntasks_per_node" not in executors.submitit_params("slurm", one)
    assert executors.submitit_params("slurm", one)["cpus_per_task"] == 16
    with pytest.raises(ConfigError, match="one rank per GPU"):
        executors.merge_resources(None, declared, ResourceOverrides(processes=8))
    with pytest.raises(ConfigError, match="processes"):
        executors.merge_resources(None, declared, ResourceOverrides(processes=0))


@pytest.mark.slow
def test_a_job_of_two_tasks_runs_as_two_ranks(tmp_path, clean_git):
    """The Slurm path with submitit's local executor: tasks_per_node=2, each task a rank whose rendezvous comes
    from submitit's JobEnvironment (TorchDistributedEnvironment); one record, made by two ranks."""
    from suite.test_distributed import DIST

    with registry.temporarily(DIST):
        spec = runner.RunSpec("_dist_test", "smoke", 0)
        subs = executors.submit_runs([spec], executor="local", results_root=tmp_path, allow_dirty=True,
                                     folder=tmp_path / "logs", extra=("suite.test_distributed:DIST",))
        job = subs[0].job
        assert job.num_tasks == 2
        job.wait()
        assert job.state in ("DONE", "COMPLETED", "FINISHED"), job.stderr()
        rec = json.loads((subs[0].run_dir / runner.RESULT_FILE).read_text())
    assert rec["env"]["world_size"] == 2 and rec["metrics"]["ranks_in_order"] == 1.0 and rec["metrics"]["world"] == 2
    assert len(list(tmp_path.rglob(runner.RESULT_FILE))) == 1
    assert len(json.loads((subs[0].run_dir / runner.JOBS_FILE).read_text())) == 1  # rank 0 alone logs the start


# --------------------------------------------------------------------------- submission (debug executor)

def _count_arrays(monkeypatch) -> list[int]:
    sizes: list[int] = []
    orig = submitit.DebugExecutor.map_array

    def counting(self, fn, *iterables):
        sizes.append(len(iterables[0]))
        return orig(self, fn, *iterables)

    monkeypatch.setattr(submitit.DebugExecutor, "map_array", counting)
    return sizes


def test_one_array_per_resource_group_split_at_max(tmp_path, repros, clean_git, monkeypatch):
    sizes = _count_arrays(monkeypatch)
    prof = Profile(name="t", max_array_size=2, array_pause_s=0.0, resources=Resources(mem_gb=2))
    specs = [runner.RunSpec("_toy", "smoke", s) for s in range(5)] + [runner.RunSpec("_toy", "small", 0)]
    subs = executors.submit_runs(specs, executor="debug", profile=prof, results_root=tmp_path,
                                 folder=tmp_path / "sub")
    assert sorted(sizes) == [1, 1, 2, 2]  # smoke: 5 runs split 2+2+1; small (other resources): 1
    assert {s.resources.mem_gb for s in subs} == {1, 2}  # smoke declares 1 GB; small takes the profile's
    for s in subs:
        rec = s.job.result()
        assert rec["status"] == "ok" and rec["env"]["requeues"] == 0
        assert rec["env"]["slurm_job_ids"] == [s.job_id]
        sub = json.loads((s.run_dir / executors.SUBMISSION_FILE).read_text())
        assert sub["job_id"] == s.job_id and sub["git_sha"] == "abc123"
        assert sub["resources"]["mem_gb"] == s.resources.mem_gb
    # a finished run is neither resubmitted nor recomputed
    again = executors.submit_runs(specs, executor="debug", profile=prof, results_root=tmp_path)
    assert all(s.skipped == "done" and s.job is None for s in again) and len(sizes) == 4


def test_plan_counts_jobs_and_gpu_hours_submits_nothing(tmp_path, repros):
    specs = [runner.RunSpec("_toy", "smoke", s) for s in range(3)] + [runner.RunSpec("_toy", "small", 0)]
    rows = executors.plan(specs, results_root=tmp_path, overrides=ResourceOverrides(gpus=2, time_min=90))
    assert sum(r["jobs"] for r in rows) == 4 and not list(tmp_path.iterdir())
    assert sum(r["gpu_hours"] for r in rows) == 4 * 2 * 1.5
    runner.execute(specs[0], tmp_path)  # a done run is counted apart, not planned again
    rows = executors.plan(specs, results_root=tmp_path, overrides=ResourceOverrides(gpus=2, time_min=90))
    assert sum(r["jobs"] for r in rows) == 3 and "skipped: 1" in rows[-1]["reproductions"]
    text = executors.render_plan(rows)
    total = next(line for line in text.splitlines() if "TOTAL" in line)
    assert [c.strip() for c in total.strip("|").split("|")][-2] == "9"  # 3 jobs x 2 GPUs x 1.5 h
    # over 2 nodes every job reserves each node's GPUs and cpus
    rows = executors.plan(specs, results_root=tmp_path,
                          overrides=ResourceOverrides(gpus=2, time_min=90, processes=4, nodes=2))
    assert sum(r["gpu_hours"] for r in rows) == 3 * 2 * 2 * 1.5 and rows[0]["gpus/job"] == 4


def test_submit_dry_run_prints_the_plan(tmp_path, capsys):
    from suite import cli

    assert cli.main(["submit", "fasterpam", "--scale", "full", "--seeds", "0-2", "--dry-run",
                     "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fasterpam" in out and "TOTAL" in out and not list(tmp_path.iterdir())


def test_dirty_tree_refused_unless_allowed(tmp_path, repros, monkeypatch):
    monkeypatch.setattr(environment, "git_state",
                        lambda: {"git_sha": "abc", "git_dirty": True, "git_diff_hash": "d1ff"})
    spec = [runner.RunSpec("_toy", "smoke", 0)]
    with pytest.raises(SubmissionError, match="--allow-dirty"):
        executors.submit(spec, executor="local", profile="local", results_root=tmp_path)
    assert not (tmp_path / ".submitit").exists()
    ids = executors.submit(spec, executor="local", profile="local", results_root=tmp_path, allow_dirty=True,
                           extra=(TOY_EXTRA,))
    rdir = runner.run_dir(spec[0], tmp_path)
    sub = json.loads((rdir / executors.SUBMISSION_FILE).read_text())
    assert sub["git_dirty"] is True and sub["git_diff_hash"] == "d1ff" and sub["job_id"] == ids[0]
    _wait(lambda: (rdir / runner.RESULT_FILE).exists(), 60)


def test_runjob_is_idempotent_and_fails_loudly(tmp_path, repros):
    spec = runner.RunSpec("_toy", "smoke", 1)
    job = RunJob(tmp_path)
    first = job(spec)
    second = job(spec)
    assert first == second
    assert len(json.loads((runner.run_dir(spec, tmp_path) / runner.JOBS_FILE).read_text())) == 1
    bad = runner.RunSpec("_toy", "smoke", 1, ("fail=true",))
    with pytest.raises(RuntimeError, match="toy failure requested"):
        job(bad)
    fresh = job.checkpoint(spec)
    assert isinstance(fresh, submitit.helpers.DelayedSubmission) and fresh.function is not job


def test_inline_executor(tmp_path, repros):
    ids = executors.submit([runner.RunSpec("_toy", "smoke", s) for s in (0, 1)], executor="inline",
                           results_root=tmp_path)
    assert ids == ["inline", "inline"]
    df = status.collect(tmp_path)
    assert list(df["state"]) == ["done", "done"]


# --------------------------------------------------------------------------- status

def _fake_run(root: Path, seed: int, *, job: str | None, started: int = 0, executor: str = "slurm") -> Path:
    d = root / "_toy" / "smoke" / f"abcdef012345-s{seed}"
    d.mkdir(parents=True)
    if job:
        (d / executors.SUBMISSION_FILE).write_text(json.dumps(
            {"job_id": job, "executor": executor, "submitted": "2026-01-01T00:00:00+00:00", "host": "x"}))
    if started:
        (d / runner.JOBS_FILE).write_text(json.dumps([{"job_id": job, "started": "s"}] * started))
    return d


def _record(seed, **kw):
    """A schema-complete record (status reads only valid records; others are 'corrupt')."""
    rec = {"schema": 1, "reproduction": "toy", "scale": "smoke", "seed": seed, "config": {}, "config_hash": "h",
           "metrics": {}, "claims": {}, "dataset": {"name": "d", "provenance": "stand-in"}, "env": {},
           "started": "2026-01-01T00:00:00+00:00", "wall_s": None, "peak_mem_mb": None, "error": None}
    rec.update(kw)
    return rec


def test_status_states_with_one_sacct_call(tmp_path, monkeypatch):
    root = tmp_path / "results"
    _fake_run(root, 0, job="12_0")
    _fake_run(root, 1, job="12_1", started=1)
    _fake_run(root, 2, job="12_2")
    _fake_run(root, 3, job="12_3", started=1)
    _fake_run(root, 4, job="13", started=2)
    _fake_run(root, 5, job="14", started=1)
    _fake_run(root, 6, job="15", started=1)
    d7 = _fake_run(root, 7, job="16", started=1)
    (d7 / runner.RESULT_FILE).write_text(json.dumps(_record(7, status="ok", env={"requeues": 0}, wall_s=1.0)))
    _fake_run(root, 8, job=None)
    d9 = _fake_run(root, 9, job="17", started=1)
    (d9 / runner.ERROR_FILE).write_text(json.dumps(_record(9, status="failed", error="ValueError: boom",
                                                           started="2026-01-02T00:00:00+00:00")))
    calls = []
    sacct_out = "12_0|PENDING\n12_1|RUNNING\n12_[2-3%2]|PENDING\n13|RUNNING\n14|CANCELLED by 0\n15|COMPLETED\n17|FAILED\n"

    class Done:
        def __init__(self, out):
            self.returncode, self.stdout, self.stderr = 0, out, ""

    def fake_run(cmd, **kw):
        calls.append(cmd[0])
        # the controller's view of the one started job that sacct shows pending (12_3): requeued
        return Done(sacct_out if cmd[0] == "sacct" else "12_3|PENDING\n")

    monkeypatch.setattr(status.subprocess, "run", fake_run)
    df = status.collect(root).set_index("seed")
    assert calls == ["sacct", "squeue"]
    assert df.loc[0, "state"] == "queued" and df.loc[1, "state"] == "running"
    assert df.loc[2, "state"] == "queued" and df.loc[3, "state"] == "requeued"  # array range expanded
    assert df.loc[4, "state"] == "running" and df.loc[4, "requeues"] == 1
    assert df.loc[5, "state"] == "failed" and "CANCELLED" in df.loc[5, "detail"]
    assert df.loc[6, "state"] == "failed" and "without a result" in df.loc[6, "detail"]
    assert df.loc[7, "state"] == "done" and df.loc[8, "state"] == "not launched"
    assert df.loc[9, "state"] == "failed" and "boom" in df.loc[9, "detail"]
    text = status.render(status.collect(root))
    assert "1 done" in text and "3 failed" in text and "not launched" in text


def test_status_asks_the_controller_when_accounting_lags(tmp_path, monkeypatch):
    """A job that has started while sacct still shows it PENDING is running, not requeued (CI saw this)."""
    _fake_run(tmp_path, 0, job="21", started=1)
    _fake_run(tmp_path, 1, job="22")
    calls = []

    class Done:
        def __init__(self, out):
            self.returncode, self.stdout, self.stderr = 0, out, ""

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return Done("21|PENDING\n22|PENDING\n" if cmd[0] == "sacct" else "21|RUNNING\n")

    monkeypatch.setattr(status.subprocess, "run", fake_run)
    df = status.collect(tmp_path).set_index("seed")
    assert [c[0] for c in calls] == ["sacct", "squeue"] and calls[1][-1] == "21"  # only the lagging job
    assert df.loc[0, "state"] == "running" and df.loc[1, "state"] == "queued"


def test_status_without_scheduler(tmp_path, monkeypatch):
    _fake_run(tmp_path, 0, job="12_0")
    _fake_run(tmp_path, 1, job="12_1", started=1)
    _fake_run(tmp_path, 2, job="999999999", started=1, executor="local")

    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(status.subprocess, "run", missing)
    df = status.collect(tmp_path).set_index("seed")
    assert list(df["state"]) == ["queued", "running", "running"]  # local job on another host: files only
    assert status.collect(tmp_path / "nothing").empty


# --------------------------------------------------------------------------- real requeue (local executor)

def _resume_steps(run_dir: Path) -> list[int]:
    """Steps the training loop resumed from, in order (from the run's log)."""
    lines = (run_dir / "log.txt").read_text().splitlines()
    return [int(ln.split("resumed from step ")[1].split()[0]) for ln in lines if "resumed from step" in ln]


def _wait(cond, timeout: float) -> None:
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.2)


def test_local_time_limit_requeues_and_resumes(tmp_path, repros, clean_git):
    """60 s limit, USR2 5 s before it: the run checkpoints, requeues, resumes and matches a straight run.

    The first attempt sleeps 0.25 s per step (75 s of work), so the time limit always interrupts it;
    later attempts run at full speed and only need to start and finish within the 55 s window
    (wide, so that a loaded CI machine's slow job start-up does not make the test flaky)."""
    spec = runner.RunSpec("_ckpt_test", "smoke", 3, ("steps=300", "sleep_s=0.25"))
    prof = replace(executors.load_profile("local"), signal_delay_s=5, max_num_timeout=6)
    subs = executors.submit_runs([spec], executor="local", profile=prof, results_root=tmp_path / "r",
                                 overrides=ResourceOverrides(time_min=1.0), extra=(CKPT_EXTRA,))
    rec = subs[0].job.result()
    assert rec["status"] == "ok" and rec["metrics"]["steps"] == 300
    assert rec["env"]["requeues"] >= 1 and len(rec["env"]["slurm_job_ids"]) == rec["env"]["requeues"] + 1
    resumes = _resume_steps(subs[0].run_dir)
    assert resumes and 0 < resumes[0] < 300 and resumes == sorted(resumes)  # the step counter went on
    straight = runner.execute(runner.RunSpec("_ckpt_test", "smoke", 3, ("steps=300",)), tmp_path / "straight")
    assert rec["metrics"] == straight["metrics"]
    assert status.collect(tmp_path / "r")["state"].tolist() == ["done"]


def test_a_run_over_several_nodes_asks_slurm_for_them(tmp_path):
    """Resources(nodes=N): the ranks spread over N machines (--nodes, processes / N tasks on each); cpus, gpus and
    memory are per node, as Slurm counts them; the CLI's --nodes wins; the local executor refuses (one machine)."""
    declared = Resources(cpus=32, gpus=8, mem_gb=256, time_min=60, processes=16, nodes=2)
    res = executors.merge_resources(None, declared)
    params = executors.submitit_params("slurm", res)
    assert (params["nodes"], params["ntasks_per_node"], params["cpus_per_task"], params["gpus_per_node"]) == \
        (2, 8, 4, 8)
    text = _make_sbatch_string(command="python -m x", folder=tmp_path, **params)
    for line in ("--nodes=2", "--ntasks-per-node=8", "--cpus-per-task=4", "--gpus-per-node=8", "--mem=256GB"):
        assert line in text, line
    with pytest.raises(ConfigError, match="--nodes 1"):
        executors.submitit_params("local", res)
    one = executors.merge_resources(None, declared, ResourceOverrides(nodes=1, processes=8))
    assert "nodes" not in executors.submitit_params("slurm", one)
    with pytest.raises(ConfigError, match="multiple of --nodes"):
        executors.merge_resources(None, declared, ResourceOverrides(processes=15))
    with pytest.raises(ConfigError, match="per node"):
        executors.merge_resources(None, declared, ResourceOverrides(nodes=1))  # 16 ranks on one 8-GPU node
    with pytest.raises(ValueError, match="divide"):
        Resources(processes=3, nodes=2)
    with pytest.raises(ValueError, match="per node"):
        Resources(gpus=4, processes=16, nodes=2)
