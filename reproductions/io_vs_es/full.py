"""Full scale (spec §5): BIG-Bench Hard task JSONs read from disk and a real LLM through transformers.
Only the data/model check is implemented: it raises a one-line DataNotFoundError naming the layout; with the
data present it stops with a one-line SuiteError (exit 2) (the real-LLM IO/ES loop is left out, README)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from suite.data.external import locate
from suite.errors import SuiteError
from suite.spec import Outcome

BBH_TASKS = ("boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
             "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
             "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
             "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
             "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
             "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
             "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
             "web_of_lies", "word_sorting", "dyck_languages")


def _bbh_fixture(folder: Path) -> None:
    """Tiny files in BBH's published format (dry runs only; provenance stand-in)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in BBH_TASKS:
        ex = [{"input": f"fixture question {i} of {t}", "target": "(A)" if i % 2 else "(B)"} for i in range(8)]
        (folder / f"{t}.json").write_text(json.dumps({"examples": ex}))


def _model_fixture(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "fixture"}))


def load_bbh(folder: Path, seed: int, val_frac: float = 0.5):
    """Per task: a seeded split of the examples into disjoint validation and test halves (spec §5, VERIFY)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in BBH_TASKS:
        ex = json.loads((folder / f"{t}.json").read_text())["examples"]
        perm = torch.randperm(len(ex), generator=g).tolist()
        n_val = int(len(ex) * val_frac)
        out[t] = ([ex[i] for i in perm[:n_val]], [ex[i] for i in perm[n_val:]])
    return out


def full_protocol(cfg, ctx) -> Outcome:
    folder, ref = locate(ctx, "bbh", cfg.bbh_dir, [f"{t}.json" for t in BBH_TASKS],
                         "clone https://github.com/suzgunmirac/BIG-Bench-Hard and copy bbh/*.json",
                         fixture=_bbh_fixture)
    locate(ctx, "llm", cfg.model_dir, ["config.json"],
           "a transformers checkpoint (e.g. Llama-3.1-8B-Instruct) saved with save_pretrained",
           fixture=_model_fixture)
    splits = load_bbh(folder, ctx.seed)
    for t, (val, test) in splits.items():          # spec §7: test strictly disjoint from validation
        assert not {e["input"] for e in val} & {e["input"] for e in test}, t
    if ctx.dry_run:                                # built without any LLM call
        return Outcome(metrics={}, dataset=ref)
    raise SuiteError("io_vs_es full scale is not implemented: the real-LLM IO/ES loop is left out (README); "
                     "run --scale small (simulated LLM) or --dry-run")
