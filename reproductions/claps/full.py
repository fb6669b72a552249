"""Full scale (spec §5): ClaPS on a real task LM (Flan-T5 encoder-decoder or RoBERTa masked LM) for few-shot
GLUE-style classification, read from disk; nothing is downloaded.

Layout under the data root (``--data-root`` / ``$SUITE_DATA``):
  <model_dir>/                         a ``save_pretrained`` folder (config.json, weights, tokenizer; a T5 also
                                       spiece.model, which the official slow T5 tokenizer reads)
  <data_dir>/<task>/train.jsonl        the HF dataset split exported with ``Dataset.to_json`` (one JSON per line)
  <data_dir>/<task>/<test split>.jsonl validation.jsonl (GLUE: the test labels are hidden), test.jsonl (snli,
                                       ag_news), validation_matched.jsonl (mnli)
The few-shot protocol follows the official utils/fsc_datasets.py: the first ``shots`` examples per class of
train; for GLUE tasks and ag_news the validation set is the last ``shots`` per class of that few-shot train
set (i.e. the same examples) and the test set is the GLUE validation split.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.models.locate import locate_model
from suite.errors import ConfigError, SuiteError
from suite.spec import Outcome

from .experiment import stub_checks
from .task_tokenizer import load_task_tokenizer, load_vocab_tokenizer
from .toy import STUB_REF
from .method import (BlackBox, EMPTY, accuracy, claps, empty_prompts, greedy_search, random_prune, random_search,
                     top_share)

# official templates (rewards/text_classification_reward.py, template_id 0) and verbalizers (fsc_datasets.py)
TEMPLATES = {
    "sst2": " {prompt}. Sentence: {sentence_1}, Sentiment: ",
    "rte": " {prompt}. Sentence 1: {sentence_1}, Sentence 2: {sentence_2}, Textual Entailment: ",
    "qnli": " {prompt}. Question: {sentence_1}, Sentence: {sentence_2}, Entailment: ",
    "mnli": " {prompt} {sentence_1} {sentence_2} Entailment: ",
    "snli": " {prompt} {sentence_1} {sentence_2} Entailment: ",
    "ag_news": " {prompt}. Classify the news articles into the categories of World, Sports, Business, and "
               "Technology. {sentence_1}: ",
}
VERBALIZERS = {"sst2": ["negative", "positive"], "rte": ["yes", "no"], "qnli": ["yes", "no"],
               "mnli": ["yes", "maybe", "no"], "snli": ["yes", "maybe", "no"],
               "ag_news": ["World", "Sports", "Business", "Technology"]}
FIELDS = {"sst2": ("sentence", "sentence"), "rte": ("sentence1", "sentence2"), "qnli": ("question", "sentence"),
          "mnli": ("premise", "hypothesis"), "snli": ("premise", "hypothesis"), "ag_news": ("text", "text")}
TEST_SPLIT = {"mnli": "validation_matched", "snli": "test", "ag_news": "test"}
HOW = ("export with datasets: load_dataset('glue', task)[split].to_json(f'<data root>/glue/{task}/{split}.jsonl'); "
       "model: AutoModel*.from_pretrained('google/flan-t5-base').save_pretrained('<data root>/models/flan-t5-base'), "
       "the tokenizer too, with its spiece.model")


# ------------------------------------------------------------------ dry-run fixtures (published formats, tiny)
_WORDS = ("a film that is good bad great terrible fun dull movie story acting plot and the it was not very "
          "Sentence Sentiment negative positive yes no maybe World Sports Business Technology").split()


def write_data_fixture(folder: Path, task: str) -> None:
    """A few rows of each split in the HF ``to_json`` format (same field names as the real export)."""
    folder.mkdir(parents=True, exist_ok=True)
    f1, f2 = FIELDS[task]
    g = torch.Generator().manual_seed(0)
    for split in ("train", TEST_SPLIT.get(task, "validation")):
        with open(folder / f"{split}.jsonl", "w") as fh:
            for i in range(24):
                ws = [_WORDS[int(j)] for j in torch.randint(len(_WORDS), (6,), generator=g)]
                row = {f1: " ".join(ws), f2: " ".join(reversed(ws)), "label": i % len(VERBALIZERS[task]), "idx": i}
                fh.write(json.dumps(row) + "\n")


def write_tiny_t5(folder: Path) -> None:
    """A tiny random T5 with a tiny sentencepiece tokenizer (spiece.model for the slow tokenizer the official
    reward loads, tokenizer.json for the fast one), trained offline on template-shaped lines of the fixture words
    (dry runs and rehearsals; never a result)."""
    import transformers as tr

    from .task_tokenizer import save_tiny_t5_tokenizer, train_tiny_spiece

    g = torch.Generator().manual_seed(0)
    lines = []
    for template in TEMPLATES.values():
        for _ in range(60):
            ws = [_WORDS[int(j)] for j in torch.randint(len(_WORDS), (8,), generator=g)]
            lines.append(template.format(prompt=" ".join(ws[:2]), sentence_1=" ".join(ws[2:5]),
                                         sentence_2=" ".join(ws[5:])))
    lines += [" ".join(_WORDS)] * 5
    tok = save_tiny_t5_tokenizer(folder, train_tiny_spiece(lines, _WORDS))
    conf = tr.T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                       num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    tr.T5ForConditionalGeneration(conf).save_pretrained(folder)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def few_shot(task: str, train: list[dict], test: list[dict], shots: int) -> tuple[list, list, list]:
    n_cls = len(VERBALIZERS[task])
    tr = [x for c in range(n_cls) for x in [r for r in train if r["label"] == c][:shots]]
    if task == "snli":
        test = [r for r in test if r["label"] != -1]
    val = [x for c in range(n_cls) for x in [r for r in tr if r["label"] == c][-shots:]]
    return tr, val, test


class HFTaskLM:
    """The black box: template(prompt, example) -> verbalizer logits (Flan-T5: first decoder step;
    RoBERTa: the mask position)."""

    def __init__(self, folder: Path, task: str, device: torch.device) -> None:
        import transformers as tr

        cfg = json.loads((folder / "config.json").read_text())
        self.mask_lm = "roberta" in cfg.get("model_type", "") or "bert" in cfg.get("model_type", "")
        if self.mask_lm and task != "sst2":
            raise ConfigError(f"task={task}: the masked-LM (RoBERTa) templates here cover sst2 only")
        # as official (task_tokenizer.py): the reward's tokenizer (slow sentencepiece T5Tokenizer, fast for a
        # masked LM) encodes the inputs and maps the verbalizers; the fast one gives candidates and decodes them
        self.tok = load_task_tokenizer(folder, self.mask_lm)
        self.vocab_tok = load_vocab_tokenizer(folder)
        cls = tr.AutoModelForMaskedLM if self.mask_lm else tr.AutoModelForSeq2SeqLM
        self.model = cls.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device, self.task = device, task
        space = "Ġ" if self.mask_lm else "▁"
        verb = VERBALIZERS[task]
        if self.mask_lm and task == "sst2":
            verb = ["terrible", "great"]
        self.space = space
        self.verb_ids = [self.tok.convert_tokens_to_ids(space + v) for v in verb]
        self.template = TEMPLATES[task]
        if self.mask_lm and task == "sst2":
            self.template = " {prompt} {sentence_1} It was " + self.tok.mask_token + "."
        self.splits: dict[str, tuple[list[str], list[str], torch.Tensor]] = {}
        self.split_bs: dict[str, int] = {}

    def candidate_vocab(self) -> torch.Tensor:
        """§3.1: tokenizer vocabulary minus special tokens, word-initial pieces only."""
        vt = self.vocab_tok  # official crossover_tokenizer (fast AutoTokenizer), run_prune_search.py
        special = {vt.unk_token, vt.pad_token, vt.sep_token, vt.cls_token}
        ids = sorted(i for w, i in vt.get_vocab().items() if w not in special and self.space in w)
        missing = [v for v in self.verb_ids if v not in set(ids)]
        if missing:
            raise SuiteError(f"verbalizer ids {missing} are not in the candidate vocabulary")
        return torch.tensor(ids, device=self.device)

    def embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings().weight[ids].detach()

    def set_split(self, name: str, rows: list[dict], batch_size: int | None = None) -> torch.Tensor:
        """``batch_size`` examples per LM forward (None: the whole split in one forward). Official: the reward
        batch is scored in one ``_get_logits`` call per prompt (find_kl_dict, algs/greedy.py), validation and
        test in consecutive batches of ``eval_batch_size`` (algs/base_trainer.py); without an attention mask
        (below) the batch sets each input's padded length, so the batching is part of the reward."""
        f1, f2 = FIELDS[self.task]
        y = torch.tensor([r["label"] for r in rows], device=self.device)
        self.splits[name] = ([r[f1] for r in rows], [r[f2] for r in rows], y)
        self.split_bs[name] = batch_size or max(len(rows), 1)
        return y

    def _texts(self, prompt: torch.Tensor) -> str:
        ids = [int(i) for i in prompt.tolist() if i != EMPTY]
        # official greedy decodes each candidate id with the crossover (fast) tokenizer (algs/greedy.py)
        return "".join(self.vocab_tok.decode([i], skip_special_tokens=True) for i in ids)

    @torch.no_grad()
    def logits(self, prompts: torch.Tensor, split: str) -> torch.Tensor:
        s1, s2, _ = self.splits[split]
        bs = self.split_bs[split]
        out = []
        # one prompt at a time, as the official reward loop: a prompt's inputs are padded only to the longest
        # example of its own batch, so its reward does not depend on the other prompts of the chunk
        for row in prompts:
            p = self._texts(row)
            texts = [self.template.format(prompt=p, sentence_1=a, sentence_2=b) for a, b in zip(s1, s2)]
            per = []
            for i in range(0, len(texts), bs):
                enc = self.tok(texts[i:i + bs], return_tensors="pt", padding="longest", truncation=True).to(self.device)
                if self.mask_lm:  # official passes the whole encoding (attention mask included) to the masked LM
                    lg = self.model(**enc).logits
                    pos = enc["input_ids"] == self.tok.mask_token_id
                    lg = lg[pos]
                else:
                    # official _get_logits (rewards/text_classification_reward.py): input_ids and one decoder
                    # step only, NO attention mask, so the encoder and the cross-attention attend the pads
                    start = torch.full((enc["input_ids"].shape[0], 1), self.model.config.decoder_start_token_id,
                                       device=self.device)
                    lg = self.model(input_ids=enc["input_ids"], decoder_input_ids=start).logits[:, 0]
                per.append(lg[:, self.verb_ids].float())
            out.append(torch.cat(per))
        return torch.stack(out)


def run_full(cfg, ctx: RunContext) -> Outcome:  # noqa: ANN001
    test_split = TEST_SPLIT.get(cfg.task, "validation")
    data_dir, ref = locate(ctx, f"glue-{cfg.task}", f"{cfg.data_dir}/{cfg.task}",
                           ["train.jsonl", f"{test_split}.jsonl"], HOW,
                           fixture=lambda d: write_data_fixture(d, cfg.task))
    # located like a paper file; without it (dry run, rehearsal) a tiny random T5 fixture with the same interface
    model_dir, model_name = locate_model(ctx, Path(cfg.model_dir).name, cfg.model_dir, HOW, write_tiny_t5,
                                         "tiny-random-t5")
    lm = HFTaskLM(model_dir, cfg.task, torch.device(ctx.device))
    tr, val, test = few_shot(cfg.task, _read_jsonl(data_dir / "train.jsonl"),
                             _read_jsonl(data_dir / f"{test_split}.jsonl"), cfg.shots)
    g = torch.Generator().manual_seed(cfg.data_seed)
    batch_idx = torch.randperm(len(tr), generator=g)[:min(cfg.train_batch_size, len(tr))]  # one reward batch
    ytr = lm.set_split("train", [tr[i] for i in batch_idx.tolist()])   # the reward batch: one forward
    yval = lm.set_split("val", val, cfg.eval_batch_size)
    yte = lm.set_split("test", test, cfg.eval_batch_size)
    cand = lm.candidate_vocab()
    ref = ref.renamed(f"{cfg.task}-{cfg.shots}shot")
    bb = BlackBox(lm.logits, chunk=cfg.chunk)
    if ctx.dry_run:  # build everything and make one black-box query; no search
        lg = bb.logits(empty_prompts(1, cfg.prompt_len, cand.device), "train")
        assert lg.shape == (1, ytr.numel(), len(lm.verb_ids))
        return Outcome(metrics={}, dataset=ref)
    m: dict[str, float] = {}

    def finish(arm: str, prompt: torch.Tensor, q0: int, t0: float, space: int) -> None:
        m[f"val_acc/{arm}"] = float(accuracy(bb.logits(prompt, "val"), yval)[0])
        m[f"seconds/{arm}"] = time.perf_counter() - t0
        m[f"queries/{arm}"] = float(bb.queries - q0)
        m[f"space/{arm}"] = float(space)
        m[f"acc/{arm}"] = float(accuracy(lm.logits(prompt, "test"), yte)[0])
        ctx.log("claps full: %s prompt %r acc %.4f", arm, lm._texts(prompt[0]), m[f"acc/{arm}"])

    q0, t0 = bb.queries, time.perf_counter()
    res = claps(bb, lm.embeddings(cand), cand, ytr, n_clusters=cfg.n_clusters, percentile=cfg.percentile,
                length=cfg.prompt_len, kind=cfg.reward_type, kmeans_seed=cfg.kmeans_seed, variant=cfg.variant)
    budget = bb.queries - q0
    finish("claps", res.prompt, q0, t0, res.pruned.numel())
    m["n_candidates"], m["n_reps"], m["n_pruned"] = float(cand.numel()), float(res.reps.numel()), float(res.pruned.numel())
    m["top10_share"] = top_share(res.influence)
    gen = torch.Generator().manual_seed(ctx.seed * 101 + 7)
    q0, t0 = bb.queries, time.perf_counter()
    pruned = random_prune(res.reps, cfg.percentile, gen)
    prompt, _ = greedy_search(bb, pruned, ytr, cfg.prompt_len, cfg.reward_type)
    finish("random_prune", prompt, q0, t0, pruned.numel())
    q0, t0 = bb.queries, time.perf_counter()
    finish("random_search", random_search(bb, cand, ytr, cfg.prompt_len, cfg.reward_type, budget, gen), q0, t0,
           cand.numel())
    m["gap_vs_random_prune"] = m["acc/claps"] - m["acc/random_prune"]
    checks = stub_checks(cfg)  # spec §6's mechanism checks on the stub, the same functions the search used
    m.update(checks)
    return Outcome(metrics=m, dataset=ref, metric_datasets={k: STUB_REF for k in checks}, notes={"model": model_name})
