"""Representations and transformations of the paper (spec §3), vectorised over R independent runs.

Representations:
- *Weighted*: a run of the program with its weight, ``(state, logw)`` with one row per run;
  meaning E[w · δ_x].
- *Population*: ``Population(state, logw)`` with leading shape (R, n): R independent populations
  of n particles; meaning E[Σ_i w_i δ_{x_i}].
- *Sequential*: a particle whose ``state`` is its trace ``(u, m, logp)`` suspended after its k-th
  Score; ``advance`` resumes every particle to its next Score, ``finish`` to the end.
- *Traced*: a chain state ``Chain(u, m, logp, value)``; ``mh_step`` is the trace MH kernel.

Transformations (each valid = it preserves the meaning; spec §2 C2, §3):
spawn, resample (multinomial, systematic), push_evidence (normalise), collapse (proper);
SMC = finish ∘ (advance then resample)^steps ∘ spawn(n); RMSMC adds MH moves after every
resample; PMMH = MH over a program whose score is the pushed-out SMC evidence.

``Variant`` names the deliberately broken transformations (TEETH ONLY): each changes one building
block and nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from .program import F64, Categorical, Exec, Program, Sample, Score, execute, fresh_uniforms, positions, refresh

Variant = Literal[
    "correct",
    "spawn-no-split",           # spawn copies with weight 1, not 1/n: mass multiplied by n
    "resample-unit-weights",    # offspring get weight 1, not Z/n (spec §6 negative control)
    "resample-ignore-weights",  # ancestors drawn uniformly, not in proportion to the weights
    "normalize-drop-evidence",  # push_evidence divides by Z but does not emit Score(Z)
    "collapse-ignore-weights",  # collapse picks a particle uniformly, not by weight
    "smc-forget-weights",       # advance does not multiply the incremental score into the weights
    "mh-no-hastings",           # trace MH accepts with p'/p: no m/m' correction for the trace length
    "mh-always-accept",         # trace MH accepts every proposal
]
VARIANTS: tuple[str, ...] = Variant.__args__  # type: ignore[attr-defined]


@dataclass
class Population:
    """R populations of n particles: ``state`` maps names to tensors of leading shape (R, n)."""

    state: dict[str, torch.Tensor]
    logw: torch.Tensor  # (R, n)

    @property
    def R(self) -> int:
        return self.logw.shape[0]

    @property
    def n(self) -> int:
        return self.logw.shape[1]

    def gather(self, anc: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in self.state.items():
            idx = anc.reshape(*anc.shape, *([1] * (v.dim() - 2))).expand(*anc.shape, *v.shape[2:])
            out[k] = v.gather(1, idx)
        return out

    def log_mass(self) -> torch.Tensor:
        """log Z per population (R,): the total mass; the SMC evidence estimate."""
        return torch.logsumexp(self.logw, 1)


# ---------------------------------------------------------------- spawn
def spawn(state: dict[str, torch.Tensor], logw: torch.Tensor, n: int, variant: str = "correct") -> Population:
    """spawn(n): n copies of each of R weighted particles, each with weight w/n (mass preserved)."""
    st = {k: v[:, None].expand(v.shape[0], n, *v.shape[1:]).clone() for k, v in state.items()}
    split = 0.0 if variant == "spawn-no-split" else -math.log(n)
    return Population(st, logw[:, None].expand(-1, n) + split)


# ---------------------------------------------------------------- resampling
def _cum(logw: torch.Tensor) -> torch.Tensor:
    """Normalised cumulative weights c_1..c_{n-1} (the last, 1, is never compared)."""
    p = torch.softmax(logw, -1)
    return p.cumsum(-1)[..., :-1].contiguous()


def ancestors_multinomial(logw: torch.Tensor, u: torch.Tensor, variant: str = "correct") -> torch.Tensor:
    """n iid ancestors, P(a = i) = w_i / Z, by inverse CDF of the uniforms u (R, n)."""
    if variant == "resample-ignore-weights":
        return (u * logw.shape[-1]).long().clamp(max=logw.shape[-1] - 1)
    return torch.searchsorted(_cum(logw), u.contiguous(), right=True)


def ancestors_systematic(logw: torch.Tensor, u: torch.Tensor, variant: str = "correct") -> torch.Tensor:
    """Systematic resampling: one uniform u (R, 1) per population, points (u + j)/n."""
    n = logw.shape[-1]
    pts = (u + torch.arange(n, dtype=F64)) / n
    if variant == "resample-ignore-weights":
        return (pts * n).long().clamp(max=n - 1)
    return torch.searchsorted(_cum(logw), pts.contiguous(), right=True)


def apply_ancestors(pop: Population, anc: torch.Tensor, variant: str = "correct") -> Population:
    """The offspring of ``anc``, each with weight Z/n so the total mass Z is preserved (spec §3);
    a population with Z = 0 is left unchanged."""
    logZ = pop.log_mass()
    dead = torch.isneginf(logZ)
    new_w = torch.zeros_like(pop.logw) if variant == "resample-unit-weights" else \
        (logZ - math.log(pop.n))[:, None].expand_as(pop.logw)
    anc = torch.where(dead[:, None], torch.arange(pop.n).expand_as(anc), anc)
    return Population(pop.gather(anc), torch.where(dead[:, None], pop.logw, new_w))


def resample(pop: Population, gen: torch.Generator, scheme: str = "multinomial", variant: str = "correct") -> Population:
    if scheme == "multinomial":
        anc = ancestors_multinomial(pop.logw, fresh_uniforms((pop.R, pop.n), gen), variant)
    elif scheme == "systematic":
        anc = ancestors_systematic(pop.logw, fresh_uniforms((pop.R, 1), gen), variant)
    else:
        raise ValueError(f"resampling scheme {scheme!r}: use multinomial or systematic")
    return apply_ancestors(pop, anc, variant)


# ---------------------------------------------------------------- normalise / push evidence, collapse
def push_evidence(pop: Population, variant: str = "correct") -> tuple[Population, torch.Tensor]:
    """Divide the weights by Z and emit Score(Z) to the outer level: returns (normalised
    population, outer log weight (R,)). Z = 0 stays 0 (weights -inf, outer -inf)."""
    logZ = pop.log_mass()
    safe = torch.where(torch.isneginf(logZ), torch.zeros_like(logZ), logZ)
    outer = torch.zeros_like(logZ) if variant == "normalize-drop-evidence" else logZ
    return Population(dict(pop.state), pop.logw - safe[:, None]), outer


def pick_index(logw: torch.Tensor, u: torch.Tensor, variant: str = "correct") -> torch.Tensor:
    """One index per population with P(i) = w_i / Z, by inverse CDF of u (R,)."""
    n = logw.shape[-1]
    if variant == "collapse-ignore-weights":
        return (u * n).long().clamp(max=n - 1)
    return torch.searchsorted(_cum(logw), u[:, None].contiguous(), right=True)[:, 0]


def collapse(pop: Population, u: torch.Tensor, variant: str = "correct") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """collapse/proper: push the evidence out, then pick one particle by its normalised weight.
    Returns a Weighted representation (state of the picked particle, log Z): E[Z δ_{x_pick}]."""
    norm, outer = push_evidence(pop, variant)
    i = pick_index(norm.logw, u, variant)
    return {k: v[torch.arange(pop.R), i] for k, v in norm.state.items()}, outer


# ---------------------------------------------------------------- Sequential: advance / finish, SMC
def _flat(pop: Population) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    R, n = pop.R, pop.n
    return pop.state["u"].reshape(R * n, -1), pop.state["m"].reshape(-1), pop.state["logp"].reshape(-1)


def _pad(u: torch.Tensor, L: int) -> torch.Tensor:
    return u if u.shape[1] >= L else torch.nn.functional.pad(u, (0, L - u.shape[1]), value=0.5)


def resume(pop: Population, prog: Program, gen: torch.Generator, k: int, stop: int | None) -> Exec:
    """Re-run every suspended particle from its trace: positions < m replayed, fresh draws after
    (refreshed, so resampled offspring never share their future), scores < k already counted."""
    u, m, _ = _flat(pop)
    u = refresh(u, positions(u.shape[1], m) < m[:, None], gen)
    return execute(prog, u.shape[0], u, gen=gen, skip=k, stop=stop)


def _with_run(pop: Population, ex: Exec, add_weight: bool) -> Population:
    R, n = pop.R, pop.n
    inc = ex.logw.reshape(R, n)
    st = dict(pop.state, u=ex.u.reshape(R, n, -1), m=ex.m.reshape(R, n), logp=pop.state["logp"] + inc)
    return Population(st, pop.logw + inc if add_weight else pop.logw)


def advance(pop: Population, prog: Program, gen: torch.Generator, k: int, variant: str = "correct") -> tuple[Population, bool]:
    """Run every particle from its k-th to its (k+1)-th Score, multiplying the incremental score
    into its weight (spec §3 Sequential ``advance``). Returns (population, program finished)."""
    ex = resume(pop, prog, gen, k, k + 1)
    out = _with_run(pop, ex, variant != "smc-forget-weights")
    if ex.done:
        out.state["value"] = ex.value.reshape(pop.R, pop.n)
    return out, ex.done


def finish(pop: Population, prog: Program, gen: torch.Generator, k: int, variant: str = "correct") -> Population:
    """Run every particle to the end (spec §3 ``finish``); ``state['value']`` holds the results."""
    ex = resume(pop, prog, gen, k, None)
    out = _with_run(pop, ex, variant != "smc-forget-weights")
    out.state["value"] = ex.value.reshape(pop.R, pop.n)
    return out


def empty_runs(R: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """R Weighted programs not yet started: empty traces, weight 1."""
    return {"u": torch.zeros(R, 1, dtype=F64), "m": torch.zeros(R, dtype=torch.long),
            "logp": torch.zeros(R, dtype=F64)}, torch.zeros(R, dtype=F64)


def smc(prog: Program, steps: int, R: int, n: int, gen: torch.Generator, *, scheme: str = "multinomial",
        moves: int = 0, variant: str = "correct") -> Population:
    """SMC(n, steps) = finish((advance then resample)^steps (spawn(n) then program)) (spec §3);
    with ``moves`` > 0 it is resample-move SMC: ``moves`` trace-MH steps on every particle's
    suspended program after each resample. The evidence estimate is the final total mass."""
    state, logw = empty_runs(R)
    pop = spawn(state, logw, n, variant)
    k = 0
    for k in range(steps):
        pop, done = advance(pop, prog, gen, k, variant)
        if done:
            return pop
        pop = resample(pop, gen, scheme, variant)
        for _ in range(moves):
            pop = mh_move(pop, prog, gen, k + 1, variant)
    return finish(pop, prog, gen, steps, variant)


# ---------------------------------------------------------------- Traced: trace MH (spec §3, C3)
@dataclass
class Chain:
    u: torch.Tensor      # (B, L) uniforms; positions < m are the trace
    m: torch.Tensor      # (B,) trace length
    logp: torch.Tensor   # (B,) log density w.r.t. the uniform base = Σ log scores
    value: torch.Tensor | None


def mh_log_acceptance(logp: torch.Tensor, m: torch.Tensor, logp_new: torch.Tensor, m_new: torch.Tensor,
                      variant: str = "correct") -> torch.Tensor:
    """log of min(1, p' m / (p m')) unclipped: the m/m' factor is the ratio of the reverse and
    forward probabilities of choosing the re-drawn site (spec §3 Traced)."""
    if variant == "mh-always-accept":
        return torch.zeros_like(logp)
    r = logp_new - logp
    if variant != "mh-no-hastings":
        r = r + m.to(F64).log() - m_new.to(F64).log()
    return r


def propose(u: torch.Tensor, m: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """Which positions a proposal keeps: the trace (< m) except the re-drawn site i."""
    pos = positions(u.shape[1], m)
    return (pos < m[:, None]) & (pos != i[:, None])


def mh_step(chain: Chain, prog: Program, gen: torch.Generator, *, stop: int | None = None,
            variant: str = "correct") -> tuple[Chain, torch.Tensor]:
    """One trace MH step on B chains: pick a site i uniformly among the m draws, re-draw u_i fresh,
    re-run (new draws fresh, unused draws dropped), accept with min(1, p' m / (p m'))."""
    B = chain.u.shape[0]
    i = (fresh_uniforms((B,), gen) * chain.m).long()
    u_prop = refresh(chain.u, propose(chain.u, chain.m, i), gen)
    ex = execute(prog, B, u_prop, gen=gen, stop=stop)
    log_a = mh_log_acceptance(chain.logp, chain.m, ex.logw, ex.m, variant)
    acc = (fresh_uniforms((B,), gen).log() < log_a) & (chain.m > 0)  # a trace with no draws cannot move
    L = max(ex.u.shape[1], chain.u.shape[1])
    u = torch.where(acc[:, None], _pad(ex.u, L), _pad(chain.u, L))
    value = None if ex.value is None else torch.where(acc.reshape(-1, *([1] * (ex.value.dim() - 1))), ex.value, chain.value)
    return Chain(u, torch.where(acc, ex.m, chain.m), torch.where(acc, ex.logw, chain.logp), value), acc


def mh_move(pop: Population, prog: Program, gen: torch.Generator, k: int, variant: str = "correct") -> Population:
    """One MH step on the trace of every particle of a population, its program suspended after
    k scores (the target is its partial posterior); the particle weights are unchanged."""
    u, m, logp = _flat(pop)
    ch, _ = mh_step(Chain(u, m, logp, None), prog, gen, stop=k, variant=variant)
    R, n = pop.R, pop.n
    return Population(dict(pop.state, u=ch.u.reshape(R, n, -1), m=ch.m.reshape(R, n), logp=ch.logp.reshape(R, n)),
                      pop.logw)


def prior_chains(prog: Program, B: int, gen: torch.Generator) -> Chain:
    """B chains started at independent runs of the program (the Weighted sampler)."""
    ex = execute(prog, B, gen=gen)
    return Chain(ex.u, ex.m, ex.logw, ex.value)


def mh(prog: Program, B: int, steps: int, gen: torch.Generator, variant: str = "correct") -> tuple[Chain, float]:
    """B independent trace-MH chains from the prior, ``steps`` steps each: (final states, acceptance rate)."""
    ch = prior_chains(prog, B, gen)
    acc = 0.0
    for _ in range(steps):
        ch, a = mh_step(ch, prog, gen, variant=variant)
        acc += float(a.double().mean())
    return ch, acc / max(steps, 1)


# ---------------------------------------------------------------- PMMH
def pmmh_program(prior: torch.Tensor, model_given: Callable[[torch.Tensor], Program], steps: int, n: int, gen: torch.Generator,
                 scheme: str = "multinomial", variant: str = "correct") -> Program:
    """PMMH's outer program (spec §3): θ ~ prior; run SMC(n) on the model given θ and push its
    evidence out as Score(Ẑ) (push_evidence); return θ. Trace MH on it is PMMH: the trace holds
    only θ, the inner SMC's randomness is the base sampler's, and a state keeps its Ẑ."""
    def prog(B: int):
        theta = yield Sample(Categorical(prior))
        inner = model_given(theta.repeat_interleave(n))
        pop = smc(inner, steps, B, n, gen, scheme=scheme, variant=variant)
        _, outer = push_evidence(pop, variant)
        yield Score(outer)
        return theta

    return prog


__all__ = ["Variant", "VARIANTS", "Population", "spawn", "ancestors_multinomial", "ancestors_systematic",
           "apply_ancestors", "resample", "push_evidence", "pick_index", "collapse", "advance", "finish", "smc",
           "Chain", "mh_log_acceptance", "propose", "mh_step", "mh_move", "mh", "prior_chains", "pmmh_program"]
