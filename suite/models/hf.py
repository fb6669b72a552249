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
