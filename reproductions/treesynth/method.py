"""TreeSynth (spec §3) over the LLM-free simulated data space of spec §6.

The data space: GSM-style problems with 5 attribute dimensions (6 x 4 x 8 x 3 x 4 = 2,304 atomic
cells), rendered from templates, exact answers. The *simulated* generator LLM is mode-collapsed:
an unconstrained attribute is drawn from Zipf(s) over the catalogue; a constrained one follows the
constraint with probability ``follow`` (spec §6: 0.95), else falls back to the Zipf draw.

The tree (spec §3 ``expand``) is the paper's algorithm with the LLM calls replaced by the simulator:
pivot samples, dimension choice (simulated: highest pivot entropy among dimensions unused by
ancestors), the {value: [pivot indices]} mapping checked by the validator, the value list
(simulated: the catalogue), infinite nodes (one child holding the whole list), and leaf generation
of max(1, base**k) sample sets of ``samples_per_set`` questions under all ancestor constraints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from suite.spec import DatasetRef

Variant = Literal["correct", "unconstrained-leaves", "lowest-entropy"]

# --------------------------------------------------------------------------- the data space (spec §6)
DIMS = ("operation", "magnitude", "domain", "steps", "unit")
SIZES = (6, 4, 8, 3, 4)
N_CELLS = math.prod(SIZES)  # 2,304
OPS = ("gets {b} more", "gives away {b}", "multiplies by {b}", "gets {b} more then doubles",
       "gives away {b} then gets 1 more", "multiplies by {b} then gives away 1")
OPERANDS = ((2, 3, 4), (5, 6, 7), (11, 13, 17), (21, 23, 29))        # 3 operand values per magnitude
DOMAINS = (("Ava", "apples", "market"), ("Ben", "eggs", "farm"), ("Cleo", "pencils", "school"),
           ("Dan", "balls", "gym"), ("Eve", "cookies", "bakery"), ("Finn", "tickets", "station"),
           ("Gia", "seeds", "garden"), ("Hal", "books", "library"))
UNITS = (("single", 1), ("pairs of", 2), ("boxes of 5", 5), ("dozens of", 12))
N_OPERANDS = 3
# the generator of this space is the data's loader: its own ref (generated here, spec §6)
DATASET = DatasetRef("treesynth-sim-gsm-2304", "stand-in")


def cell_index(attrs: torch.Tensor) -> torch.Tensor:
    """(N, 5) attribute indices -> (N,) atomic-cell id in [0, 2304)."""
    idx = torch.zeros(attrs.shape[0], dtype=torch.long, device=attrs.device)
    for d, s in enumerate(SIZES):
        idx = idx * s + attrs[:, d]
    return idx


def all_cells(device: torch.device | str = "cpu") -> torch.Tensor:
    """Every atomic cell once, (2304, 5)."""
    grids = torch.meshgrid(*[torch.arange(s, device=device) for s in SIZES], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], 1)


def answers(attrs: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """Exact answer (an integer) of each problem: start with a (unit-scaled) count, apply the
    operation pattern steps+1 times with operand b, vectorised over samples."""
    mag, op, steps, unit = attrs[:, 1], attrs[:, 0], attrs[:, 3], attrs[:, 4]
    ops_t = torch.tensor(OPERANDS, device=attrs.device)
    a = ops_t[mag, xa] * torch.tensor([u[1] for u in UNITS], device=attrs.device)[unit]
    b = ops_t[mag, xb]
    v = a.clone()
    for t in range(max(SIZES[3], 1)):
        nv = torch.stack([v + b, v - b, v * b, 2 * (v + b), v - b + 1, v * b - 1], 1).gather(1, op[:, None])[:, 0]
        v = torch.where(steps >= t, nv, v)
    return v


def render(attrs: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor) -> list[str]:
    """Template text of each problem (used for the MiniLM diversity metric and the examples)."""
    out = []
    for (o, m, d, s, u), i, j in zip(attrs.tolist(), xa.tolist(), xb.tolist()):
        name, thing, place = DOMAINS[d]
        a, b = OPERANDS[m][i], OPERANDS[m][j]
        unit = UNITS[u][0]
        rep = ("once", "twice", "three times")[s]
        out.append(f"At the {place}, {name} has {a} {unit} {thing}. {rep.capitalize()}, {name} "
                   f"{OPS[o].format(b=b)}. How many {thing} does {name} have now?")
    return out


def slot_tokens(attrs: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """The problem as its 7 template-slot tokens (ids in one shared vocabulary): what the tiny
    answer predictor reads (the operands as numbers of their magnitude)."""
    offs, parts = 0, []
    for d, s in enumerate(SIZES):
        parts.append(attrs[:, d] + offs)
        offs += s
    parts.append(attrs[:, 1] * N_OPERANDS + xa + offs)
    offs += SIZES[1] * N_OPERANDS
    parts.append(attrs[:, 1] * N_OPERANDS + xb + offs)
    return torch.stack(parts, 1)


VOCAB = sum(SIZES) + 2 * SIZES[1] * N_OPERANDS


# --------------------------------------------------------------------------- the simulated generator LLM
@dataclass
class Dataset:
    attrs: torch.Tensor   # (N, 5) long
    xa: torch.Tensor      # (N,) operand index of the start count
    xb: torch.Tensor      # (N,) operand index of the step operand

    def __len__(self) -> int:
        return self.attrs.shape[0]

    def subset(self, idx: torch.Tensor) -> "Dataset":
        return Dataset(self.attrs[idx], self.xa[idx], self.xb[idx])

    @staticmethod
    def cat(parts: Sequence["Dataset"]) -> "Dataset":
        return Dataset(torch.cat([p.attrs for p in parts]), torch.cat([p.xa for p in parts]),
                       torch.cat([p.xb for p in parts]))


@dataclass
class SimLLM:
    """Mode-collapsed generator (spec §6). ``calls`` counts requests (one request returns one set of
    up to ``samples_per_set`` questions, as the paper's prompts ask for 10 at a time)."""

    zipf_s: float
    follow: float
    gen: torch.Generator
    device: torch.device
    infinite_draw: str = "per-request"
    calls: int = 0
    perm: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        # which catalogue value is the generator's favourite is arbitrary: a fixed random rank order
        self.perm = [torch.randperm(s, generator=self.gen).to(self.device) for s in SIZES]

    def _zipf(self, n: int, d: int) -> torch.Tensor:
        ranks = torch.arange(1, SIZES[d] + 1, dtype=torch.float, device=self.device)
        p = ranks.pow(-self.zipf_s)
        r = torch.multinomial(p / p.sum(), n, replacement=True, generator=self._g())
        return self.perm[d][r]

    def _g(self) -> torch.Generator:
        return self.gen if self.device.type == "cpu" else None  # type: ignore[return-value]

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self._g(), device=self.device)

    def generate(self, n: int, fixed: dict[int, int] | None = None, lists: dict[int, Sequence[int]] | None = None,
                 count_calls: bool = True, per_call: int = 10) -> Dataset:
        """n questions under constraints: ``fixed`` {dim: value}; ``lists`` {dim: allowed values} (an
        infinite node's value list carried in the prompt, spec §3). Each constraint is followed with
        probability ``follow``; otherwise (and for unconstrained dims) the Zipf prior answers."""
        if count_calls:
            self.calls += math.ceil(n / per_call)
        fixed, lists = fixed or {}, lists or {}
        cols = []
        for d in range(len(SIZES)):
            v = self._zipf(n, d)
            if d in fixed:
                v = torch.where(self._rand(n) < self.follow, torch.full_like(v, fixed[d]), v)
            elif d in lists:
                allowed = torch.as_tensor(list(lists[d]), device=self.device)
                n_req = math.ceil(n / per_call)
                if self.infinite_draw == "per-request":
                    # official retrieve_dimension_values: random.choice over the list, once per prompt
                    r = torch.randint(len(allowed), (n_req,), generator=self._g(), device=self.device)
                    pick = allowed[r].repeat_interleave(per_call)[:n]
                else:  # ablation: the generator draws from the carried list with its Zipf prior
                    ranks = torch.arange(1, len(allowed) + 1, dtype=torch.float, device=self.device).pow(-self.zipf_s)
                    pick = allowed[torch.multinomial(ranks / ranks.sum(), n, replacement=True, generator=self._g())]
                v = torch.where(self._rand(n) < self.follow, pick, v)
            cols.append(v)
        attrs = torch.stack(cols, 1)
        xa = torch.randint(N_OPERANDS, (n,), generator=self._g(), device=self.device)
        xb = torch.randint(N_OPERANDS, (n,), generator=self._g(), device=self.device)
        return Dataset(attrs, xa, xb)


# --------------------------------------------------------------------------- tree (spec §3)
@dataclass
class Node:
    depth: int
    dim: int | None = None                  # the dimension this node's value belongs to (None at the root)
    value: int | None = None                # one attribute value ...
    values: tuple[int, ...] | None = None   # ... or the whole list (an infinite node)
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)

    def path(self) -> list["Node"]:
        out, n = [], self
        while n is not None and n.dim is not None:
            out.append(n)
            n = n.parent
        return out[::-1]

    def constraints(self) -> tuple[dict[int, int], dict[int, tuple[int, ...]]]:
        fixed, lists = {}, {}
        for n in self.path():
            if n.values is not None:
                lists[n.dim] = n.values
            else:
                fixed[n.dim] = n.value
        return fixed, lists

    def n_infinite(self) -> int:
        return sum(n.values is not None for n in self.path())


def entropy_bits(counts: torch.Tensor) -> float:
    p = counts.float() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def validate_mapping(mapping: dict[int, list[int]], n_pivots: int) -> bool:
    """Spec §3 / §7: a classification {attribute value: [pivot indices]} must cover every pivot index
    exactly once (the repo's index-coverage check)."""
    seen = sorted(i for idx in mapping.values() for i in idx)
    return seen == list(range(n_pivots))


def choose_dimension(pivots: Dataset, used: set[int], variant: str) -> tuple[int | None, dict[int, list[int]]]:
    """Simulated dimension selection (spec §6): among the dimensions NOT used by ancestors (spec §7
    check), the one with the highest empirical entropy over the pivots, with the mapping of its
    values to pivot indices. Variant ``lowest-entropy`` picks the lowest instead (teeth)."""
    free = [d for d in range(len(SIZES)) if d not in used]
    if not free:
        return None, {}
    ents = [entropy_bits(torch.bincount(pivots.attrs[:, d], minlength=SIZES[d])) for d in free]
    pick = min if variant == "lowest-entropy" else max
    best = pick(range(len(free)), key=lambda i: (ents[i], -free[i] if pick is max else free[i]))
    d = free[best]
    mapping: dict[int, list[int]] = {}
    for i, v in enumerate(pivots.attrs[:, d].tolist()):
        mapping.setdefault(v, []).append(i)
    return d, mapping


@dataclass
class TreeStats:
    internal: int = 0
    leaves: int = 0
    infinite: int = 0
    capped: int = 0
    pivot_leaves: int = 0


def build_tree(llm: SimLLM, *, max_depth: int, pivots_per_node: int, infinite_threshold: int, retries: int,
               variant: str) -> tuple[Node, list[Node], TreeStats]:
    """Breadth-first expansion (spec §3 ``expand``) down to max_depth; returns root, leaves, stats.
    Leaves whose dimension choice fails keep their pivots as data (handled by the caller through
    ``Node.values is None and not children``)."""
    root = Node(depth=0)
    frontier, leaves, st = [root], [], TreeStats()
    while frontier:
        nxt = []
        for node in frontier:
            if node.depth >= max_depth:
                leaves.append(node)
                continue
            fixed, lists = node.constraints()
            pivots = llm.generate(pivots_per_node, fixed, lists, per_call=pivots_per_node)  # 1 call
            used = {n.dim for n in node.path()}
            d, mapping = None, {}
            for _ in range(retries):
                llm.calls += 1  # the dimension + classification request (temperature 1.0)
                d, mapping = choose_dimension(pivots, used, variant)
                if d is not None and validate_mapping(mapping, pivots_per_node):
                    break
                d = None
            if d is None:  # no valid answer: the node becomes a leaf (its pivots are data, spec §3)
                leaves.append(node)
                st.pivot_leaves += 1
                continue
            llm.calls += 1  # value-list expansion until 'complete' (simulated: the catalogue)
            values = tuple(range(SIZES[d]))
            st.internal += 1
            if len(values) > infinite_threshold:  # infinite node: ONE child holding the whole list
                node.children = [Node(node.depth + 1, d, values=values, parent=node)]
                st.infinite += 1
            else:  # one child per value: mutually exclusive, jointly exhaustive
                node.children = [Node(node.depth + 1, d, value=v, parent=node) for v in values]
            nxt.extend(node.children)
        frontier = nxt
    st.leaves = len(leaves)
    return root, leaves, st


def generate_leaves(llm: SimLLM, leaves: Sequence[Node], *, samples_per_set: int, infinite_base: int,
                    max_sets: int, variant: str, rounds: int = 1) -> tuple[Dataset, torch.Tensor, int]:
    """Leaf generation (spec §3): each leaf issues max(1, base**k) requests of samples_per_set
    questions satisfying ALL ancestor constraints (k = infinite nodes on its path; capped at max_sets,
    spec §7), ``rounds`` times. Returns the data, each sample's leaf index and how many leaves were
    capped. Variant ``unconstrained-leaves`` drops the constraints at the leaves (teeth)."""
    parts, owner, capped = [], [], 0
    for _ in range(rounds):
        for li, leaf in enumerate(leaves):
            sets = max(1, infinite_base ** leaf.n_infinite())
            if sets > max_sets:
                sets, capped = max_sets, capped + 1
            fixed, lists = leaf.constraints()
            if variant == "unconstrained-leaves":
                fixed, lists = {}, {}
            n = sets * samples_per_set
            parts.append(llm.generate(n, fixed, lists, per_call=samples_per_set))
            owner.append(torch.full((n,), li, dtype=torch.long))
    return Dataset.cat(parts), torch.cat(owner), capped


def leaf_of(leaves: Sequence[Node], data: Dataset) -> torch.Tensor:
    """Assign every sample to the leaves whose path it satisfies (spec §3 rebalancing: classify by the
    attribute path). Returns an (N, L) bool matrix; exclusive + exhaustive means each row has one True."""
    m = torch.ones(len(data), len(leaves), dtype=torch.bool, device=data.attrs.device)
    for j, leaf in enumerate(leaves):
        for n in leaf.path():
            if n.values is None:
                m[:, j] &= data.attrs[:, n.dim] == n.value
            else:
                m[:, j] &= torch.isin(data.attrs[:, n.dim], torch.as_tensor(n.values, device=data.attrs.device))
    return m


def rebalance(owner: torch.Tensor, n_leaves: int, n_out: int, gen: torch.Generator) -> torch.Tensor:
    """TreeSynth-balanced (spec §3): down- or up-sample the existing samples toward uniform counts
    over the (non-empty) leaves; returns n_out indices into the pool."""
    counts = torch.bincount(owner, minlength=n_leaves)
    nonempty = (counts > 0).nonzero()[:, 0]
    quota = torch.full((len(nonempty),), n_out // len(nonempty), dtype=torch.long)
    quota[torch.randperm(len(nonempty), generator=gen)[: n_out - int(quota.sum())]] += 1
    order = torch.argsort(owner, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    out = []
    for q, leaf in zip(quota.tolist(), nonempty.tolist()):
        c, s = int(counts[leaf]), int(starts[leaf])
        # down-sample without replacement; up-sample = every member once + draws with replacement
        pick = torch.randperm(c, generator=gen)[: min(q, c)]
        if q > c:
            pick = torch.cat([pick, torch.randint(c, (q - c,), generator=gen)])
        out.append(order[s + pick])
    return torch.cat(out)


def evolve(llm: SimLLM, data: Dataset, gen: torch.Generator) -> Dataset:
    """Evol-style perturbation (simulated Evol-Instruct, one round, one request per sample): each
    sample gets one random evolution: deepen (one more step), harder numbers (one magnitude up),
    breadth (a new domain) or concretise (a new unit); new values come from the same mode-collapsed
    prior."""
    n = len(data)
    llm.calls += n
    a = data.attrs.clone()
    kind = torch.randint(4, (n,), generator=gen).to(a.device)
    a[:, 3] = torch.where(kind == 0, (a[:, 3] + 1).clamp(max=SIZES[3] - 1), a[:, 3])
    a[:, 1] = torch.where(kind == 1, (a[:, 1] + 1).clamp(max=SIZES[1] - 1), a[:, 1])
    a[:, 2] = torch.where(kind == 2, llm._zipf(n, 2), a[:, 2])
    a[:, 4] = torch.where(kind == 3, llm._zipf(n, 4), a[:, 4])
    return Dataset(a, data.xa, data.xb)
