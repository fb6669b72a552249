"""The task LM's tokenizers at full scale, loaded as the official code loads them (cambridgeltl/ClaPS):

- the T5 task LM encodes its templated inputs and maps the verbalizers to ids with the **slow** sentencepiece
  ``T5Tokenizer`` over ``spiece.model`` (rewards/text_classification_reward.py, ``PromptedClassificationReward``:
  ``AutoTokenizer.from_pretrained(task_lm, use_fast=False)``; install.sh pins transformers 4.24 + sentencepiece);
- a masked task LM (RoBERTa) uses ``AutoTokenizer`` (fast) there;
- the candidate vocabulary and the decoding of candidate ids use the fast ``AutoTokenizer``
  (run_prune_search.py ``crossover_tokenizer``, passed to algs/greedy.py).

transformers 5 dropped the slow T5 class (``AutoTokenizer`` ignores ``use_fast``); there the slow tokenizer is
transformers' own sentencepiece backend set up as the 4.x ``T5Tokenizer``: ``sp.encode(text)`` (legacy
tokenisation), ``</s>`` appended, the ``<extra_id_i>`` sentinels at ``vocab_size - 1 - i``.
"""
from __future__ import annotations

import importlib.util
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from suite.errors import DataNotFoundError, SuiteError

SPIECE = "spiece.model"
FLAN_HOW = ("copy spiece.model from the google/flan-t5-base snapshot into it "
            "(huggingface_hub.hf_hub_download('google/flan-t5-base', 'spiece.model'))")


def _major(tr: Any) -> int:
    return int(tr.__version__.split(".")[0])


def load_vocab_tokenizer(folder: Path) -> Any:
    """The fast ``AutoTokenizer`` (official ``crossover_tokenizer``): candidate vocabulary and decoding."""
    import transformers as tr

    conf = folder / "tokenizer_config.json"
    cls = json.loads(conf.read_text()).get("tokenizer_class") if conf.is_file() else None
    # a generic fast tokenizer stays generic (transformers 5 would otherwise swap in the family's class)
    tok_cls = tr.PreTrainedTokenizerFast if cls in ("PreTrainedTokenizerFast", "TokenizersBackend") \
        else tr.AutoTokenizer
    return tok_cls.from_pretrained(folder, local_files_only=True)


def load_task_tokenizer(folder: Path, mask_lm: bool) -> Any:
    """The tokenizer the task LM's reward uses: fast ``AutoTokenizer`` for a masked LM, the slow sentencepiece
    T5 tokenizer otherwise (official ``use_fast=False``). A folder without ``spiece.model`` or an environment
    without sentencepiece gets a one-line error naming the fix."""
    import transformers as tr

    if mask_lm:  # official: AutoTokenizer (fast) for the masked LMs
        return load_vocab_tokenizer(folder)
    if not (folder / SPIECE).is_file():
        raise DataNotFoundError(f"no {SPIECE} in {folder}: the official reward tokenizes with the slow T5 "
                                f"tokenizer (use_fast=False), which reads it; {FLAN_HOW}")
    if importlib.util.find_spec("sentencepiece") is None:
        raise SuiteError("the slow T5 tokenizer of the official reward (use_fast=False) needs sentencepiece: "
                         "pip install sentencepiece (or pip install .[llm])")
    if _major(tr) < 5:  # the official call itself: 4.x returns the slow T5Tokenizer
        return tr.AutoTokenizer.from_pretrained(folder, use_fast=False, local_files_only=True)
    conf = folder / "tokenizer_config.json"
    kw = json.loads(conf.read_text()) if conf.is_file() else {}
    extra = int(kw.get("extra_ids", 100))
    # 4.x T5Tokenizer: sentinels after the sentencepiece pieces in reverse order (<extra_id_0> is the last id)
    return _slow_t5_class()(vocab_file=str(folder / SPIECE), eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                            additional_special_tokens=[f"<extra_id_{i}>" for i in reversed(range(extra))],
                            extra_ids=extra, legacy=True, special_tokens_pattern="eos",
                            model_max_length=int(kw.get("model_max_length", 512)))


@lru_cache(maxsize=None)
def _slow_t5_class() -> type:
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    class SlowT5Tokenizer(SentencePieceBackend):
        """transformers 4.x's slow ``T5Tokenizer`` on the sentencepiece backend (spiece.model)."""

        vocab_files_names = {"vocab_file": SPIECE}

    return SlowT5Tokenizer


def train_tiny_spiece(lines: Sequence[str], words: Sequence[str], vocab_size: int = 200) -> bytes:
    """A tiny sentencepiece unigram model trained offline on ``lines`` with T5's special ids (pad 0, eos 1,
    unk 2, no bos) and its default normaliser; every word of ``words`` must come out as one '▁' piece (the
    verbalizers must be in the vocabulary). Deterministic (one thread). Dry runs and rehearsals only."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="unigram",
                                   vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    missing = [w for w in words if sp.piece_to_id("▁" + w) == sp.unk_id()]
    if missing:
        raise SuiteError(f"tiny sentencepiece fixture: words {missing} are not single pieces; raise vocab_size")
    return buf.getvalue()


def save_tiny_t5_tokenizer(folder: Path, spiece: bytes, extra_ids: int = 100) -> Any:
    """Write ``spiece.model`` and a T5 tokenizer over it into ``folder``, the files of a real Flan-T5 folder
    (spiece.model for the slow tokenizer, tokenizer.json + tokenizer_config.json for the fast one). Returns
    the fast tokenizer."""
    import sentencepiece as spm
    import transformers as tr

    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPIECE).write_bytes(spiece)
    if _major(tr) < 5:  # 4.x: the slow class saves spiece.model; the fast one is converted from it on load
        slow = tr.T5Tokenizer(vocab_file=str(folder / SPIECE), extra_ids=extra_ids, model_max_length=512)
        slow.save_pretrained(folder)
        return tr.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    sp = spm.SentencePieceProcessor(model_proto=spiece)
    # the pieces, then the sentinels in reverse order, as in Flan-T5's tokenizer.json
    scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    scores += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]
    fast = tr.T5Tokenizer(vocab=scores, extra_ids=extra_ids, model_max_length=512)  # as Flan-T5's  # transformers 5: T5Tokenizer is the fast class
    fast.save_pretrained(folder)
    return fast
