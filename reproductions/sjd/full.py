"""Full scale (spec §5): a Hugging Face T2I model (Lumina-mGPT / Emu3 / LlamaGen folder) decodes
image tokens for MS-COCO val2017 captions with AR, Jacobi and SJD at batch 1, with a KV cache; the
tokens are decoded to pixels by the model's VQGAN and scored with FID (against the captions' COCO
images) and CLIP-Score (C3)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import ConfigError, CorruptDataError, DataNotFoundError
from suite.models.hf import load_causal_lm
from suite.models.locate import locate_model
from suite.spec import Outcome

from .method import ar_sample, sjd_sample
from .models import HFProbModel
from .quality import ClipScorer, InceptionFeatures, frechet_distance, resize_299
from .stats import bigram_permutation_test, marginal_two_sample
from . import quality, vq

HOW = "put captions_val2017.json there (from annotations_trainval2017.zip of MS-COCO 2017)"
HOW_IMAGES = "unzip val2017.zip of MS-COCO 2017 there (000000000139.jpg, ...)"
SAMPLERS = ("ar", "sjd", "jacobi")
FIXTURE_IMAGES = 4
DRY_PROMPTS, DRY_TOKENS = 2, 16  # a dry run builds the pipeline on this many prompts / image tokens
# The model fixture's vocabulary has Chameleon's shape (lumina_mgpt/data/item_processor.py,
# chameleon_vae_ori/vocab.py): ids 0-3 special, 4..8195 image tokens named IMGIMG<code letters>Z,
# 8196 <eoss> (image end), 8197 <racm3:break> (image start), <reservedNNNNN> at id NNNNN + 4 (the
# offset the repo's `tokens[0] - 8804` grid arithmetic implies), then printable characters.
FIXTURE_RESERVED = range(8194, 8826)  # <reserved08194> .. <reserved08825> at ids 8198 .. 8829
FIXTURE_VOCAB = 8830 + 96  # + printable ASCII (95) and newline
FIXTURE_CODE_STRIDE = 7919  # fixture code of image id 4 + k is (k * 7919) mod 8192: not the offset map

_FIXTURE_CAPTIONS = ["a cat sitting on a red couch", "two dogs running on a beach",
                     "a bowl of fruit on a wooden table", "a red bus parked on a city street"]


def write_fixture(folder: Path) -> None:
    """Four images with one caption each in the COCO captions format (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = range(1, FIXTURE_IMAGES + 1)
    (folder / "captions_val2017.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 24, "width": 32} for i in ids],
        "annotations": [{"image_id": i, "id": 10 * i, "caption": c} for i, c in zip(ids, _FIXTURE_CAPTIONS)]}))


def write_images_fixture(folder: Path, names: Sequence[str] = ()) -> None:
    """Small random JPEGs named like the captions fixture's images, and ``names`` (dry runs only)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for name in dict.fromkeys([f"{i:012d}.jpg" for i in range(1, FIXTURE_IMAGES + 1)] + list(names)):
        px = torch.randint(0, 256, (24, 32, 3), generator=g, dtype=torch.uint8)
        Image.fromarray(px.numpy()).save(folder / name)


def _code_name(code: int) -> str:
    """Chameleon's image-token name of VQ code ``code`` (digits 0..9 written as letters A..J)."""
    return "IMGIMG" + "".join(chr(ord("A") + int(c)) for c in str(code)) + "Z"


def fixture_tokenizer() -> Any:
    """A fast tokenizer with the Chameleon-shaped vocabulary described at ``FIXTURE_RESERVED`` (character
    level for text; the reserved and image-token names are kept whole)."""
    import tokenizers
    import transformers

    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3}
    vocab.update({_code_name(k * FIXTURE_CODE_STRIDE % 8192): 4 + k for k in range(8192)})
    vocab.update({"<eoss>": 8196, "<racm3:break>": 8197})
    vocab.update({f"<reserved{n:05d}>": n + 4 for n in FIXTURE_RESERVED})
    for c in [chr(c) for c in range(32, 127)] + ["\n"]:
        vocab[c] = len(vocab)
    assert len(vocab) == FIXTURE_VOCAB and sorted(vocab.values()) == list(range(FIXTURE_VOCAB))
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(r"<reserved\d{5}>|<[a-z0-9:]+>|."),
                                                        behavior="isolated")
    raw.decoder = tokenizers.decoders.Fuse()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>", unk_token="<unk>")


def write_model_fixture(folder: Path) -> None:
    """A tiny random Llama with the Chameleon-shaped fixture vocabulary (dry runs; stand-in)."""
    from suite.models.hf import tiny_random_lm

    tok = fixture_tokenizer()
    model = tiny_random_lm("llama", FIXTURE_VOCAB, 4096, 0, tok.eos_token_id, tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def coco_captions(path: Path, n: int) -> list[tuple[str, str]]:
    """``(image file name, caption)``: one caption per image, images in id order (spec §5), chosen as the
    repo's ``MSCOCOPromptBench._init_coco_dataset_dict`` does (dataset_tools/dataset_templates.py): the
    captions of an image are read in file order, and its caption is the one at the relative index where
    the character length last exceeded the running maximum. That maximum and index are NOT reset between
    images (as in the repo), so it is the longest caption of an image only while that image sets a new
    overall record; otherwise the previous record's relative index is reused."""
    if not path.is_file():
        raise DataNotFoundError(f"COCO captions not found at {path}; put captions_val2017.json under "
                                f"<data_root>/coco/annotations/ (from annotations_trainval2017.zip)")
    try:
        data = json.loads(path.read_text())
        anns = data["annotations"]
        names = {int(im["id"]): im["file_name"] for im in data.get("images", [])}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptDataError(f"{path} is not a COCO captions file ({err}); "
                               f"re-extract annotations_trainval2017.zip") from None
    per_image: dict[int, list[str]] = {}
    for a in anns:  # file order, as pycocotools' getAnnIds/loadAnns return them
        per_image.setdefault(int(a["image_id"]), []).append(a["caption"])
    keys = sorted(names) if names else sorted(per_image)  # repo: sorted(coco.imgs)
    out: list[tuple[str, str]] = []
    best_len, best_i = 0, 0  # repo bug kept: never reset per image
    for k in keys:
        caps = per_image.get(k, [])
        for i, c in enumerate(caps):
            if best_len < len(c):
                best_len, best_i = len(c), i
        if best_i >= len(caps):
            raise CorruptDataError(f"{path}: image {k} has {len(caps)} captions but the repo's selection asks for "
                                   f"caption {best_i}; is this the MS-COCO 2017 captions_val2017.json?")
        out.append((names.get(k, f"{k:012d}.jpg"), caps[best_i].strip()))
        if len(out) == n:
            break
    return out


def read_image(path: Path, device: torch.device) -> torch.Tensor:
    """A COCO image as uint8 (1, 3, H, W) on ``device`` (RGB)."""
    from PIL import Image

    if not path.is_file():
        raise DataNotFoundError(f"COCO image {path} missing; {HOW_IMAGES}")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].to(device)


def token_ids(text: str, tokenizer: Any, field: str) -> list[int]:
    """Comma-separated token names (``<reserved08799>``) or ids, resolved through the model's vocabulary."""
    vocab = tokenizer.get_vocab()
    out = []
    for t in (x.strip() for x in text.split(",")):
        if not t:
            continue
        if t.isdigit():
            out.append(int(t))
        elif t in vocab:
            out.append(int(vocab[t]))
        else:
            raise ConfigError(f"{field}={text!r}: {t!r} is not in the tokenizer's vocabulary; give names it "
                              f"has or ids")
    return out


def uncond_ids(cond: torch.Tensor, cfg: Any, encode: Any = None) -> torch.Tensor:
    """The unconditional CFG branch's prompt. ``masked_prompt`` (the repo's ``prepare_cfg_input``): the
    same sequence with its first ``len(prompt) - 1`` tokens masked out of attention, position ids
    counted from the first unmasked token. Masked keys contribute nothing and the positions restart at
    0, so that branch equals the model run on the last prompt token (the separator) alone, which is
    what is forwarded here (``test_masked_prompt_uncond_equals_last_token``)."""
    if cfg.cfg_uncond == "masked_prompt":
        return cond[-1:].clone()
    return encode(cfg.prompt_template.format(caption=""))


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    gen = ctx.generator()
    dev = ctx.device
    # COCO val2017 captions and images (§5): the ref (paper, or a stand-in fixture in a dry run) comes from the loader
    cap_file = Path(cfg.captions)
    folder, ref = locate(ctx, "coco-val2017-captions", str(cap_file.parent), [cap_file.name], HOW,
                         fixture=write_fixture)
    n_prompts = min(cfg.n_prompts, DRY_PROMPTS) if ctx.dry_run else cfg.n_prompts
    items = coco_captions(folder / cap_file.name, n_prompts)
    img_dir, _ = locate(ctx, "coco-val2017-images", cfg.coco_images, [items[0][0]], HOW_IMAGES,
                        fixture=lambda f: write_images_fixture(f, [n for n, _ in items]))
    # pretrained folders: the AR model, its VQGAN, the FID Inception and CLIP (tiny random fixtures in a dry run)
    model_dir, model_name = locate_model(
        ctx, "sjd-t2i-model", cfg.model_dir,
        f"hf download Alpha-VLLM/Lumina-mGPT-7B-768 --local-dir <data root>/{cfg.model_dir}",
        write_model_fixture, "tiny-random-llama")
    vq_dir, _ = locate_model(ctx, "sjd-vqgan", cfg.vq_dir, "copy Chameleon's tokenizer/vqgan.yaml and vqgan.ckpt "
                             "(Lumina-mGPT ckpts/chameleon/tokenizer/) there", vq.write_fixture, "tiny-random-vqgan",
                             files=vq.FILES)
    inc_dir, _ = locate_model(ctx, "fid-inception", cfg.inception_dir, f"put {quality.INCEPTION_FILE} (clean-fid's "
                              "FID Inception TorchScript) there", quality.write_inception_fixture,
                              "tiny-random-inception", files=(quality.INCEPTION_FILE,))
    clip_dir, _ = locate_model(ctx, "clip-score-model", cfg.clip_dir,
                               f"hf download openai/clip-vit-base-patch16 --local-dir <data root>/{cfg.clip_dir}",
                               quality.write_clip_fixture, "tiny-random-clip")

    lm = load_causal_lm(model_dir, dev)
    lo, hi = cfg.image_token_lo, cfg.image_token_hi
    n_tok = min(cfg.n_image_tokens, DRY_TOKENS) if ctx.dry_run else cfg.n_image_tokens
    side = int(math.isqrt(n_tok))
    if side * side != n_tok:
        raise ConfigError(f"n_image_tokens={n_tok} is not a square grid; set it to side*side")
    n_vocab = lm.model.get_output_embeddings().weight.shape[0]
    if hi > n_vocab:
        raise ConfigError(f"image_token_hi={hi} exceeds the model's vocabulary ({n_vocab} at {model_dir}); "
                          f"set the image-id range from its tokenizer")
    decoder = vq.load_vq_decoder(vq_dir, dev)
    codes = vq.code_map(cfg.image_codes, lo, hi, lm.tokenizer).to(dev)
    if int(codes.max()) >= decoder.n_embed:
        raise ConfigError(f"image codes reach {int(codes.max())} but the VQGAN at {vq_dir} has {decoder.n_embed}; "
                          f"check image_token_lo/hi and image_codes")
    inception = InceptionFeatures(inc_dir, dev)
    clip = ClipScorer(clip_dir, dev)
    # image layout (lumina_mgpt/data/item_processor.py): image start, height and width tokens, then rows
    # each closed by the forced row-end token; HFProbModel inserts them, the samplers never draft them
    prefix = token_ids(cfg.image_prefix_tokens, lm.tokenizer, "image_prefix_tokens")
    row_end = token_ids(cfg.row_end_token, lm.tokenizer, "row_end_token")
    if len(row_end) > 1:
        raise ConfigError(f"row_end_token={cfg.row_end_token!r}: give one token")
    suffix = token_ids(cfg.prompt_suffix_token, lm.tokenizer, "prompt_suffix_token")

    def encode(s: str) -> torch.Tensor:
        # the conversation turn: prompt text + separator (lumina_mgpt/data/convertsation.py)
        ids = lm.tokenizer(s, return_tensors="pt")["input_ids"][0]
        return torch.cat([ids, torch.tensor(suffix, dtype=torch.long)])

    toks: dict[str, list[torch.Tensor]] = {k: [] for k in SAMPLERS}
    feats: dict[str, list[torch.Tensor]] = {k: [] for k in (*SAMPLERS, "real")}
    clips: dict[str, list[torch.Tensor]] = {k: [] for k in SAMPLERS}
    nfe = {k: 0 for k in SAMPLERS}
    fwd = {k: 0 for k in SAMPLERS}
    wall = {k: 0.0 for k in SAMPLERS}
    for file_name, cap in ctx.progress(items, desc="prompts"):
        cond = encode(cfg.prompt_template.format(caption=cap))
        pm = HFProbModel(lm.model, cond, uncond_ids(cond, cfg, encode), lo, hi,
                         cfg.cfg_scale, cfg.full_top_k, kv_cache=cfg.kv_cache, prefix_ids=prefix,
                         row_len=side, row_end_id=row_end[0] if row_end else -1)
        text = clip.text(cap)
        feats["real"].append(inception(resize_299(read_image(img_dir / file_name, dev))))
        for name in SAMPLERS:
            pm.reset()  # each sampler pays its own prefill
            before = pm.tokens_forwarded
            t0 = time.perf_counter()
            dec = (ar_sample(pm, n_tok, 1, gen) if name == "ar" else
                   sjd_sample(pm, n_tok, cfg.image_window, 1, gen, jacobi=name == "jacobi", variant=cfg.variant))
            wall[name] += time.perf_counter() - t0
            nfe[name] += int(dec.nfe.sum())
            fwd[name] += pm.tokens_forwarded - before
            toks[name].append(dec.tokens)
            img = resize_299(decoder(codes[dec.tokens.to(dev)].reshape(1, side, side)))
            feats[name].append(inception(img))
            clips[name].append(clip.score(img, text))
    n_img = len(items)
    m: dict[str, float] = {}
    for k in SAMPLERS:
        m[f"image_{k}_step_compression"] = n_img * n_tok / max(nfe[k], 1)
        m[f"image_{k}_tokens_forwarded_per_image"] = fwd[k] / n_img
        m[f"image_{k}_wall_s"] = wall[k]
        m[f"image_{k}_fid"] = frechet_distance(torch.cat(feats[k]).numpy(), torch.cat(feats["real"]).numpy())
        m[f"image_{k}_clip_score"] = float(torch.cat(clips[k]).mean())
    m["image_sjd_over_jacobi_compression"] = m["image_sjd_step_compression"] / m["image_jacobi_step_compression"]
    m["image_sjd_latency_speedup"] = wall["ar"] / max(wall["sjd"], 1e-9)
    m["image_sjd_minus_ar_fid"] = m["image_sjd_fid"] - m["image_ar_fid"]
    m["image_sjd_minus_ar_clip_score"] = m["image_sjd_clip_score"] - m["image_ar_clip_score"]
    a, s = torch.cat(toks["ar"]), torch.cat(toks["sjd"])
    m["image_marginal_p_value"] = marginal_two_sample(a, s, hi - lo)
    m["image_bigram_p_value"] = bigram_permutation_test(a, s, hi - lo, side, gen=gen)
    ctx.log("full: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()))
    return Outcome(metrics=m, dataset=ref, notes={"model": model_name})
