"""Full scale (spec §5): TreeSynth with a REAL generator LLM read from disk (a Hugging Face
``save_pretrained`` folder, e.g. Qwen2.5-72B-Instruct or Llama-3.3-70B-Instruct), the paper's tree
(config.DEFAULT_CONFIG: depth 4, 10 questions per node, infinite lists > threshold, 10**k sample sets,
5 retries) and vanilla temperature sampling from the same LLM at the same count. Writes the questions as
``{"question": ...}`` jsonl (the input of the paper's answer generation + SFT of LLaMA3-8B / Qwen2.5-7B,
which run outside this suite) and reports MiniLM diversity, generator calls and seconds.

Layout under the data root::

    treesynth/generator/config.json, tokenizer files, weights     the generator LLM (save_pretrained)

The prompts are our own wording of the paper's steps (spec §3), not the repository's text.
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.spec import Outcome

NAME = "treesynth-generator-llm"
HOW = ("save a chat LLM (the paper: Qwen2.5-72B-Instruct / Llama-3.3-70B-Instruct) with save_pretrained "
       "into <data root>/treesynth/generator (README 'Full scale')")
TASKS = {"gsm": "grade-school math word problems that need 2-8 steps of basic arithmetic",
         "math": "competition mathematics problems", "code": "short Python programming instructions",
         "mental": "short stories testing theory-of-mind questions"}


@dataclass
class TNode:
    depth: int
    dimension: str | None = None
    value: str | list[str] | None = None
    parent: "TNode | None" = None
    children: list["TNode"] = field(default_factory=list)

    def path(self) -> list["TNode"]:
        out, n = [], self
        while n is not None and n.dimension is not None:
            out.append(n)
            n = n.parent
        return out[::-1]

    def constraints(self, rng: random.Random) -> list[dict[str, str]]:
        # an infinite node's list: one value drawn per request (spec §3)
        return [{"dimension": n.dimension, "attribute_value": rng.choice(n.value) if isinstance(n.value, list)
                 else n.value} for n in self.path()]

    def n_infinite(self) -> int:
        return sum(isinstance(n.value, list) for n in self.path())


class LLMTree:
    """Spec §3 ``expand`` with a real LLM; ``calls`` counts generator requests."""

    def __init__(self, llm: Any, cfg: Any, rng: random.Random) -> None:
        self.llm, self.cfg, self.rng, self.calls = llm, cfg, rng, 0

    def ask(self, prompt: str, temperature: float) -> str:
        self.calls += 1
        return self.llm.generate([prompt], max_new_tokens=self.cfg.max_tokens, temperature=temperature)[0]

    def questions(self, node: TNode) -> list[str]:
        attrs = json.dumps(node.constraints(self.rng))
        out = self.ask(f"Write {self.cfg.samples_per_node} diverse {TASKS[self.cfg.task]}. Every question must "
                       f"satisfy all of these attributes: {attrs}.\nAnswer only as lines 'Question i: text'.", 0.7)
        return [q.strip() for q in re.findall(r"Question\s+\d+\s*:\s*(.*?)(?=\s*Question\s+\d+\s*:|$)", out, re.S)
                if q.strip()]

    def choose_dimension(self, node: TNode, pivots: list[str]) -> dict | None:
        used = [n.dimension for n in node.path()]
        listing = "\n".join(f"{i}. {q}" for i, q in enumerate(pivots, 1))
        prompt = (f"Questions:\n{listing}\nName the SINGLE most significant dimension that distinguishes these "
                  f"questions, not one of {used}, and classify every question by its value. Reply with JSON "
                  '{"dimension": str, "attributes": {value: [question numbers]}} covering all numbers.')
        for _ in range(self.cfg.retries):
            for blob in re.findall(r"\{.*\}", self.ask(prompt, self.cfg.temperature_dim), re.S):
                try:
                    c = json.loads(blob)
                except json.JSONDecodeError:
                    continue
                if isinstance(c, dict) and validate_text_mapping(c, len(pivots), used):
                    return c
        return None

    def expand_values(self, dimension: str, values: list[str]) -> list[str]:
        values = list(values)
        for _ in range(self.cfg.retries):
            out = [ln.strip().strip('"') for ln in self.ask(
                f"Dimension '{dimension}' has values {values}. List further mutually exclusive values, one per line, "
                f"then end with 'complete' (list done), 'infinite' (open-ended) or 'null' (nothing to add).",
                self.cfg.temperature_values).splitlines() if ln.strip()]
            if not out or out[-1] not in ("null", "infinite", "complete"):
                continue
            if out[-1] == "null":
                break
            values += [v for v in out[:-1] if v not in values]
            if out[-1] == "complete" or len(values) > self.cfg.max_attribute_count:
                break
        return values

    def build(self) -> tuple[list[str], dict[str, float]]:
        root, frontier, data, n_leaves = TNode(0), [], [], 0
        frontier.append(root)
        while frontier:
            nxt = []
            for node in frontier:
                if node.depth >= self.cfg.max_depth:
                    n_leaves += 1
                    for _ in range(max(1, self.cfg.infinite_path_samples ** node.n_infinite())):
                        data += self.questions(node)
                    continue
                pivots = self.questions(node)
                c = self.choose_dimension(node, pivots) if pivots else None
                if c is None:  # no valid classification: pivots are leaf data
                    data += pivots
                    n_leaves += 1
                    continue
                values = self.expand_values(c["dimension"], list(c["attributes"]))
                if len(values) > self.cfg.infinite_threshold:
                    node.children = [TNode(node.depth + 1, c["dimension"], values, node)]
                else:
                    node.children = [TNode(node.depth + 1, c["dimension"], v, node) for v in values]
                nxt += node.children
            frontier = nxt
        return data, {"n_leaves": float(n_leaves)}


def validate_text_mapping(c: dict, n: int, used: list[str]) -> bool:
    """The repository's checks (spec §7): integer indices in 1..n covering all n, a dimension not used above;
    and, as the attribute values partition the node (spec §3: mutually exclusive), each index exactly once."""
    if not isinstance(c.get("dimension"), str) or not isinstance(c.get("attributes"), dict):
        return False
    seen: list[int] = []
    for arr in c["attributes"].values():
        if not isinstance(arr, list) or any(not (isinstance(x, int) and 1 <= x <= n) for x in arr):
            return False
        seen += arr
    return sorted(seen) == list(range(1, n + 1)) and c["dimension"].strip() not in used


def validator_errors(n: int) -> float:
    """Spec §6's validator check on the validator the full path uses: it accepts a complete classification and
    rejects one missing an index, one repeating an index, and one naming an ancestor's dimension."""
    good = {"dimension": "topic", "attributes": {"a": list(range(1, n + 1, 2)), "b": list(range(2, n + 1, 2))}}
    missing = {"dimension": "topic", "attributes": {"a": list(range(1, n))}}
    repeat = {"dimension": "topic", "attributes": {"a": list(range(1, n + 1)), "b": [1]}}
    return float((not validate_text_mapping(good, n, ["style"])) + validate_text_mapping(missing, n, ["style"])
                 + validate_text_mapping(repeat, n, ["style"]) + validate_text_mapping(good, n, ["topic"]))


def _write_fixture(folder: Path) -> None:
    """Dry runs and rehearsals without the LLM: a tiny random Llama saved like a checkpoint (stand-in)."""
    from suite.models.hf import save_tiny_random_lm

    save_tiny_random_lm(folder, "llama", max_len=4096)


def full_protocol(cfg: Any, ctx: RunContext) -> Outcome:
    folder, ref = locate(ctx, NAME, cfg.generator_dir, ["config.json", "tokenizer_config.json"], HOW,
                         fixture=_write_fixture)
    if ctx.dry_run:  # builds the pipeline; no LLM is loaded or called
        LLMTree(None, cfg, random.Random(ctx.seed))
        return Outcome(metrics={}, dataset=ref)
    from suite.models.hf import load_causal_lm

    from .experiment import mean_cosine_distance
    llm = load_causal_lm(folder, ctx.device)
    torch.manual_seed(ctx.seed)
    t0 = time.perf_counter()
    tree = LLMTree(llm, cfg, random.Random(ctx.seed))
    ts, info = tree.build()
    out: dict[str, float] = {"treesynth_calls": float(tree.calls), "treesynth_seconds": time.perf_counter() - t0,
                             "treesynth_n": float(len(ts)), **info}
    t0 = time.perf_counter()
    direct_tree = LLMTree(llm, cfg, random.Random(ctx.seed + 1))
    direct: list[str] = []
    while len(direct) < len(ts):  # vanilla sampling: the root prompt, no constraints, same count
        direct += direct_tree.questions(TNode(0))
    direct = direct[: len(ts)]
    out.update({"direct_calls": float(direct_tree.calls), "direct_seconds": time.perf_counter() - t0,
                "direct_n": float(len(direct))})
    if cfg.minilm:
        from suite.data.embed import embed
        for arm, qs in (("treesynth", ts), ("direct", direct)):
            out[f"{arm}_diversity"] = mean_cosine_distance(embed(qs).float()) if len(qs) > 1 else float("nan")
    out["validator_errors"] = validator_errors(cfg.samples_per_node)
    for arm, qs in (("treesynth", ts), ("direct", direct)):
        (ctx.run_dir / f"{arm}.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in qs))
    return Outcome(metrics=out, dataset=ref)
