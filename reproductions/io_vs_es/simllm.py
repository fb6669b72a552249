"""The spec's §6 simulated LLM: a Bayesian program-induction model (a STAND-IN for a real LLM, not evidence
about real LLMs).

Hidden task function h = (op in 6, offset in 1..5, direction in +-1) maps a string x of L symbols over an
alphabet of V to a string h(x). The model answers a query with the MAP h under
    log prior(h) + beta_instr * (# instruction hint tokens agreeing with h)
                 + sum_exemplars [h(x_j) != y_j] * log(eps_ex) + beta_trace * (# trace hints agreeing with h)
and flips a response to a random string with probability `noise` (spec §6: 5 %). Its "response" carries a fake
reasoning trace: the three parameters it inferred. Every call is counted (queries).
"""
from __future__ import annotations

import torch

N_OP, N_OFF, N_DIR = 6, 5, 2
N_H = N_OP * N_OFF * N_DIR            # 60 hypotheses
N_HINT = N_OP + N_OFF + N_DIR         # 13 hint tokens: op=0..5 | offset=1..5 | dir=+,-


def hyp_params() -> torch.Tensor:
    """[N_H, 3] (op, offset index, dir index) of each hypothesis index h = op*10 + off*2 + dir."""
    op, off, d = torch.meshgrid(torch.arange(N_OP), torch.arange(N_OFF), torch.arange(N_DIR), indexing="ij")
    return torch.stack([op.flatten(), off.flatten(), d.flatten()], 1)


def hint_tokens(params: torch.Tensor) -> torch.Tensor:
    """The 3 hint-token ids naming parameters `params` [..., 3] (used for traces and proposals)."""
    return torch.stack([params[..., 0], N_OP + params[..., 1], N_OP + N_OFF + params[..., 2]], -1)


def hint_matrix(n_filler: int) -> torch.Tensor:
    """[N_HINT + n_filler, N_H]: 1 where token t states a parameter value that h has (fillers: 0)."""
    tok = hint_tokens(hyp_params())                               # [N_H, 3]
    m = torch.zeros(N_HINT + n_filler, N_H)
    m[tok, torch.arange(N_H)[:, None].expand(-1, 3)] = 1.0
    return m


def output_table(V: int, L: int) -> torch.Tensor:
    """[N_H, V**L] integer code of h(x) for every hypothesis and every input string (string transforms)."""
    n = V ** L
    idx = torch.arange(n)
    x = torch.stack([(idx // V ** (L - 1 - i)) % V for i in range(L)], 1)       # [n, L]
    pos = torch.arange(L)
    outs = []
    for p in hyp_params().tolist():
        op, off, d = p
        s = (off + 1) * (1 if d == 0 else -1)
        if op == 0:   y = x + s                                     # Caesar shift
        elif op == 1: y = x.flip(1) + s                             # reverse, then shift
        elif op == 2: y = x[:, (pos + s) % L]                        # rotate positions
        elif op == 3: y = 3 * x + s                                 # affine map of each symbol
        elif op == 4: y = x + s * (pos + 1)                         # position-dependent shift
        else:         y = x + torch.roll(x, 1, 1) + s               # add the previous symbol, then shift
        y = y % V
        outs.append((y * (V ** (L - 1 - pos))).sum(1))
    return torch.stack(outs)


class SimLLM:
    """Temperature-0 MAP responder; `queries` counts every call (one per query string)."""

    def __init__(self, V: int, L: int, n_filler: int, beta_instr: float, beta_trace: float, eps_ex: float,
                 noise: float, prior_std: float, model_seed: int, device: torch.device, temp: float = 1.0):
        g = torch.Generator().manual_seed(model_seed)
        self.V, self.L, self.device = V, L, device
        self.out = output_table(V, L).to(device)                   # [H, N]
        self.hint = hint_matrix(n_filler).to(device)               # [T_vocab, H]
        self.params = hyp_params().to(device)
        # the model's fixed preconceptions (same for every task) + a fixed tie-break
        self.prior = (prior_std * torch.randn(N_H, generator=g) + 1e-4 * torch.rand(N_H, generator=g)).to(device)
        self.beta_instr, self.beta_trace = beta_instr, beta_trace
        self.log_eps = float(torch.log(torch.tensor(eps_ex)))
        self.noise = noise
        self.temp = temp
        self.queries = 0
        self.opt_queries = 0

    def posterior(self, instr: torch.Tensor, ex_x: torch.Tensor | None, ex_y: torch.Tensor | None,
                  ex_trace: torch.Tensor | None) -> torch.Tensor:
        """Unnormalised log posterior [B, H]; instr [T]; ex_x/ex_y [B, k]; ex_trace [B, k, 3] or None."""
        lp = self.prior + self.beta_instr * self.hint[instr].sum(0)               # [H]
        lp = lp[None]
        if ex_x is not None and ex_x.shape[-1] > 0:
            miss = self.out[:, ex_x] != ex_y[None]                                 # [H, B, k]
            lp = lp + self.log_eps * miss.sum(-1).T.float()                        # [B, H]
            if ex_trace is not None:
                lp = lp + self.beta_trace * self.hint[ex_trace].sum((1, 2))        # [B, H]
        return lp

    def respond(self, instr, ex_x, ex_y, ex_trace, xs: torch.Tensor, g: torch.Generator):
        """Answers and traces for queries xs [Nq]; exemplars either shared ([1, k]) or per query ([Nq, k])."""
        self.queries += int(xs.numel())
        lp = self.posterior(instr, ex_x, ex_y, ex_trace)                          # [B, H]
        if self.temp == 0:
            h = lp.argmax(-1)
            h = h.expand(xs.numel()) if h.numel() == 1 else h
        else:  # per-query reasoning variability: h ~ softmax(lp / temp) (deviation from pure MAP, README)
            lp = lp.expand(xs.numel(), -1) if lp.shape[0] == 1 else lp
            h = torch.multinomial(torch.softmax(lp / self.temp, -1), 1, generator=g)[:, 0]
        pred = self.out[h, xs]
        flip = torch.rand(xs.numel(), generator=g, device=self.device) < self.noise
        junk = torch.randint(0, self.out.shape[1], (xs.numel(),), generator=g, device=self.device)
        pred = torch.where(flip, junk, pred)
        return pred, hint_tokens(self.params[h])                                   # [Nq], [Nq, 3]
