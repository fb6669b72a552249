"""The GPU check (issue 16): what a lent GPU machine runs first, in one command of at most ten minutes.

1. Every reproduction's smoke run on the device (``--device cuda``): the smoke paths share their code
   with full scale, so a tensor left on the CPU, a ``.numpy()`` of a device tensor or a module that
   ``.to(device)`` does not reach fails here, in minutes, not after hours of a full run. Then every
   reproduction that declares its rehearsal budget (``reproductions/<slug>/rehearsal.toml``) rehearses
   its full-scale path on the device (``suite run <slug> --scale full --rehearse --device cuda``).
2. Throughput of three full-scale configurations at the papers' batch sizes and lengths, and of KV-cached decoding:
   ``s4d-listops`` (S4D-Inv on LRA ListOps with the paper's pinned config, ``reproductions/s4d/tasks.py``:
   8 layers, H = 128, N = 64, batch 50, length 2048; training steps/s and peak memory), ``resnet18-cifar10`` (ResNet-18, CIFAR stem, batch 128, 32x32; training
   images/s), ``llama-decode`` (greedy decoding of a random-weight Llama-3-8B-architecture causal LM
   in bf16, batch 8, prompt 128, 128 new tokens; tokens/s) and ``tinylm-kv-decode`` (``TransformerLM``
   sampling with ``suite.models.decoding``'s KV cache against ``TransformerLM.generate``: the same tokens,
   and the speed ratio).

Each measurement is one JSON record under ``<out>/gpu-check/`` with the device name, the environment
and the budget. ``--budget tiny`` shrinks every size (and skips nothing), so the whole script is tested
on the CPU (``python -m suite.gpucheck --device cpu --budget tiny``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from suite import environment
from suite.io import atomic_write_json

SCHEMA = "gpu-check/1"
BUDGETS: dict[str, dict[str, Any]] = {
    # the papers' sizes (s4d: LRA ListOps config; resnet18: CIFAR-10 batch 128; llama: Llama-3-8B dims)
    "full": {"steps": 20, "warmup": 3, "s4d": "listops",  # the pinned ListOps config of reproductions/s4d
             "resnet": dict(batch=128), "llama": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336,
                                                       vocab=128256, batch=8, prompt=128, new=128),
             "tinylm": dict(dim=512, depth=8, heads=8, vocab=512, batch=64, prompt=128, new=256)},
    "tiny": {"steps": 2, "warmup": 1, "s4d": dict(batch=2, length=64, d_model=16, n_layers=2, d_state=4),
             "resnet": dict(batch=4), "llama": dict(hidden=32, layers=2, heads=2, kv_heads=1, ffn=64, vocab=128,
                                                    batch=2, prompt=8, new=4),
             "tinylm": dict(dim=32, depth=2, heads=4, vocab=64, batch=4, prompt=8, new=8)},
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_mb(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def _timed_steps(step: Callable[[], None], warmup: int, steps: int, dev: torch.device) -> float:
    """Seconds per step after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    return (time.perf_counter() - t) / steps


def bench_s4d_listops(dev: torch.device, b: dict[str, Any]) -> dict[str, float]:
    from reproductions.s4d.model import ModelConfig, S4DClassifier
    from suite.models.ssm import SSMConfig

    s = b["s4d"]
    if isinstance(s, str):  # a task name: its sizes from the pinned LRA table (never drifts from s4d's full)
        from reproductions.s4d.tasks import lra_task

        t = lra_task(s)
        s = dict(batch=t.batch_size, length=t.seq_len, d_model=t.d_model, n_layers=t.n_layers, d_state=t.d_state)
    ssm = SSMConfig(d_state=s["d_state"], init="inv", disc="zoh", dt_min=1e-3, dt_max=0.1, lr=1e-3, lr_dt=None,
                    bidirectional=True)
    model = S4DClassifier(ModelConfig(n_classes=10, d_model=s["d_model"], n_layers=s["n_layers"], vocab=18,
                                      norm="batch", pool="mean", ssm=ssm)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 18, (s["batch"], s["length"]), generator=g).to(dev)
    y = torch.randint(0, 10, (s["batch"],), generator=g).to(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    sec = _timed_steps(step, b["warmup"], b["steps"], dev)
    return {"steps_per_s": 1.0 / sec, "tokens_per_s": s["batch"] * s["length"] / sec, "peak_mem_mb": _peak_mb(dev)}


def bench_resnet18_cifar10(dev: torch.device, b: dict[str, Any]) -> dict[str, float]:
    from suite.models.resnet import resnet18

    model = resnet18(num_classes=10).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b["resnet"]["batch"], 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (b["resnet"]["batch"],), generator=g).to(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    sec = _timed_steps(step, b["warmup"], b["steps"], dev)
    return {"images_per_s": b["resnet"]["batch"] / sec, "peak_mem_mb": _peak_mb(dev)}


def bench_llama_decode(dev: torch.device, b: dict[str, Any]) -> dict[str, float]:
    from suite.models.hf import _transformers

    tr, s = _transformers(), b["llama"]
    conf = tr.LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
                          num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                          num_key_value_heads=s["kv_heads"], max_position_embeddings=8192, eos_token_id=None,
                          pad_token_id=0, bos_token_id=0)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):  # random weights made on the device (16 GB in bf16 at full budget)
        model = tr.LlamaForCausalLM(conf).to(dtype).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, s["vocab"], (s["batch"], s["prompt"]), generator=g).to(dev)

    @torch.no_grad()
    def step() -> None:
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=s["new"], min_new_tokens=s["new"],
                       do_sample=False)

    sec = _timed_steps(step, 1, max(1, b["steps"] // 10), dev)
    return {"new_tokens_per_s": s["batch"] * s["new"] / sec, "peak_mem_mb": _peak_mb(dev)}


def bench_tinylm_kv_decode(dev: torch.device, b: dict[str, Any]) -> dict[str, float]:
    """Greedy decoding of a random ``TransformerLM`` with and without the KV cache: tokens/s of each, their
    ratio, and whether the tokens agree (``same_tokens`` 1.0; an error if they do not)."""
    from suite.models.decoding import generate
    from suite.models.transformer import TransformerLM

    s = b["tinylm"]
    torch.manual_seed(0)
    model = TransformerLM(s["vocab"], max_len=s["prompt"] + s["new"], dim=s["dim"], depth=s["depth"],
                          heads=s["heads"]).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, s["vocab"], (s["batch"], s["prompt"]), generator=g).to(dev)
    out: dict[str, torch.Tensor] = {}
    secs = {}
    for name, fn in (("uncached", lambda: model.generate(ids, s["new"], temperature=0.0)),
                     ("cached", lambda: generate(model, ids, s["new"], temperature=0.0))):
        secs[name] = _timed_steps(lambda fn=fn, name=name: out.__setitem__(name, fn()), 1, 1, dev)
    if not torch.equal(out["cached"], out["uncached"]):
        raise AssertionError("KV-cached decoding gave other tokens than TransformerLM.generate on this device")
    n = s["batch"] * s["new"]
    return {"cached_tokens_per_s": n / secs["cached"], "uncached_tokens_per_s": n / secs["uncached"],
            "speedup": secs["uncached"] / secs["cached"], "same_tokens": 1.0, "peak_mem_mb": _peak_mb(dev)}


BENCHES: dict[str, Callable[[torch.device, dict[str, Any]], dict[str, float]]] = {
    "s4d-listops": bench_s4d_listops, "resnet18-cifar10": bench_resnet18_cifar10, "llama-decode": bench_llama_decode,
    "tinylm-kv-decode": bench_tinylm_kv_decode}


def smoke_on_device(device: str, slugs: list[str], results: Path) -> dict[str, str]:
    """Each reproduction's smoke run on ``device``, one process each (a crash stays one line)."""
    out = {}
    for slug in slugs:
        p = subprocess.run([sys.executable, "-m", "suite.cli", "run", slug, "--scale", "smoke", "--device", device,
                            "--results", str(results), "--force"], capture_output=True, text=True)
        out[slug] = "ok" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["failed"])[-1][:300]
        print(f"gpu-check: smoke {slug} on {device}: {out[slug]}", flush=True)
    return out


def rehearse_on_device(device: str, slugs: list[str], results: Path) -> dict[str, str]:
    """Each declared reproduction's full-scale rehearsal on ``device``, one process each."""
    out = {}
    for slug in slugs:
        p = subprocess.run([sys.executable, "-m", "suite.cli", "run", slug, "--scale", "full", "--rehearse",
                            "--device", device, "--results", str(results)], capture_output=True, text=True)
        out[slug] = "ok" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["failed"])[-1][:300]
        print(f"gpu-check: rehearsal {slug} on {device}: {out[slug]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suite.gpucheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--benches", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES))
    ap.add_argument("--smoke", default="all", help="'all', 'none' or comma-separated reproductions")
    ap.add_argument("--rehearse", default="all",
                    help="'all' (every reproduction with a rehearsal.toml), 'none' or comma-separated reproductions")
    a = ap.parse_args(argv)
    unknown = [x for x in a.benches.split(",") if x and x not in BENCHES]
    if unknown:
        ap.exit(2, f"suite.gpucheck: unknown bench {unknown[0]!r}; use some of {', '.join(BENCHES)}\n")
    from suite.errors import SuiteError

    try:
        dev = environment.pick_device(a.device)
    except SuiteError as err:
        ap.exit(2, f"suite.gpucheck: {err}\n")
    from suite import registry

    slugs = [] if a.smoke == "none" else (sorted(s for s in registry.discover() if not s.startswith("_"))
                                          if a.smoke == "all" else a.smoke.split(","))
    from suite import rehearsal

    declared = sorted(s for s in registry.discover() if not s.startswith("_") and rehearsal.declaration(s).exists())
    rehearse = [] if a.rehearse == "none" else (declared if a.rehearse == "all" else a.rehearse.split(","))
    folder = a.out / "gpu-check"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    env = environment.capture(dev)
    failed = 0
    if slugs:
        smoke = smoke_on_device(a.device, slugs, a.out)
        failed += sum(v != "ok" for v in smoke.values())
        atomic_write_json(folder / f"{stamp}-smoke.json", {"schema": SCHEMA, "kind": "smoke-on-device",
                                                             "device": env["device"], "env": env, "runs": smoke})
    if rehearse:
        reh = rehearse_on_device(a.device, rehearse, a.out)
        failed += sum(v != "ok" for v in reh.values())
        atomic_write_json(folder / f"{stamp}-rehearsal.json", {"schema": SCHEMA, "kind": "rehearsal-on-device",
                                                                 "device": env["device"], "env": env, "runs": reh})
    for name in [x for x in a.benches.split(",") if x]:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        try:
            metrics, error = BENCHES[name](dev, BUDGETS[a.budget]), None
        except Exception as exc:  # one bench failing must not hide the others' numbers
            metrics, error = {}, f"{type(exc).__name__}: {exc}"
            failed += 1
        rec = {"schema": SCHEMA, "kind": "throughput", "bench": name, "budget": a.budget, "device": env["device"],
               "config": BUDGETS[a.budget], "metrics": metrics, "error": error, "env": env,
               "started": stamp, "wall_s": time.perf_counter() - t0}
        atomic_write_json(folder / f"{stamp}-{name}.json", rec)
        print(f"gpu-check: {name} on {env['device']}: " + (error or json.dumps(
            {k: v if v is None else round(v, 2) for k, v in metrics.items()})), flush=True)
    print(f"gpu-check: records in {folder}; {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
