"""slurm/gpu-check.sh runs on the CPU with tiny sizes: every bench writes its record, a smoke run on the
device is recorded, and bad input is one line with exit 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "slurm" / "gpu-check.sh"), *args, "--out", str(tmp)],
                          capture_output=True, text=True, env=env, cwd=tmp)


def test_gpu_check_script_on_cpu(tmp_path):
    p = _run("--device", "cpu", "--budget", "tiny", "--smoke", "ppp", "--rehearse", "mig", tmp=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    recs = {f.name.split("-", 1)[1]: json.loads(f.read_text()) for f in (tmp_path / "gpu-check").glob("*.json")}
    assert set(recs) == {"smoke.json", "rehearsal.json", "s4d-listops.json", "resnet18-cifar10.json",
                         "llama-decode.json", "tinylm-kv-decode.json"}
    assert recs["smoke.json"]["runs"] == {"ppp": "ok"} and recs["rehearsal.json"]["runs"] == {"mig": "ok"}
    assert (tmp_path / "mig" / "rehearsal").is_dir()
    assert recs["s4d-listops.json"]["metrics"]["steps_per_s"] > 0 and recs["llama-decode.json"]["error"] is None
    assert recs["tinylm-kv-decode.json"]["metrics"]["same_tokens"] == 1.0
    assert all(r["device"].startswith("cpu") and "git_sha" in r["env"] for r in recs.values())
    assert (tmp_path / "ppp" / "smoke").is_dir()  # the smoke record itself, as any run's


def test_gpu_check_bad_input(tmp_path):
    p = _run("--device", "cpu", "--benches", "nope", tmp=tmp_path)
    assert p.returncode == 2 and "unknown bench 'nope'" in p.stderr
    p = _run("--device", "tpu", "--budget", "tiny", "--smoke", "none", "--rehearse", "none", tmp=tmp_path)
    assert p.returncode == 2 and "use cpu, cuda or cuda:N" in p.stderr
