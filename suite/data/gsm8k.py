"""GSM8K (Cobbe et al. 2021) jsonl files and a GSM-style word-problem generator (offline stand-in).

Published layout (``grade_school_math/data`` of openai/grade-school-math, kept under
``<data root>/gsm8k``): ``train.jsonl`` and ``test.jsonl``, one ``{"question", "answer"}`` per
line; the answer is a worked solution with calculator annotations ``<<48/2=24>>`` and ends in
``#### <number>``. Loaders return x = list of questions, y = final answers (float64), extra
``answer`` = the full solution text.
The generator writes records in the same format from templates with known answers: every
intermediate step is annotated ``<<expr=value>>`` so a checker can recompute it.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from suite.data.base import ArrayDataset, DatasetRef, Splits, atomic_write_bytes, corrupt, require_files

NAME = "gsm8k"
SUBDIR = "gsm8k"
FILES = ["train.jsonl", "test.jsonl"]
HOW = ("copy grade_school_math/data/{train,test}.jsonl of https://github.com/openai/grade-school-math "
       "into <data root>/gsm8k/")
_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def final_answer(answer: str) -> float:
    """The number after ``####`` (commas removed); ValueError if there is none."""
    m = _FINAL.search(answer.strip())
    if m is None:
        raise ValueError("answer does not end in '#### <number>'")
    return float(m.group(1).replace(",", ""))


def read_jsonl(path: Path) -> list[dict]:
    """Records of a GSM8K-format jsonl file; CorruptDataError names the bad line."""
    records = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            if not isinstance(r.get("question"), str) or not isinstance(r.get("answer"), str):
                raise ValueError("needs string fields 'question' and 'answer'")
            final_answer(r["answer"])
        except (ValueError, AttributeError) as err:
            raise corrupt(path, f"line {i + 1}: {err}") from None
        records.append(r)
    return records


def to_dataset(records: list[dict], ref: DatasetRef) -> ArrayDataset:
    y = torch.tensor([final_answer(r["answer"]) for r in records], dtype=torch.float64)
    return ArrayDataset([r["question"] for r in records], y, ref, {"answer": [r["answer"] for r in records]})


def load(root: Path) -> Splits:
    """GSM8K train/test splits from ``root/{train,test}.jsonl``."""
    root = Path(root)
    require_files(root, FILES, NAME, HOW)
    ref = DatasetRef(NAME, "paper")
    return {s: to_dataset(read_jsonl(root / f"{s}.jsonl"), ref) for s in ("train", "test")}


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_bytes(Path(path), "".join(json.dumps(r) + "\n" for r in records).encode())


def write_fixture(root: Path, n: int = 5, seed: int = 0) -> Path:
    """``train.jsonl`` / ``test.jsonl`` with generated GSM-style records."""
    for i, s in enumerate(("train", "test")):
        write_jsonl(Path(root) / f"{s}.jsonl", generate(GSMConfig(n=n, seed=seed + i)))
    return Path(root)


# ---- GSM-style generator ------------------------------------------------------------------------

NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina", "Randy", "Joy")
ITEMS = ("apples", "pencils", "stickers", "cookies", "marbles", "books", "cupcakes", "shells")


def _t_sell(r: random.Random) -> tuple[str, list[tuple[str, int]]]:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    a, k = r.randint(12, 60), r.randint(2, 4)
    a -= a % k
    b = a // k
    frac = {2: "half", 3: "a third", 4: "a quarter"}[k]
    q = (f"{name} sold {a} {item} in April. In May, {name} sold {frac} as many {item} as in April. "
         f"How many {item} did {name} sell altogether in April and May?")
    return q, [(f"{a}/{k}", b), (f"{a}+{b}", a + b)]


def _t_wage(r: random.Random) -> tuple[str, list[tuple[str, int]]]:
    name = r.choice(NAMES)
    rate, hours, bonus = r.randint(8, 30), r.randint(3, 12), r.randint(5, 40)
    q = (f"{name} earns ${rate} an hour for babysitting. Yesterday, {name} babysat for {hours} hours "
         f"and got a ${bonus} tip. How much did {name} earn yesterday?")
    return q, [(f"{rate}*{hours}", rate * hours), (f"{rate * hours}+{bonus}", rate * hours + bonus)]


def _t_share(r: random.Random) -> tuple[str, list[tuple[str, int]]]:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    boxes, per_box, friends = r.randint(2, 9), r.randint(3, 12), r.randint(2, 6)
    total = boxes * per_box
    keep = total % friends + friends * r.randint(0, 2)
    share = (total - keep) // friends
    q = (f"{name} buys {boxes} boxes of {item} with {per_box} {item} in each box. {name} keeps {keep} "
         f"{item} and shares the rest equally among {friends} friends. How many {item} does each friend get?")
    return q, [(f"{boxes}*{per_box}", total), (f"{total}-{keep}", total - keep), (f"{total - keep}/{friends}", share)]


def _t_savings(r: random.Random) -> tuple[str, list[tuple[str, int]]]:
    name = r.choice(NAMES)
    have, weekly, weeks = r.randint(5, 50), r.randint(5, 25), r.randint(2, 12)
    price = have + weekly * weeks
    q = (f"{name} wants a bike that costs ${price}. {name} has ${have} and saves ${weekly} every week. "
         f"How many weeks does {name} need to save to have exactly enough for the bike?")
    return q, [(f"{price}-{have}", price - have), (f"{price - have}/{weekly}", weeks)]


def _t_discount(r: random.Random) -> tuple[str, list[tuple[str, int]]]:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    n, price, pct = r.randint(2, 12), 20 * r.randint(1, 10), r.choice((10, 20, 25, 50))
    cost = n * price
    off = cost * pct // 100
    q = (f"{name} buys {n} packs of {item} at ${price} per pack. The store gives a {pct}% discount "
         f"on the whole order. How much does {name} pay?")
    return q, [(f"{n}*{price}", cost), (f"{cost}*{pct}/100", off), (f"{cost}-{off}", cost - off)]


TEMPLATES: dict[str, Callable[[random.Random], tuple[str, list[tuple[str, int]]]]] = {
    "sell": _t_sell, "wage": _t_wage, "share": _t_share, "savings": _t_savings, "discount": _t_discount}


@dataclass(frozen=True)
class GSMConfig:
    n: int = 500
    seed: int = 0


def generate(cfg: GSMConfig) -> list[dict]:
    """``cfg.n`` records {"question", "answer"}; answers annotate each step and end in ``#### <int>``."""
    r = random.Random(cfg.seed)
    names = sorted(TEMPLATES)
    out = []
    for _ in range(cfg.n):
        q, steps = TEMPLATES[r.choice(names)](r)
        lines = [f"{expr} = <<{expr}={val}>>{val}" for expr, val in steps]
        out.append({"question": q, "answer": "\n".join(lines) + f"\n#### {steps[-1][1]}"})
    return out


def gsm_standin(cfg: GSMConfig = GSMConfig(), cache: bool = True) -> ArrayDataset:
    """Generated GSM-style problems as an ArrayDataset (provenance ``stand-in``), cached by config."""

    def build() -> ArrayDataset:
        return to_dataset(generate(cfg), DatasetRef("gsm-synthetic", "stand-in"))

    if not cache:
        return build()
    from suite.data.cache import cached

    return cached("gsm-synthetic", {"v": 1, **asdict(cfg)}, build)
