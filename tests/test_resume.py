"""Kill -9 and resume, for every reproduction that checkpoints: the metrics must be bit-identical.

Each case runs the reproduction's smoke scale in a subprocess twice on fresh results roots: once
uninterrupted, once with ``SUITE_KILL_AFTER_CHECKPOINT`` set, so that every ``fit`` of the run
the first fit to write a periodic checkpoint SIGKILLs its own process right after it
(``suite/train.py``); the run is then relaunched and must resume from that checkpoint. Every non-timing metric of the two records must be equal, exactly.
A reproduction "checkpoints" when a config field ``checkpoint_every`` exists (set here to a small
value) or its fits always checkpoint (``ALWAYS``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from suite import config, registry

# s4d's LRA fits and self_pretraining's fits checkpoint once per epoch whatever the config, but their
# smoke scale writes no periodic checkpoint (one short epoch), so they have no case here.
ALWAYS: tuple[str, ...] = ()
EVERY = 2  # checkpoint_every for the configs that have the field
# Wall-clock and throughput metrics differ between any two runs; everything else must not.
TIMING = re.compile(r"(^|_)(s|sec|secs|seconds|time|times|wall|ms|speedup|throughput|per_s|latency|tok_s)($|_|@|/)")
TIMING_DERIVED = {"bibench": ("om_train",)}  # BiBench's training-efficiency score is a time ratio


def _checkpointing() -> list[str]:
    out = []
    for slug, repro in sorted(registry.discover().items()):
        if slug in ALWAYS or "checkpoint_every" in config.field_types(repro.config):
            out.append(slug)
    return out


def _run(slug: str, root: Path, kill: bool) -> tuple[int, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SUITE_KILL_AFTER_CHECKPOINT", None)
    if kill:
        env["SUITE_KILL_AFTER_CHECKPOINT"] = "1"
    args = [sys.executable, "-m", "suite.cli", "run", slug, "--scale", "smoke", "--seeds", "0",
            "--results", str(root)]
    if slug not in ALWAYS:
        args += ["--set", f"checkpoint_every={EVERY}"]
    kills = 0
    for _ in range(3):
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode == -9:
            kills += 1
            continue
        assert p.returncode == 0, p.stderr[-2000:]
        break
    else:
        pytest.fail(f"{slug}: still being killed after 3 launches")
    rec = json.loads(next(root.rglob("result.json")).read_text())
    return kills, rec


def test_every_checkpointing_reproduction_is_found():
    found = _checkpointing()
    assert {"bibench", "gedi", "layer_lottery", "lottery_ticket"} <= set(found), found


@pytest.mark.parametrize("slug", _checkpointing())
def test_kill_and_resume_is_bit_identical(slug, tmp_path):
    _, whole = _run(slug, tmp_path / "whole", kill=False)
    kills, resumed = _run(slug, tmp_path / "killed", kill=True)
    assert kills >= 1, f"{slug}: no fit was killed (no periodic checkpoint written at smoke scale?)"
    assert whole["status"] == resumed["status"] == "ok"
    assert resumed["notes"].get("resumed_from_step"), "the relaunch did not resume from a checkpoint"
    keys = sorted(k for k in whole["metrics"] if not TIMING.search(k)
                  and not k.startswith(TIMING_DERIVED.get(slug, ("\0",))))
    differ = {k: (whole["metrics"][k], resumed["metrics"].get(k)) for k in keys
              if whole["metrics"][k] != resumed["metrics"].get(k)}
    assert not differ, f"{slug}: {len(differ)} of {len(keys)} metrics differ after {kills} kills: {differ}"
