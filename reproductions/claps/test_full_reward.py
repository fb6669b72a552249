"""The full-scale black box (full.HFTaskLM) against the official reward's forward (cambridgeltl/ClaPS,
rewards/text_classification_reward.py, ``_get_logits``): T5 gets ``input_ids`` and one decoder step only, no
attention mask, every prompt string is scored on its own, the reward batch in one forward and validation/test
in consecutive batches of ``eval_batch_size`` (algs/greedy.py, algs/base_trainer.py). Checked on the tiny
random T5 of dry runs and rehearsals, with sentences of different lengths so that inputs are padded."""
from __future__ import annotations

import pytest
import torch

from reproductions.claps.full import HFTaskLM, write_tiny_t5
from reproductions.claps.method import EMPTY, BlackBox, empty_prompts

WORDS = "a film that is good bad great terrible fun dull movie story acting plot and the it was not very".split()


def _rows(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = 2 + int(torch.randint(9, (1,), generator=g))           # 2..10 words: padded inputs
        ws = [WORDS[int(j)] for j in torch.randint(len(WORDS), (k,), generator=g)]
        out.append({"sentence": " ".join(ws), "label": i % 2})
    return out


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_t5")
    write_tiny_t5(folder)
    m = HFTaskLM(folder, "sst2", torch.device("cpu"))
    m.set_split("train", _rows(11, 0))           # the reward batch: one forward, as official
    m.set_split("val", _rows(10, 1), 3)          # eval_batch_size 3: batches 3, 3, 3, 1
    return m


def _reference(lm: HFTaskLM, prompt: torch.Tensor, split: str, batch: int, mask: bool) -> torch.Tensor:
    """The official forward written out: pad each batch to its longest input, input_ids only (``mask=False``)."""
    s1, s2, _ = lm.splits[split]
    texts = [lm.template.format(prompt=lm._texts(prompt), sentence_1=a, sentence_2=b) for a, b in zip(s1, s2)]
    out = []
    for i in range(0, len(texts), batch):
        enc = lm.tok(texts[i:i + batch], padding="longest", truncation=True, return_tensors="pt",
                     add_special_tokens=True)
        dec = torch.full((enc["input_ids"].shape[0], 1), lm.tok.pad_token_id)
        kw = {"attention_mask": enc["attention_mask"]} if mask else {}
        with torch.no_grad():
            lg = lm.model(input_ids=enc["input_ids"], decoder_input_ids=dec, **kw).logits[:, 0]
        out.append(lg[:, lm.verb_ids].float())
    return torch.cat(out)


def _prompts(lm: HFTaskLM) -> torch.Tensor:
    cand = lm.candidate_vocab()
    p = empty_prompts(4, 5)
    p[0, -1] = cand[0]                       # one token
    p[1, -3:] = cand[[3, 5, 7]]              # three tokens
    p[3, :] = cand[torch.arange(5) * 2]      # five tokens; row 2 stays the empty prompt
    return p


@pytest.mark.parametrize("split,batch", [("train", 11), ("val", 3)])
def test_reward_is_the_unmasked_official_forward(lm, split, batch):
    prompts = _prompts(lm)
    got = lm.logits(prompts, split)
    for j in range(prompts.shape[0]):
        ref = _reference(lm, prompts[j], split, batch, mask=False)
        assert torch.allclose(got[j], ref, atol=1e-6), (split, j)
        # the old forward (attention mask passed, or the reward batch split into batches of 8) gives other
        # logits on these padded inputs: the comparison above can tell the two apart
        assert not torch.allclose(ref, _reference(lm, prompts[j], split, batch, mask=True), atol=1e-4)
    assert not torch.allclose(lm.logits(prompts, "train")[0], _reference(lm, prompts[0], "train", 8, mask=False),
                              atol=1e-4)


def test_a_prompts_reward_does_not_depend_on_its_chunk(lm):
    prompts = _prompts(lm)
    for split in ("train", "val"):
        together = BlackBox(lm.logits, chunk=8).logits(prompts, split)
        for j in range(prompts.shape[0]):
            alone = BlackBox(lm.logits, chunk=1).logits(prompts[j:j + 1], split)[0]
            assert torch.equal(together[j], alone), (split, j)
    assert (prompts == EMPTY).any()
