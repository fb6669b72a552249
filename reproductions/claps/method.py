"""ClaPS (Zhou et al., Findings of EMNLP 2023): Clustering and Pruning for efficient black-box prompt Search.

The algorithm (paper §3, spec §3), written against a *counted* black box: a task LM that maps a batch of
prompts (token ids) and a split of examples to logits restricted to the verbalizer tokens.

  1. candidate vocabulary (§3.1)          -> the caller (tokenizer filter / toy vocabulary)
  2. cluster_representatives (§3.2)       KMeans on input embeddings, token nearest each centroid
  3. influence + prune_top_percentile     influence(v) = R(prompt=v) - R(empty) on one train batch (§3.3),
                                          keep influence > percentile (strict '>', ties dropped)
  4. greedy_search (§3.4, Alg. greedy)    5 rounds: append argmax_v R(prompt + v)
  5. the chosen prompt is scored on validation and test by the caller.

Prompts are (P, L) long tensors; ``EMPTY`` (-1) marks an unused slot, so prompts of different lengths
batch together. Every row evaluated on the train batch or validation split is one black-box query.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

EMPTY = -1
Variant = Literal["correct", "least-influential", "greedy-argmin", "no-prune"]
RewardType = Literal["cross_entropy", "ce_correct"]


# ---------------------------------------------------------------------------------------------- black box
@dataclass
class BlackBox:
    """A black-box task LM with a query counter.

    ``fn(prompts (P, L) long, split) -> logits (P, B, C)`` over the C verbalizers of the split's B examples.
    One prompt row evaluated on a split = one query (the paper's unit: one forward evaluation of a
    candidate prompt on the reward batch); ``examples`` counts the example-level forwards as well.
    ``chunk`` bounds how many prompt rows go to ``fn`` at once (memory).
    """

    fn: Callable[[torch.Tensor, str], torch.Tensor]
    chunk: int = 256
    queries: int = 0
    examples: int = 0
    per_split: dict[str, int] = field(default_factory=dict)

    def logits(self, prompts: torch.Tensor, split: str) -> torch.Tensor:
        outs = [self.fn(prompts[i:i + self.chunk], split) for i in range(0, prompts.shape[0], self.chunk)]
        out = torch.cat(outs, 0)
        self.queries += prompts.shape[0]
        self.examples += prompts.shape[0] * out.shape[1]
        self.per_split[split] = self.per_split.get(split, 0) + prompts.shape[0]
        return out

    def snapshot(self) -> tuple[int, int]:
        return self.queries, self.examples


# ------------------------------------------------------------------------------------------------ rewards
def reward(logits: torch.Tensor, labels: torch.Tensor, kind: RewardType = "cross_entropy") -> torch.Tensor:
    """Reward per prompt (spec §3), averaged over the batch: logits (P, B, C), labels (B,) -> (P,).

    ``cross_entropy`` (the paper's default, as in the official reward): p = softmax(verbalizer logits), then
    -CrossEntropy(p, y), i.e. the loss applied to the *probabilities* (a second softmax, spec §7).
    ``ce_correct``: -CE(logits, y) with a single softmax.
    """
    p = logits.float().softmax(-1)
    z = p if kind == "cross_entropy" else logits.float()
    logp = z.log_softmax(-1)
    y = labels.view(1, -1, 1).expand(logits.shape[0], -1, 1)
    return logp.gather(-1, y).squeeze(-1).mean(-1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(P, B, C), (B,) -> accuracy per prompt (P,)."""
    return (logits.argmax(-1) == labels.view(1, -1)).float().mean(-1)


def empty_prompts(n: int, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.full((n, length), EMPTY, dtype=torch.long, device=device)


def prompt_reward(bb: BlackBox, prompts: torch.Tensor, split: str, labels: torch.Tensor,
                  kind: RewardType) -> torch.Tensor:
    return reward(bb.logits(prompts, split), labels, kind)


# ------------------------------------------------------------------------------------------ §3.2 clustering
def cluster_representatives(emb: torch.Tensor, n_clusters: int, seed: int = 0, n_init: int = 1) -> torch.Tensor:
    """KMeans on token embeddings (V, d); the index of the token nearest each centroid, deduplicated and
    sorted (the paper keeps 1867 distinct tokens of 2000 clusters for Flan-T5-base)."""
    from sklearn.cluster import KMeans

    x = emb.detach().float().cpu()
    k = min(n_clusters, x.shape[0])
    km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(x.numpy())
    cent = torch.as_tensor(km.cluster_centers_, dtype=x.dtype)
    nearest = torch.cdist(cent, x).argmin(1)
    return torch.unique(nearest)


# ----------------------------------------------------------------------------------- §3.3 influence, prune
def influence(bb: BlackBox, vocab: torch.Tensor, labels: torch.Tensor, length: int, kind: RewardType,
              split: str = "train") -> torch.Tensor:
    """influence(v) = R(prompt = v) - R(empty prompt) on the train batch (``prune_type=reward``):
    1 + |vocab| queries."""
    dev = labels.device
    r0 = prompt_reward(bb, empty_prompts(1, length, dev), split, labels, kind)
    single = empty_prompts(vocab.numel(), length, dev)
    single[:, -1] = vocab.to(dev)
    return prompt_reward(bb, single, split, labels, kind) - r0


def prune_top_percentile(vocab: torch.Tensor, infl: torch.Tensor, percentile: float,
                         least: bool = False) -> torch.Tensor:
    """Keep tokens whose influence is strictly above the ``percentile``-th percentile (linear
    interpolation, as numpy's default); ties at the cutoff are dropped (spec §7).
    ``least=True`` is the teeth variant: keep the tokens strictly *below* the (100 - percentile)-th."""
    x = infl.double()
    if least:
        return vocab[x < torch.quantile(x, 1.0 - percentile / 100.0)]
    return vocab[x > torch.quantile(x, percentile / 100.0)]


def random_prune(vocab: torch.Tensor, percentile: float, gen: torch.Generator) -> torch.Tensor:
    """Random pruning baseline (§4): ``int(n * (100 - percentile) / 100)`` tokens drawn uniformly."""
    n = int(vocab.numel() * (100 - percentile) / 100)
    return vocab[torch.randperm(vocab.numel(), generator=gen)[:n].to(vocab.device)]


# ---------------------------------------------------------------------------------------- §3.4 search
def greedy_search(bb: BlackBox, vocab: torch.Tensor, labels: torch.Tensor, length: int, kind: RewardType,
                  split: str = "train", argmin: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Greedy: start from the empty prompt; ``length`` times evaluate prompt + v for every v in ``vocab``
    and append the best one (tokens may repeat). Exactly ``length * |vocab|`` queries.
    ``argmin`` is the teeth variant (appends the worst token)."""
    dev = labels.device
    vocab = vocab.to(dev)
    prompt = empty_prompts(1, length, dev)
    trace: list[float] = []
    for step in range(length):
        cand = prompt.expand(vocab.numel(), -1).clone()
        # left-padded prompt slot: shift the current tokens left by one and append v at the end
        cand[:, :-1] = prompt[0, 1:]
        cand[:, -1] = vocab
        r = prompt_reward(bb, cand, split, labels, kind)
        j = int(r.argmin() if argmin else r.argmax())
        prompt = cand[j:j + 1]
        trace.append(float(r[j]))
    return prompt, trace


def random_search(bb: BlackBox, vocab: torch.Tensor, labels: torch.Tensor, length: int, kind: RewardType,
                  budget: int, gen: torch.Generator, split: str = "train") -> torch.Tensor:
    """Random search baseline: ``budget`` random ``length``-token prompts from ``vocab``, the best by train
    reward (``budget`` queries)."""
    dev = labels.device
    idx = torch.randint(vocab.numel(), (budget, length), generator=gen).to(dev)
    prompts = vocab.to(dev)[idx]
    r = prompt_reward(bb, prompts, split, labels, kind)
    j = int(r.argmax())
    return prompts[j:j + 1]


# ----------------------------------------------------------------------------------------------- pipeline
@dataclass
class ClapsResult:
    prompt: torch.Tensor
    reps: torch.Tensor
    influence: torch.Tensor
    pruned: torch.Tensor
    trace: list[float]


def claps(bb: BlackBox, emb: torch.Tensor, vocab: torch.Tensor, labels: torch.Tensor, *, n_clusters: int,
          percentile: float, length: int, kind: RewardType, kmeans_seed: int = 0,
          variant: Variant = "correct") -> ClapsResult:
    """Cluster (§3.2) -> influence and prune (§3.3) -> greedy search in the pruned space (§3.4).
    ``emb`` (V, d) holds the embedding of each ``vocab`` entry, row for row."""
    reps = vocab[cluster_representatives(emb, n_clusters, kmeans_seed).to(vocab.device)] if n_clusters > 0 \
        else vocab
    infl = influence(bb, reps, labels, length, kind)
    if variant == "no-prune":
        pruned = reps
    else:
        pruned = prune_top_percentile(reps, infl, percentile, least=variant == "least-influential")
        if pruned.numel() == 0 and reps.numel() > 0:
            # §3.3 keeps the top (100 - percentile) % of the representatives by influence; when every influence
            # ties at the cutoff the strict '>' keeps none, so keep that many by rank (ties: vocabulary order)
            k = max(1, math.ceil(reps.numel() * (100 - percentile) / 100))
            rank = torch.sort(infl.double(), descending=variant != "least-influential", stable=True).indices
            pruned = reps[rank[:k].to(reps.device)]
    prompt, trace = greedy_search(bb, pruned, labels, length, kind, argmin=variant == "greedy-argmin")
    return ClapsResult(prompt, reps, infl, pruned, trace)


def top_share(infl: torch.Tensor, frac: float = 0.1) -> float:
    """Share of total |influence| carried by the top ``ceil(frac * n)`` tokens by |influence| (spec §6, C1)."""
    a = infl.abs().double().sort(descending=True).values
    k = max(1, math.ceil(frac * a.numel()))
    return float(a[:k].sum() / a.sum().clamp_min(1e-300))
