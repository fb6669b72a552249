"""Tiny SFT: batched left-padded greedy decoding equals decoding each prompt alone; the answer mask;
training learns an easy family."""
import torch

from suite.data.instructions import eval_set, make_pool
from suite.sft import EOS, CharVocab, SFTConfig, encode_items, exact_match, greedy_decode, hidden_states, \
    new_model, train_sft


def test_vocab_roundtrip_and_answer_mask():
    assert CharVocab.decode(CharVocab.encode("Add 3 and 4.\n7") + [EOS, 5]) == "Add 3 and 4.\n7"
    tok, msk = encode_items(["ab", "abcd"], ["x", "yz"], 16)
    assert tok.shape == (2, 8) and msk[0].tolist() == [False] * 3 + [True] * 2 + [False] * 3
    assert msk[1].sum() == 3  # "yz" + eos


def test_batched_decode_equals_one_by_one():
    m = new_model(SFTConfig(dim=32, heads=2), seed=0)
    prompts = ["a", "What is 3 plus 4?", "Reverse the word abc."]
    batched = greedy_decode(m, prompts, 6)
    alone = [greedy_decode(m, [p], 6)[0] for p in prompts]
    assert batched == alone


def test_hidden_states_do_not_depend_on_padding():
    m = new_model(SFTConfig(dim=32, heads=2), seed=1)
    h, mask = hidden_states(m, ["short", "a longer text"])
    h1, _ = hidden_states(m, ["short"])
    assert mask.sum(1).tolist() == [5, 13] and torch.allclose(h[0, :5], h1[0], atol=1e-5)


def test_training_learns_an_easy_family():
    fam = 2  # first_letter
    p = make_pool(400, seed=0, n_families=3, corrupt_frac=0.0, zipf=0.0)
    keep = (p.family == fam).nonzero().squeeze(1)
    te = eval_set([fam], per_family=30, seed=0)
    cfg = SFTConfig(dim=48, heads=2, steps=300, batch=32)
    before = exact_match(new_model(cfg, 0), te.instructions, te.gold)
    m, cost = train_sft([p.instructions[i] for i in keep], [p.answers[i] for i in keep], cfg, seed=0)
    assert cost["steps"] == 300 and before < 0.2 and exact_match(m, te.instructions, te.gold) > 0.7
