"""Full scale (spec §5): a Hugging Face T2I model (Lumina-mGPT / Emu3 / LlamaGen folder) decodes
image tokens for MS-COCO val2017 captions with AR, Jacobi and SJD at batch 1."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.errors import ConfigError, CorruptDataError, DataNotFoundError
from suite.models.hf import load_causal_lm, tiny_random_lm
from suite.data.external import locate
from suite.spec import DatasetRef, Outcome

from .method import ar_sample, sjd_sample
from .models import HFProbModel
from .stats import bigram_permutation_test, marginal_two_sample


HOW = "put captions_val2017.json there (from annotations_trainval2017.zip of MS-COCO 2017)"


def write_fixture(folder: Path) -> None:
    """One image with one caption in the COCO captions format (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "captions_val2017.json").write_text(json.dumps(
        {"annotations": [{"image_id": 1, "id": 1, "caption": "a cat sitting on a red couch"}]}))


def coco_captions(path: Path, n: int) -> list[str]:
    """One caption per image (the first by annotation id), images in id order (spec §5)."""
    if not path.is_file():
        raise DataNotFoundError(f"COCO captions not found at {path}; put captions_val2017.json under "
                                f"<data_root>/coco/annotations/ (from annotations_trainval2017.zip)")
    try:
        anns = json.loads(path.read_text())["annotations"]
    except (json.JSONDecodeError, KeyError) as err:
        raise CorruptDataError(f"{path} is not a COCO captions file ({err}); re-extract annotations_trainval2017.zip") from None
    first: dict[int, tuple[int, str]] = {}
    for a in anns:  # file parsing, once
        img, aid = int(a["image_id"]), int(a["id"])
        if img not in first or aid < first[img][0]:
            first[img] = (aid, a["caption"].strip())
    return [first[k][1] for k in sorted(first)][:n]


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    gen = ctx.generator()
    # COCO val2017 captions (§5): the ref (paper, or a stand-in fixture in a dry run) comes from the loader
    cap_file = Path(cfg.captions)
    folder, ref = locate(ctx, "coco-val2017-captions", str(cap_file.parent), [cap_file.name], HOW,
                         fixture=write_fixture)
    captions = coco_captions(folder / cap_file.name, cfg.n_prompts if not ctx.dry_run else 1)
    if ctx.dry_run:
        model, lo, hi, n_tok = tiny_random_lm("llama", 96, max_len=512), 32, 96, 16
        encode = lambda s: torch.tensor([[1] + [3 + (b % 28) for b in s.encode()]])  # noqa: E731
    else:
        if ctx.data_root is None:
            raise DataNotFoundError("full scale needs --data-root (or SUITE_DATA) holding "
                                    f"{cfg.model_dir}/ (HF folder) and {cfg.captions}")

        lm = load_causal_lm(Path(ctx.data_root) / cfg.model_dir, ctx.device)
        model, lo, hi, n_tok = lm.model, cfg.image_token_lo, cfg.image_token_hi, cfg.n_image_tokens
        encode = lambda s: lm.tokenizer(s, return_tensors="pt")["input_ids"]  # noqa: E731
    side = int(math.isqrt(n_tok))
    if side * side != n_tok:
        raise ConfigError(f"n_image_tokens={n_tok} is not a square grid; set it to side*side")
    uncond = encode(cfg.prompt_template.format(caption=""))
    toks: dict[str, list[torch.Tensor]] = {"ar": [], "sjd": [], "jacobi": []}
    nfe = {k: 0 for k in toks}
    wall = {k: 0.0 for k in toks}
    for cap in ctx.progress(captions, desc="prompts"):
        pm = HFProbModel(model, encode(cfg.prompt_template.format(caption=cap)), uncond, lo, hi,
                         cfg.cfg_scale, cfg.full_top_k)
        for name in toks:
            t0 = time.perf_counter()
            dec = (ar_sample(pm, n_tok, 1, gen) if name == "ar" else
                   sjd_sample(pm, n_tok, cfg.image_window, 1, gen, jacobi=name == "jacobi", variant=cfg.variant))
            wall[name] += time.perf_counter() - t0
            nfe[name] += int(dec.nfe.sum())
            toks[name].append(dec.tokens)
    n = len(captions) * n_tok
    m = {f"image_{k}_step_compression": n / max(v, 1) for k, v in nfe.items()}
    m["image_sjd_over_jacobi_compression"] = m["image_sjd_step_compression"] / m["image_jacobi_step_compression"]
    m["image_sjd_latency_speedup"] = wall["ar"] / max(wall["sjd"], 1e-9)
    a, s = torch.cat(toks["ar"]), torch.cat(toks["sjd"])
    m["image_marginal_p_value"] = marginal_two_sample(a, s, hi - lo)
    m["image_bigram_p_value"] = bigram_permutation_test(a, s, hi - lo, side, gen=gen)
    if ctx.dry_run:
        return Outcome(metrics=m, dataset=ref)
    from . import _exactness

    # the exactness block runs on the enumerated trigram (generated here), not on COCO: its claims say so
    exact = _exactness(cfg, gen, ctx)
    m.update(exact)
    return Outcome(metrics=m, dataset=ref,
                   metric_datasets={k: DatasetRef("trigram-enumerated", "stand-in") for k in exact})
