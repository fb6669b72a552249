"""The HF adapter on a tiny randomly initialised GPT-2 built and saved by the test (offline)."""
from __future__ import annotations

import pytest
import torch

from suite.errors import DataNotFoundError, SuiteError
from suite.models.hf import CausalLM, load_causal_lm


def test_missing_folder_names_the_fix(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match="config.json"):
        load_causal_lm(tmp_path / "nope")


def test_load_tiny_gpt2(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<unk>", "<eos>", "the", "cat", "sat", "on", "mat"]
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>",
                                               pad_token="<eos>")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(words), n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                  bos_token_id=1, eos_token_id=1)
    ref = transformers.GPT2LMHeadModel(cfg).eval()
    ref.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    lm = load_causal_lm(tmp_path, "cpu")
    assert not lm.model.training and next(lm.model.parameters()).dtype == torch.float32
    ids = torch.tensor([[2, 3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.allclose(lm.logits(ids), ref(ids).logits, atol=1e-6)
    out = lm.generate(["the cat", "the cat sat on"], max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    # greedy continuation equals argmax decoding by hand
    seq = ids[:, :2]
    for _ in range(3):
        seq = torch.cat([seq, ref(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert out[0].split() == [words[i] for i in seq[0, 2:].tolist() if words[i] != "<eos>"]


def test_a_tokenizer_without_pad_gets_eos_once_at_load_and_generate_never_changes_it(tmp_path) -> None:
    """Issue 17 item 3: no call changes a shared tokenizer. ``load_causal_lm`` gives a tokenizer without a pad
    token its eos token (once, at load); ``generate`` then leaves the tokenizer as it found it, and refuses a
    tokenizer without a pad token instead of setting one."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<unk>", "<eos>", "the", "cat", "sat"]
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>")
    assert tok.pad_token_id is None
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(words), n_positions=16, n_embd=8, n_layer=1, n_head=2,
                                  bos_token_id=1, eos_token_id=1)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    lm = load_causal_lm(tmp_path, "cpu")
    assert lm.tokenizer.pad_token_id == lm.tokenizer.eos_token_id == 1
    before = (lm.tokenizer.pad_token, lm.tokenizer.padding_side)
    lm.generate(["the", "the cat sat"], max_new_tokens=2)
    assert (lm.tokenizer.pad_token, lm.tokenizer.padding_side) == before
    bare = CausalLM(lm.model, tok, lm.device)  # a tokenizer that never went through load_causal_lm
    with pytest.raises(SuiteError, match="pad token"):
        bare.generate(["the"], max_new_tokens=1)
    assert tok.pad_token_id is None
