"""Time submitting N runs as ONE job array versus N single submissions (the numbers in slurm/README.md).

Run from the repository root with a cluster up (slurm/local-cluster/up.sh):
    PYTHONPATH=. python slurm/local-cluster/bench_submit.py [N]
Jobs are submitted held (``sbatch --hold``) and cancelled at the end, so nothing runs.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite import executors, registry, runner
from tests.toy import TOY


def main(n: int = 200) -> None:
    prof = dataclasses.replace(executors.load_profile("local"), sbatch={"hold": True})
    ids: list[str] = []
    with registry.temporarily(TOY), tempfile.TemporaryDirectory() as tmp:
        specs = [runner.RunSpec("_toy", "smoke", s) for s in range(n)]
        kw = dict(executor="slurm", profile=prof, allow_dirty=True, extra=("tests.toy:TOY",))
        t0 = time.perf_counter()
        subs = executors.submit_runs(specs, results_root=Path(tmp) / "array", folder=Path(tmp) / "sa", **kw)
        t_array = time.perf_counter() - t0
        ids += [s.job_id for s in subs]
        t0 = time.perf_counter()
        for spec in specs:
            subs = executors.submit_runs([spec], results_root=Path(tmp) / "single", folder=Path(tmp) / "ss", **kw)
            ids += [s.job_id for s in subs]
        t_single = time.perf_counter() - t0
        arrays = executors.array_ids(ids)
        subprocess.run(["scancel", *arrays], check=False)
    print(f"{n} runs: one array {t_array:.2f} s ({len(executors.array_ids(ids[:n]))} sbatch call); "
          f"{n} single submissions {t_single:.2f} s ({n} sbatch calls); ratio {t_single / t_array:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
