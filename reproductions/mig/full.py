"""Full scale (spec §5): the annotated Tulu-3 pool (HF ``xsample/tulu-3-pool-annotated``, jsonl) read
from disk, the official valid-tag list, label embeddings computed with e5-mistral-7b-instruct and saved
to disk; MIG and the baselines select 50K; the selected subsets are written as jsonl (the input of the
paper's LLaMA-Factory SFT, which runs outside this suite) and their label statistics are reported.

Layout under the data root::

    mig/tulu-3-pool-annotated/pool.jsonl              one sample per line: dialogs, annotation.instag.content,
                                                      annotation.deita.{quality_scores, complexity_scores}
    mig/tulu-3-pool-annotated/valid_tag_path.json     the official configs/valid_tag_path.json (4,531 tags)
    mig/tulu-3-pool-annotated/label_embeddings.pt     {"labels": [str], "embeddings": (L, D) float}
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.spec import DatasetRef

from . import method as M
from .experiment import label_space, select_all, subset_stats

NAME = "tulu-3-pool-annotated"
HOW = ("download the jsonl of HF dataset xsample/tulu-3-pool-annotated as pool.jsonl, copy configs/valid_tag_path.json "
       "of github.com/yichengchen24/MIG, and save label_embeddings.pt = {'labels': sorted valid tags present, "
       "'embeddings': e5-mistral-7b-instruct normalised embeddings} (README 'Full scale')")


def _write_fixture(folder: Path) -> None:
    """A few rows in the published format (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    tags = ["mathematics", "algebra", "python programming", "program", "translation", "logic"]
    rows = []
    for i in range(12):
        t = [tags[i % 6], tags[(i * 5 + 1) % 6]]
        rows.append({"dialogs": [{"role": "user", "content": f"question {i}"},
                                 {"role": "assistant", "content": f"answer {i}"}],
                     "annotation": {"instag": {"content": t + ["not-a-valid-tag"]},
                                    "deita": {"quality_scores": [3.0 + i % 3], "complexity_scores": [1.0 + i % 2]}}})
    (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "valid_tag_path.json").write_text(json.dumps(tags))
    torch.save({"labels": sorted(tags), "embeddings": M.trigram_embeddings(sorted(tags))}, folder / "label_embeddings.pt")


def load_pool(cfg: Any, ctx: RunContext) -> tuple[dict[str, Any], DatasetRef]:
    """Spec §3 per sample: labels = InsTag tags kept by the valid-tag list; s = mean over turns of
    DEITA quality x complexity; samples missing either annotation are dropped."""
    folder, ref = locate(ctx, NAME, cfg.pool_dir, [cfg.pool_file, cfg.valid_tags_file, cfg.label_emb_file], HOW,
                         fixture=_write_fixture)
    valid = set(json.loads((folder / cfg.valid_tags_file).read_text()))
    tags, scores, lines = [], [], []
    with open(folder / cfg.pool_file) as fh:
        for ln, line in enumerate(fh):
            if cfg.max_pool and len(tags) >= cfg.max_pool:
                break
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise DataNotFoundError(f"{folder / cfg.pool_file}: line {ln + 1} is not JSON (corrupt file?)") from None
            ann = d.get("annotation") or {}
            ins, dei = ann.get("instag") or {}, ann.get("deita") or {}
            if not ins or not dei or not dei.get("quality_scores"):
                continue
            q, c = dei["quality_scores"], dei["complexity_scores"]
            scores.append(sum(a * b for a, b in zip(q, c)) / len(q))
            tags.append([t for t in ins["content"] if t in valid])
            lines.append(ln)
    blob = torch.load(folder / cfg.label_emb_file, weights_only=True)
    table = {t: i for i, t in enumerate(blob["labels"])}
    missing = sorted({t for ts in tags for t in ts} - set(table))
    if missing:
        raise DataNotFoundError(f"{folder / cfg.label_emb_file}: no embedding for {len(missing)} labels "
                                f"(e.g. {missing[:3]}); recompute it over the pool's valid tags")
    emb = blob["embeddings"].float()
    return {"tags": tags, "scores": torch.tensor(scores), "lines": lines, "folder": folder,
            "emb_fn": lambda labels: torch.nn.functional.normalize(emb[[table[t] for t in labels]], dim=-1)}, ref


def full_protocol(cfg: Any, ctx: RunContext, variant: str) -> tuple[dict[str, float], DatasetRef]:
    data, ref = load_pool(cfg, ctx)
    t0 = time.perf_counter()
    space = label_space(data["tags"], data["scores"], data["emb_fn"], cfg, ctx.device)
    ctx.log("mig: %d samples, %d labels, mean degree %.2f, graph %.1fs", len(data["tags"]), len(space["labels"]),
            M.mean_degree(space["w"]), time.perf_counter() - t0)
    if ctx.dry_run:
        return {}, ref
    out: dict[str, float] = {"n_pool": float(len(data["tags"])), "n_labels": float(len(space["labels"])),
                             "label_mean_degree": M.mean_degree(space["w"]),
                             "prop_colsum_err": float((space["p"].sum(0) - 1).abs().max())}
    sel, secs = select_all(cfg, space, data["scores"], ctx, variant)
    out_dir = ctx.run_dir / "selected"
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {arm: set(data["lines"][i] for i in idx.tolist()) for arm, idx in sel.items()}
    handles = {arm: open(out_dir / f"{arm}-{cfg.k}.jsonl", "w") for arm in sel}
    with open(data["folder"] / cfg.pool_file) as fh:
        for ln, line in enumerate(fh):
            for arm, lns in wanted.items():
                if ln in lns:
                    handles[arm].write(line)
    for h in handles.values():
        h.close()
    for arm, idx in sel.items():
        st = subset_stats(idx, space["tags"], data["scores"])
        out.update({f"{arm}_{k}": v for k, v in st.items()})
        out[f"{arm}_select_s"] = secs[arm]
    return out, ref
