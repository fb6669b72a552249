import json

import pytest
import torch

from suite import environment, registry, rehearsal, runner
from suite.errors import SuiteError, UnknownNameError
from tests.toy import TOY

KEYS = {"schema", "reproduction", "scale", "seed", "config", "config_hash", "metrics", "claims",
        "dataset", "env", "started", "wall_s", "peak_mem_mb", "status", "error"}


@pytest.fixture(autouse=True)
def toy():
    with registry.temporarily(TOY):
        yield TOY


def test_record_schema_and_verdicts(tmp_path):
    rec = runner.execute(runner.RunSpec("_toy", "small", 3), tmp_path)
    assert KEYS <= set(rec)
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["claims"]["beats-baseline"]["verdict"] == "holds"
    assert rec["claims"]["slope"]["verdict"] == "holds"
    assert rec["dataset"] == {"name": "toy-gaussian", "provenance": "stand-in"}
    for k in ("git_sha", "git_dirty", "python", "torch", "device", "host", "slurm_job_id"):
        assert k in rec["env"]
    # where the floats were made: CPU model, the kernels' instruction set, torch's thread count
    assert rec["env"]["cpu"] and rec["env"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["env"]["torch_threads"] == torch.get_num_threads()
    # a virtual machine's CPU name is generic: family/model/stepping, cache and a digest of the flags say more
    assert rec["env"]["cpu_id"] == environment.cpu_id() and rec["env"]["cpu_id"].startswith("family ")
    # and the versions of the libraries the metrics pass through (same code and seed, another scikit-learn:
    # another k-means)
    from importlib import metadata
    assert rec["env"]["packages"]["scikit-learn"] == metadata.version("scikit-learn")
    assert rec["env"]["packages"]["scipy"] == metadata.version("scipy")
    folder = tmp_path / "_toy" / "small" / f"{rec['config_hash']}-s3"
    assert json.loads((folder / "result.json").read_text()) == rec
    assert not list(folder.glob(".*tmp"))


def test_not_expected_at_smoke_and_broken_fails(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rec = runner.execute(runner.RunSpec("_toy", "smoke", 0), tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert rec["claims"]["slope"]["verdict"] == "not-expected"
    assert rec["env"]["torch_threads"] == 1  # smoke computes on one thread, and says so
    bad = runner.execute(runner.RunSpec("_toy", "small", 0, ("broken=true",)), tmp_path)
    assert bad["claims"]["beats-baseline"]["verdict"] == "fails"
    assert bad["claims"]["slope"]["verdict"] == "fails"


def test_same_seed_same_numbers_and_skip(tmp_path):
    a = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path / "a")
    b = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path / "b")
    c = runner.execute(runner.RunSpec("_toy", "smoke", 2), tmp_path / "b")
    assert a["metrics"] == b["metrics"] and a["metrics"] != c["metrics"]
    again = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path / "b")
    assert again["started"] == b["started"]  # skipped: the stored record comes back
    forced = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path / "b", force=True)
    assert forced["metrics"] == b["metrics"]


def test_stale_record_is_run_again(tmp_path, monkeypatch, capsys):
    """A record made by other code (its code hash differs) is not taken as done."""
    first = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path)
    path = tmp_path / "_toy" / "smoke" / f"{first['config_hash']}-s1" / "result.json"
    written = path.stat().st_mtime_ns
    runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path)
    assert path.stat().st_mtime_ns == written  # same code: skipped
    monkeypatch.setattr(runner.environment, "code_hash", lambda module: "0123456789ab")
    again = runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path)
    assert first["env"]["code_hash"] != "0123456789ab" == again["env"]["code_hash"]
    assert path.stat().st_mtime_ns != written and "stale" in capsys.readouterr().err
    written = path.stat().st_mtime_ns
    runner.execute(runner.RunSpec("_toy", "smoke", 1), tmp_path)
    assert path.stat().st_mtime_ns == written


def test_failure_writes_error_json_only(tmp_path):
    rec = runner.execute(runner.RunSpec("_toy", "smoke", 0, ("fail=true",)), tmp_path)
    assert rec["status"] == "failed" and "toy failure requested" in rec["error"]
    folder = tmp_path / "_toy" / "smoke" / f"{rec['config_hash']}-s0"
    assert (folder / "error.json").exists() and not (folder / "result.json").exists()
    assert "Traceback" in json.loads((folder / "error.json").read_text())["traceback"]


def test_dry_run_writes_nothing(tmp_path):
    rec = runner.execute(runner.RunSpec("_toy", "full", 0), tmp_path, dry_run=True)
    assert rec["status"] == "dry-run" and not any(tmp_path.iterdir())


def test_bad_input_raises_suite_errors(tmp_path):
    with pytest.raises(UnknownNameError):
        runner.execute(runner.RunSpec("_toy", "smoke", 0, ("nope=1",)), tmp_path)
    with pytest.raises(SuiteError, match="no CUDA"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        runner.execute(runner.RunSpec("_toy", "smoke", 0), tmp_path, device="cuda")


def test_jobs_file_reports_requeues(tmp_path):
    spec = runner.RunSpec("_toy", "smoke", 0)
    folder = runner.run_dir(spec, tmp_path)
    folder.mkdir(parents=True)
    (folder / "jobs.json").write_text(json.dumps([{"job_id": "11"}, {"job_id": "12"}]))
    rec = runner.execute(spec, tmp_path)
    assert rec["env"]["slurm_job_ids"] == ["11", "12"] and rec["env"]["requeues"] == 1


def test_status_sees_running_interrupted_corrupt_and_killed_runs(tmp_path):
    """`suite status` tells running / interrupted / corrupt / done from the run folder alone, and
    survives a result.json that is a list, a folder or random bytes."""
    import json
    import os

    from suite import status
    from suite.registry import temporarily
    from tests.toy import TOY

    with temporarily(TOY):
        rec = runner.execute(runner.RunSpec("_toy", "small", 0), tmp_path)
        base = tmp_path / "_toy" / "small"
        done = base / f"{rec['config_hash']}-s0"
        live, dead, intr, lst, dirr, raw = (base / f"{rec['config_hash']}-s{i}" for i in range(1, 7))
        for d in (live, dead, intr, lst, dirr, raw):
            d.mkdir()
        (live / runner.RUNNING_FILE).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                            "started": "x"}))
        (dead / runner.RUNNING_FILE).write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename}))
        (intr / runner.RUNNING_FILE).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                            "interrupted": True}))
        (lst / runner.RESULT_FILE).write_text("[1, 2]")
        (dirr / runner.RESULT_FILE).mkdir()
        (raw / runner.RESULT_FILE).write_bytes(b"\x00\xff garbage")
        df = status.collect(tmp_path)
    state = dict(zip(df.seed, df.state))
    assert state == {0: "done", 1: "running", 2: "interrupted", 3: "interrupted", 4: "corrupt", 5: "corrupt",
                     6: "corrupt"}
    assert "corrupt" in status.render(df)
    assert done.exists() and not (done / runner.RUNNING_FILE).exists()


def test_concurrent_runs_of_one_run_compute_it_once(tmp_path):
    """Two processes asked for the same run: the second waits on the folder lock and reuses the record."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # not fork: a forked child of a process that ran torch can hang
    q = ctx.Queue()
    procs = [ctx.Process(target=_run_toy, args=(tmp_path, q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    starts = {q.get(timeout=5) for _ in procs}
    assert len(starts) == 1, "the run was computed twice"


def _run_toy(root, q):
    from suite.registry import temporarily
    from tests.toy import TOY

    with temporarily(TOY):
        q.put(runner.execute(runner.RunSpec("_toy", "small", 0, ("n=200000",)), root)["started"] +
              str(runner.execute(runner.RunSpec("_toy", "small", 0, ("n=200000",)), root)["wall_s"]))


def test_jobs_run_in_separate_processes_with_the_same_records(tmp_path):
    """`suite run --jobs 2`: runs finish in their own processes and store what a sequential run stores."""
    specs = [runner.RunSpec("io_vs_es", "smoke", s) for s in (0, 1)]
    par = dict(runner.execute_many(specs, tmp_path / "par", jobs=2))
    seq = dict(runner.execute_many(specs, tmp_path / "seq", jobs=1))
    assert set(par) == set(specs)
    for spec in specs:
        assert par[spec]["status"] == "ok"
        same = {k: v for k, v in par[spec]["metrics"].items() if not rehearsal.is_timing(k)}
        assert same and same == {k: v for k, v in seq[spec]["metrics"].items() if not rehearsal.is_timing(k)}
        assert runner.is_done(spec, tmp_path / "par")
    with pytest.raises(SuiteError, match="--jobs"):
        list(runner.execute_many(specs, tmp_path, jobs=0))
