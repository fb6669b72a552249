"""The full path's task-LM tokenizers (task_tokenizer.py) are the official ones (cambridgeltl/ClaPS): the T5
reward tokenizes with the slow sentencepiece T5Tokenizer (rewards/text_classification_reward.py,
``AutoTokenizer.from_pretrained(task_lm, use_fast=False)``), the candidate vocabulary and its decoding use the
fast AutoTokenizer (run_prune_search.py crossover_tokenizer). Checked on the tiny T5 of dry runs and rehearsals,
whose folder holds a spiece.model like a real Flan-T5 folder."""
from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

from reproductions.claps.full import TEMPLATES, HFTaskLM, write_tiny_t5
from suite.errors import DataNotFoundError, SuiteError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_t5_spiece")
    write_tiny_t5(path)
    return path


def test_task_lm_tokenizer_is_the_slow_sentencepiece_t5(folder):
    import sentencepiece as spm

    lm = HFTaskLM(folder, "sst2", torch.device("cpu"))
    # the reward's tokenizer: slow, sentencepiece-backed (the old code loaded the fast T5 tokenizer here)
    assert not lm.tok.is_fast and "Fast" not in type(lm.tok).__name__ and hasattr(lm.tok, "sp_model")
    assert type(lm.tok).__name__ in ("T5Tokenizer", "SlowT5Tokenizer")
    assert lm.vocab_tok.is_fast  # the crossover tokenizer stays the fast one, as official
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    # the 4.x slow T5Tokenizer: sp.encode of the whole text, then </s>; pads (id 0) on the right
    texts = [TEMPLATES["sst2"].format(prompt=p, sentence_1=s, sentence_2="")
             for p, s in [("", "a good  film"), ("very fun", "not a bad movie"), ("the", "dull")]]
    enc = lm.tok(texts, padding="longest", truncation=True, return_tensors="pt")
    for row, text in zip(enc["input_ids"].tolist(), texts):
        want = sp.encode(text) + [sp.eos_id()]
        assert row == want + [sp.pad_id()] * (len(row) - len(want))
    assert lm.verb_ids == [sp.piece_to_id("▁negative"), sp.piece_to_id("▁positive")]
    # sentinels as in T5: <extra_id_0> is the last id; both tokenizers agree on the vocabulary
    assert lm.tok.convert_tokens_to_ids("<extra_id_0>") == len(lm.tok) - 1 == len(lm.vocab_tok) - 1
    assert lm.tok.get_vocab() == lm.vocab_tok.get_vocab()


def test_folder_without_spiece_model_names_the_fix(folder, tmp_path):
    bare = tmp_path / "no_spiece"
    shutil.copytree(folder, bare)
    (bare / "spiece.model").unlink()
    with pytest.raises(DataNotFoundError) as err:
        HFTaskLM(bare, "sst2", torch.device("cpu"))
    msg = str(err.value)
    assert "\n" not in msg and "spiece.model" in msg and "use_fast=False" in msg and "hf_hub_download" in msg


def test_missing_sentencepiece_names_the_fix(folder, monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentencepiece" else find(name, *a))
    with pytest.raises(SuiteError, match="pip install sentencepiece"):
        HFTaskLM(folder, "sst2", torch.device("cpu"))
