"""Procedural toy Python (spec §6): a one-line NL docstring from templates and a 3-5-line
arithmetic body, with generated unit tests, plus a restricted evaluator so that model output is
*interpreted* (assignments of +, -, * over names and small constants, then ``return``), never exec'd.

    def f(a, b):
        \"\"\"Add a and b, then double, then add 3.\"\"\"
        c = a + b
        d = c * 2
        e = d + 3
        return e
"""
from __future__ import annotations

import ast
import random
from dataclasses import dataclass

FIRST = (("Add a and b", "a + b"), ("Subtract b from a", "a - b"), ("Multiply a by b", "a * b"),
         ("Add b to a", "b + a"))
THEN = (("add b", "{u} + b"), ("subtract b", "{u} - b"), ("multiply by b", "{u} * b"), ("double", "{u} * 2"),
        ("triple", "{u} * 3"), ("square", "{u} * {u}"), ("negate", "0 - {u}"), ("add {k}", "{u} + {k}"),
        ("subtract {k}", "{u} - {k}"))
VARS = "cdegh"
HEADER = "def f(a, b):\n"
DOC_OPEN, DOC_CLOSE, THEN_SEP = '    """', '."""\n', ", then "


@dataclass(frozen=True)
class Program:
    header: str      # signature + docstring (the NL prompt)
    body: list[str]  # body lines, each "    <stmt>\n"
    tests: tuple[tuple[tuple[int, int], int], ...]  # ((a, b), expected)

    @property
    def text(self) -> str:
        return self.header + "".join(self.body)

    def clause_split(self, j: int) -> tuple[str, str, str]:
        """(prefix, clause j of the docstring, suffix): the docstring is ``", then ".join(clauses)``
        and every clause is spelled out by one body line, so the suffix determines the clause."""
        doc_start, doc_end = len(HEADER) + len(DOC_OPEN), len(self.header) - len(DOC_CLOSE)
        clauses = self.header[doc_start:doc_end].split(THEN_SEP)
        pre = self.header[:doc_start] + "".join(c + THEN_SEP for c in clauses[:j])
        suf = "".join(THEN_SEP + c for c in clauses[j + 1:]) + self.header[doc_end:] + "".join(self.body)
        return pre, clauses[j], suf

    @property
    def n_clauses(self) -> int:
        return self.header.count(THEN_SEP) + 1


def _one(r: random.Random) -> Program:
    doc, expr = r.choice(FIRST)
    lines, phrases, u = [f"    c = {expr}\n"], [doc], "c"
    for i in range(r.randint(1, 3)):
        ph, ex = r.choice(THEN)
        k = r.randint(1, 9)
        v = VARS[i + 1]
        lines.append(f"    {v} = {ex.format(u=u, k=k)}\n")
        phrases.append(ph.format(k=k))
        u = v
    lines.append(f"    return {u}\n")
    header = HEADER + DOC_OPEN + THEN_SEP.join(phrases) + DOC_CLOSE
    body_src = "".join(lines)
    tests = []
    for _ in range(3):
        a, b = r.randint(-9, 9), r.randint(-9, 9)
        tests.append(((a, b), evaluate_body(body_src, a, b)))
    return Program(header, lines, tuple(tests))


def generate(count: int, seed: int) -> list[Program]:
    """``count`` programs; a draw whose test values leave the evaluator's range is redrawn."""
    r = random.Random(seed)
    out: list[Program] = []
    while len(out) < count:
        try:
            out.append(_one(r))
        except ValueError:  # e.g. repeated squaring beyond 1e12: not a valid task, draw again
            continue
    return out


_OPS = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y, ast.Mult: lambda x, y: x * y}


def _expr(node: ast.AST, env: dict[str, int]) -> int:
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) < 10 ** 6:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        v = _OPS[type(node.op)](_expr(node.left, env), _expr(node.right, env))
        if abs(v) > 10 ** 12:
            raise ValueError("value out of range")
        return v
    raise ValueError(f"unsupported expression {ast.dump(node)[:40]}")


def evaluate_body(body: str, a: int, b: int) -> int:
    """Run a function body in the restricted language; ValueError/SyntaxError on anything else."""
    tree = ast.parse("def f(a, b):\n" + body)
    fn = tree.body[0]
    if len(tree.body) != 1 or not isinstance(fn, ast.FunctionDef):
        raise ValueError("not a single function")
    env = {"a": a, "b": b}
    for st in fn.body:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant) and isinstance(st.value.value, str):
            continue  # docstring
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            env[st.targets[0].id] = _expr(st.value, env)
        elif isinstance(st, ast.Return) and st.value is not None:
            return _expr(st.value, env)
        else:
            raise ValueError("unsupported statement")
    raise ValueError("no return")


def passes(program: Program, completion_body: str) -> bool:
    """Unit tests of ``program`` on a generated body (spec §6: pass@k is measurable)."""
    try:
        return all(evaluate_body(completion_body, a, b) == want for (a, b), want in program.tests)
    except (ValueError, SyntaxError, RecursionError, ZeroDivisionError):
        return False
