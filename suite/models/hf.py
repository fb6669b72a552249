"""Adapter for Hugging Face causal LMs stored in a local folder (full-scale runs; ``pip install .[llm]``).

Nothing is downloaded: models load with ``local_files_only=True`` from a folder written by
``save_pretrained`` (or a snapshot copied onto the cluster).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from suite.errors import DataNotFoundError, SuiteError


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise SuiteError("Hugging Face models need the llm extra: pip install .[llm]") from None
    return transformers


@dataclass
class CausalLM:
    """A loaded model and tokenizer on ``device``."""

    model: Any
    tokenizer: Any
    device: torch.device

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, temperature: float = 0.0,
                 top_k: int | None = None) -> list[str]:
        """Continuations of ``prompts`` (greedy when ``temperature == 0``), prompt text removed."""
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        enc = tok(list(prompts), return_tensors="pt", padding=True).to(self.device)
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id}
        kw.update({"do_sample": True, "temperature": temperature, "top_k": top_k or 0} if temperature > 0
                  else {"do_sample": False})
        out = self.model.generate(**enc, **kw)
        return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, vocab) for token ids."""
        return self.model(input_ids=input_ids.to(self.device),
                          attention_mask=None if attention_mask is None else attention_mask.to(self.device)).logits


def load_causal_lm(folder: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> CausalLM:
    """Load ``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local folder, in eval mode on ``device``.

    ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataNotFoundError(f"no Hugging Face model at {folder} (config.json missing); copy a "
                                f"save_pretrained folder there (weights, config.json, tokenizer files)")
    tr = _transformers()
    dev = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    tok = tr.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    from packaging.version import Version

    key = "dtype" if Version(tr.__version__) >= Version("4.56") else "torch_dtype"  # renamed in 4.56
    model = tr.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **{key: dtype})
    model.to(dev).eval()
    return CausalLM(model, tok, dev)


def save_tiny_random_lm(folder: str | Path, family: str = "qwen2", extra_tokens: Sequence[str] = (),
                        max_len: int = 2048, seed: int = 0) -> Path:
    """Save a tiny randomly initialised causal LM of ``family`` ("qwen2" or "qwen3") with a
    character-level tokenizer to ``folder``: the stand-in that ``--dry-run`` of a full-scale
    pipeline loads through :func:`load_causal_lm` (same architecture family, no weights needed).
    ``extra_tokens`` are special strings kept whole (e.g. ``"</think>"``)."""
    transformers = _transformers()
    import tokenizers

    specials = ["<|endoftext|>", "<|pad|>", *extra_tokens]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)] + ["\n"])}
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<|endoftext|>"))
    pattern = "|".join([*(t.replace("|", r"\|") for t in extra_tokens), "."])
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
    raw.decoder = tokenizers.decoders.Fuse()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|pad|>")
    common = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_len,
                  eos_token_id=0, pad_token_id=1, bos_token_id=0)
    torch.manual_seed(seed)
    if family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    elif family == "qwen3":
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=16, **common))
    else:
        raise SuiteError(f"tiny model family '{family}' unknown; use qwen2 or qwen3")
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
