"""Adapter for Hugging Face causal LMs stored in a local folder (full-scale runs; ``pip install .[llm]``).

Nothing is downloaded: models load with ``local_files_only=True`` from a folder written by
``save_pretrained`` (or a snapshot copied onto the cluster).
"""
from __future__ import annotations

import json
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
                 top_k: int | None = None, top_p: float | None = None) -> list[str]:
        """Continuations of ``prompts`` (greedy when ``temperature == 0``; else sampled at
        ``temperature``, optionally truncated to the ``top_k`` tokens and/or the ``top_p`` nucleus),
        prompt text removed."""
        tok = self.tokenizer  # never changed here: load_causal_lm gave it its pad token
        if tok.pad_token_id is None:
            raise SuiteError("CausalLM.generate: the tokenizer has no pad token; load the model with "
                             "load_causal_lm (which pads with the eos token) or set tokenizer.pad_token")
        enc = tok(list(prompts), return_tensors="pt", padding=True, padding_side="left").to(self.device)
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id}
        kw.update({"do_sample": True, "temperature": temperature, "top_k": top_k or 0, "top_p": top_p or 1.0}
                  if temperature > 0 else {"do_sample": False})
        out = self.model.generate(**enc, **kw)
        return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, vocab) for token ids."""
        return self.model(input_ids=input_ids.to(self.device),
                          attention_mask=None if attention_mask is None else attention_mask.to(self.device)).logits


def _tokenizer_class(folder: Path, tr: Any) -> Any:
    """``AutoTokenizer``, unless the folder names the generic fast tokenizer: transformers 5 would
    otherwise swap in the model family's own class and lose a custom pipeline (e.g. spaces)."""
    conf = folder / "tokenizer_config.json"
    cls = json.loads(conf.read_text()).get("tokenizer_class") if conf.is_file() else None
    return tr.PreTrainedTokenizerFast if cls in ("PreTrainedTokenizerFast", "TokenizersBackend") else tr.AutoTokenizer


def load_causal_lm(folder: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, trust_remote_code: bool = False) -> CausalLM:
    """Load ``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local folder, in eval mode on ``device``. A
    tokenizer without a pad token pads with its eos token, set once here (the usual convention for decoder-only
    checkpoints), so that no caller changes the tokenizer it shares.

    ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU. ``trust_remote_code`` runs the
    modelling code shipped in the folder (CodeGen2, LLaDA need it): only for checkpoints you trust.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataNotFoundError(f"no Hugging Face model at {folder} (config.json missing); copy a "
                                f"save_pretrained folder there (weights, config.json, tokenizer files)")
    tr = _transformers()
    dev = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    tok = _tokenizer_class(folder, tr).from_pretrained(folder, local_files_only=True,
                                                       trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    from packaging.version import Version

    key = "dtype" if Version(tr.__version__) >= Version("4.56") else "torch_dtype"  # renamed in 4.56
    model = tr.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                    trust_remote_code=trust_remote_code, **{key: dtype})
    model.to(dev).eval()
    return CausalLM(model, tok, dev)


TINY_FAMILIES = ("qwen2", "qwen3", "llama", "gpt2", "codegen")


def tiny_char_tokenizer(eos: str = "<|endoftext|>", pad: str = "<|pad|>", unk: str | None = None,
                        mask: str | None = None, extra_tokens: Sequence[str] = ()) -> Any:
    """A character-level fast tokenizer (printable ASCII + newline) whose special strings come first:
    ``unk`` (if given), ``eos``, ``pad``, ``mask`` (if given), then ``extra_tokens`` (kept whole,
    e.g. ``"</think>"``). ``pad`` may equal ``eos``."""
    transformers = _transformers()
    import tokenizers

    specials = list(dict.fromkeys(t for t in (unk, eos, pad, mask, *extra_tokens) if t is not None))
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)] + ["\n"])}
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token=unk or eos))
    pattern = "|".join([*(t.replace("|", r"\|") for t in extra_tokens), "."])
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
    raw.decoder = tokenizers.decoders.Fuse()
    roles = {"eos_token": eos, "pad_token": pad, **({"unk_token": unk} if unk else {}),
             **({"mask_token": mask} if mask else {})}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, **roles)


def tiny_random_lm(family: str, vocab_size: int, max_len: int = 2048, seed: int = 0, eos_id: int = 0,
                   pad_id: int | None = None) -> Any:
    """A tiny randomly initialised causal LM of ``family`` (one of :data:`TINY_FAMILIES`; 2 layers,
    width 32), in eval mode: the stand-in a full-scale pipeline runs on in ``--dry-run``."""
    transformers = _transformers()
    ids = dict(eos_token_id=eos_id, bos_token_id=eos_id, pad_token_id=eos_id if pad_id is None else pad_id)
    torch.manual_seed(seed)
    if family == "codegen":  # CodeGen / CodeGen2: GPT-J-style blocks with rotary embeddings
        conf = transformers.CodeGenConfig(vocab_size=vocab_size, n_positions=max_len, n_ctx=max_len, n_embd=32,
                                          n_layer=2, n_head=2, rotary_dim=8, **ids)
        return transformers.CodeGenForCausalLM(conf).eval()
    if family == "gpt2":
        conf = transformers.GPT2Config(vocab_size=vocab_size, n_positions=max_len, n_embd=32, n_layer=2, n_head=2,
                                       **ids)
        return transformers.GPT2LMHeadModel(conf).eval()
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_len, **ids)
    if family == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common)).eval()
    if family == "qwen3":
        return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=16, **common)).eval()
    if family == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    raise SuiteError(f"tiny model family '{family}' unknown; use one of {', '.join(TINY_FAMILIES)}")


def save_tiny_random_lm(folder: str | Path, family: str = "qwen2", extra_tokens: Sequence[str] = (),
                        max_len: int = 2048, seed: int = 0, eos: str = "<|endoftext|>", pad: str = "<|pad|>",
                        unk: str | None = None, mask: str | None = None) -> Path:
    """Save :func:`tiny_random_lm` with :func:`tiny_char_tokenizer` to ``folder``, which
    :func:`load_causal_lm` then loads like a real checkpoint (same architecture family, no weights)."""
    tok = tiny_char_tokenizer(eos, pad, unk, mask, extra_tokens)
    model = tiny_random_lm(family, len(tok), max_len, seed, tok.eos_token_id, tok.pad_token_id)
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
