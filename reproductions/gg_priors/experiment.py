"""The measurement protocol of one run (spec §6): GG sampler / estimator / RF8 / DeepShape mechanics;
one task's model trained from the standard vs GG initialisations; BackSlash (GG and default init);
DeepShape + fine-tune; RF8 against FP8 E4M3 / E5M2 / INT8; optionally a tiny char GPT (default vs GG
init). The task is the digits MLP (smoke, small: :class:`DigitsTask`) or GPT-2 on a text corpus (full:
:class:`lm_task.LMTask`); both offer ``build`` / ``train`` / ``scores`` / ``accuracy``."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.context import RunContext
from suite.data import digits
from suite.models import MLP, Tokenizer, TransformerLM
from suite.spec import DatasetRef, curve_metrics
from suite.train import TrainConfig, TrainResult, TrainState, fit

from . import codecs as K
from . import gg
from .method import backslash_step_, deepshape_, rank_violations

FORMATS = ("rf8", "fp8_e4m3", "fp8_e5m2", "int8")
BASELINE_INITS = ("default", "he", "xavier")  # the standard initialisations of spec §4


def nu_tag(nu: float) -> str:
    return f"gg{nu:g}"


# --------------------------------------------------------------------------- mechanics (§6 smoke)

def sampler_checks(cfg: Any, ctx: RunContext) -> dict[str, float]:
    """GG sampler: variance within 3 % of xi / fan and shape estimate within 0.05, for nu in 0.5/1/2;
    the estimator on Laplace (nu=1) and Gaussian (nu=2) samples."""
    g = ctx.generator(101)
    fan, xi = 64, 2.0
    var_err, shape_err = 0.0, 0.0
    for nu in (0.5, 1.0, 2.0):
        x = gg.sample((cfg.n_draws,), nu, gg.beta_for_std(math.sqrt(xi / fan), nu), g)
        var_err = max(var_err, abs(float(x.double().var()) / (xi / fan) - 1))
        shape_err = max(shape_err, abs(gg.estimate(x)[1] - nu))
    lap = torch.distributions.Laplace(0.0, 1.0).sample((cfg.n_draws,))
    gau = torch.randn(cfg.n_draws, generator=g)
    est_err = max(abs(gg.estimate(lap)[1] - 1.0), abs(gg.estimate(gau)[1] - 2.0))
    return {"gg_sample_var_rel_err": var_err, "gg_sample_shape_err": shape_err, "shape_est_err": est_err}


def rf8_checks(variant: str) -> dict[str, float]:
    """RF8: <= 2 signed binary digits; exact on 2^a +- 2^b (a - b <= 4); max relative error over a
    log-uniform sweep; encode/decode equals the RF8 value inside the exponent range."""
    floor = variant == "rf8-floor"
    err_sweep, w = K.rel_error_bound_sweep()
    if floor:
        err_sweep = float(((K.rf8_value(w, floor=True) - w).abs() / w.abs()).max())
    v = K.exact_two_term_values()
    exact = float((K.rf8_value(v, floor=floor) - v).abs().max())
    x = torch.exp2(torch.linspace(-14, 0, 50_001)) * torch.sign(torch.randn(50_001))
    code, emax = K.rf8_encode(x)
    dec = K.rf8_decode(code, emax)
    inrange = ((code.to(torch.int32) >> 3) & 15) != K.RF8_EXP_LEVELS
    return {"rf8_max_rel_err": err_sweep, "rf8_exact_two_term_err": exact,
            "rf8_max_signed_digits": float(K.signed_digits(dec).max()),
            "rf8_codec_mismatch": float((dec[inrange] != K.rf8_value(x[inrange].float())).sum())}


def deepshape_checks(model: nn.Module, cfg: Any, variant: str) -> dict[str, float]:
    m = copy.deepcopy(model)
    before = K.all_params(m).clone()
    info = deepshape_(m, cfg.ds_shape_scale, cfg.ds_std_scale, cfg.ds_adj_minnum, cfg.ds_step_log2,
                      variant="unsorted" if variant == "deepshape-unsorted" else "paper")
    after = K.all_params(m)
    step = 2.0 ** -cfg.ds_step_log2
    central = ((before / step).round() - round(info["mu"] / step)).abs() <= info["qmax"]
    return {"deepshape_rank_violations": float(rank_violations(before, after)),
            "deepshape_nu_before": info["nu"], "deepshape_nu_after": gg.estimate(after[central])[1],
            "deepshape_entropy_before": K.entropy_bits(before, cfg.rate_step),
            "deepshape_entropy_after": K.entropy_bits(after, cfg.rate_step),
            "deepshape_central_frac": info["central_frac"]}


# --------------------------------------------------------------------------- digits MLP

def mlp(cfg: Any) -> nn.Module:
    return MLP(64, tuple(cfg.hidden), 10)


class DigitsTask:
    """The digits MLP of spec §6 (seeded 75/25 split of scikit-learn's digits; accuracy on the test part)."""

    def __init__(self, cfg: Any, ctx: RunContext) -> None:
        splits = digits.load(seed=0)
        self.cfg, self.ctx, self.ref = cfg, ctx, splits["train"].ref
        self.data = (splits["train"].x.flatten(1), splits["train"].y)
        self.test = (splits["test"].x.flatten(1), splits["test"].y)

    def build(self) -> nn.Module:
        return mlp(self.cfg)

    def train(self, model: nn.Module, name: str, epochs: int, lr: float, backslash: float = 0.0,
              bs_variant: str = "paper") -> TrainResult:
        return train_mlp(model, self.cfg, self.data, self.ctx, name, epochs, lr, backslash, bs_variant)

    def scores(self, model: nn.Module) -> dict[str, float]:
        """The model's held-out scores: ``acc`` (% of test digits)."""
        return {"acc": self.accuracy(model)}

    def accuracy(self, model: nn.Module) -> float:
        return acc_pct(model, *self.test)


def make_task(cfg: Any, ctx: RunContext) -> Any:
    if cfg.task == "gpt2-text":
        from .lm_task import LMTask
        return LMTask(cfg, ctx)
    return DigitsTask(cfg, ctx)


@torch.no_grad()
def acc_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    dev = next(model.parameters()).device  # the split stays on the host; the model may be on a GPU
    return 100.0 * float((model(x.to(dev)).argmax(-1).cpu() == y.cpu()).float().mean())


def train_mlp(model: nn.Module, cfg: Any, data: tuple[torch.Tensor, torch.Tensor], ctx: RunContext, name: str,
              epochs: int, lr: float, backslash: float = 0.0, bs_variant: str = "paper") -> TrainResult:
    tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, optimizer="adam", log_every=1)
    def hook(st: TrainState) -> None:  # after every optimiser step (BackSlash, spec §3)
        backslash_step_(st.model, backslash, cfg.bs_c, bs_variant)
    return fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), data, tc, ctx=ctx, name=name,
               on_step=hook if backslash > 0 else None)


def steps_to(res: TrainResult, target: float, window: int = 10) -> float:
    """First step whose running mean (``window`` steps) train loss is <= target (total steps if never)."""
    losses = torch.tensor([h["loss"] for h in res.history])
    if len(losses) < window:
        return float(res.step)
    run = losses.unfold(0, window, 1).mean(1)
    hit = torch.nonzero(run <= target).flatten()
    return float(hit[0] + window) if hit.numel() else float(res.step)


def rate(model: nn.Module, cfg: Any) -> dict[str, float]:
    x = K.all_params(model)
    return {"bits": K.entropy_bits(x, cfg.rate_step), "eg_bits": K.exp_golomb_bits(x, cfg.rate_step),
            "zero_frac": K.zero_fraction(x, cfg.rate_step)}


def format_accs(model: nn.Module, task: Any, prefix: str, variant: str = "paper") -> dict[str, float]:
    out = {f"acc_{prefix}_fp32": task.accuracy(model)}
    for fmt in FORMATS:
        use = "rf8-unsigned" if fmt == "rf8" and variant == "rf8-unsigned" else fmt
        out[f"acc_{prefix}_{fmt}"] = task.accuracy(K.quantize_weights_(copy.deepcopy(model), use))
    # the strongest 8-bit baseline the paper compares RF8 with: FP8 E4M3 or symmetric per-tensor INT8
    out[f"acc_{prefix}_best_fp8_int8"] = max(out[f"acc_{prefix}_fp8_e4m3"], out[f"acc_{prefix}_int8"])
    return out


@torch.no_grad()
def baseline_init_(net: nn.Module, name: str, xi: float, generator: torch.Generator) -> nn.Module:
    """The standard initialisations GG init is compared with (spec §4): ``he`` = Kaiming normal
    (fan_in, ReLU gain), ``xavier`` = Glorot normal; norm weights 1 and biases 0 as in GG init; fans
    read in the (out, in) layout (GPT-2's Conv1D weights transposed). ``default`` keeps the model's own
    init (PyTorch's nn.Linear: Kaiming-uniform with a = sqrt(5), a smaller variance; GPT-2: N(0, 0.02))."""
    norms, views = gg.norm_weights(net), gg.out_in_views(net)
    for p in net.parameters():
        if p.dim() >= 2:
            if name == "he":
                nn.init.kaiming_normal_(views[id(p)], mode="fan_in", nonlinearity="relu", generator=generator)
            elif name == "xavier":
                nn.init.xavier_normal_(views[id(p)], generator=generator)
        elif name in ("he", "xavier"):
            p.fill_(1.0) if id(p) in norms else p.zero_()
    return net


@torch.no_grad()
def uniform_quantized(model: nn.Module, step: float) -> nn.Module:
    """Copy of ``model`` with every parameter rounded to the grid ``step`` (what the rate measures)."""
    q = copy.deepcopy(model)
    for p in q.parameters():
        p.copy_(torch.round(p / step) * step)
    return q


def gauss_vs_gg_nll(x: torch.Tensor) -> tuple[float, float]:
    """Mean negative log-likelihood of ``x`` under its moment-matched GG and Gaussian fits (C1)."""
    x = x.double()
    mu, nu, beta = gg.estimate(x)
    nll_gg = -float(gg.log_density(x, mu, nu, beta).mean())
    sd = float(x.std())
    nll_g = -float(gg.log_density(x, float(x.mean()), 2.0, gg.beta_for_std(sd, 2.0)).mean())
    return nll_gg, nll_g


def init_model(task: Any, cfg: Any, ctx: RunContext, name: str, nu: float | None) -> nn.Module:
    """A fresh model of ``task`` with the initialisation ``name`` (a standard one, or GG with shape
    ``nu``): the same weights every time it is called with the same arguments."""
    torch.manual_seed(ctx.seed)
    net = task.build()
    if nu is not None:
        # variant "gg-no-fan" (TEST-ONLY teeth): Var = xi instead of xi / fan
        gg.gg_init_(net, nu, cfg.xi, ctx.generator(200), cfg.fan_mode, cfg.gpt_init_embeddings,
                    fan_scale=cfg.variant != "gg-no-fan")
    else:
        baseline_init_(net, name, cfg.xi, ctx.generator(202))
    return net


def measure(cfg: Any, ctx: RunContext) -> tuple[dict[str, float], DatasetRef]:
    m: dict[str, float] = {}
    m.update(sampler_checks(cfg, ctx))
    m.update(rf8_checks(cfg.variant))
    task = make_task(cfg, ctx)
    prefix = "mlp" if cfg.task == "digits-mlp" else "lm"

    # ---- C2: standard (the model's default, He normal, Xavier normal) vs GG initialisation (same data
    # order, same recipe)
    models: dict[str, nn.Module] = {}
    inits = {b: None for b in BASELINE_INITS} | {nu_tag(nu): nu for nu in cfg.nus}
    for name, nu in inits.items():
        net = init_model(task, cfg, ctx, name, nu)
        res = task.train(net, f"{prefix}-{name}", cfg.epochs, cfg.lr)
        models[name] = net
        m.update({f"{k}_{name}": v for k, v in task.scores(net).items()})  # acc_* (+ val_loss_* for the LM)
        m[f"final_loss_{name}"] = res.final_loss
        m[f"steps_to_target_{name}"] = steps_to(res, cfg.target_loss)
        m[f"bits_{name}"] = rate(net, cfg)["bits"]
        m[f"nu_trained_{name}"] = gg.estimate(torch.cat([p.detach().flatten() for p in net.parameters()
                                                          if p.dim() >= 2]))[1]
    best_gg = max(m[f"acc_{nu_tag(nu)}"] for nu in cfg.nus if nu < 2)
    m["acc_gg_best_minus_default"] = best_gg - m["acc_default"]
    m["acc_best_standard_init"] = max(m[f"acc_{b}"] for b in BASELINE_INITS)
    m["acc_gg_best_minus_best_standard"] = best_gg - m["acc_best_standard_init"]
    m["steps_gg_best_minus_best_standard"] = (min(m[f"steps_to_target_{nu_tag(nu)}"] for nu in cfg.nus if nu < 2)
                                              - min(m[f"steps_to_target_{b}"] for b in BASELINE_INITS))
    w = torch.cat([p.detach().flatten() for p in models["default"].parameters() if p.dim() >= 2])
    nll_gg, nll_g = gauss_vs_gg_nll(w)
    m["c1_gg_minus_gauss_nll"] = nll_gg - nll_g

    # ---- mechanics of DeepShape on a trained model
    base = nu_tag(cfg.pipeline_nu)
    m.update(deepshape_checks(models[base], cfg, cfg.variant))

    # ---- BackSlash (+ normal fine-tune) for the GG- and default-initialised models: from the trained
    # model (bs_from="trained") or from the same initial weights (bs_from="init", the GPT-2 recipe)
    for src in (base, "default"):
        net = copy.deepcopy(models[src]) if cfg.bs_from == "trained" else init_model(task, cfg, ctx, src, inits[src])
        task.train(net, f"bs-{src}", cfg.bs_epochs, cfg.lr, backslash=cfg.bs_lambda, bs_variant=cfg.variant)
        task.train(net, f"bs-ft-{src}", cfg.ft_epochs, cfg.ft_lr)
        r = rate(net, cfg)
        tag = "gg" if src == base else "default"
        m[f"acc_backslash_{tag}"] = task.accuracy(net)
        m[f"bits_backslash_{tag}"] = r["bits"]
        m[f"eg_bits_backslash_{tag}"] = r["eg_bits"]
        m[f"zero_frac_backslash_{tag}"] = r["zero_frac"]
        if tag == "gg":
            models["backslash"] = net
    m["backslash_bits_ratio"] = m["bits_backslash_gg"] / m[f"bits_{base}"]
    m["acc_plain_gg"] = m[f"acc_{base}"]
    m["bits_plain_gg"] = m[f"bits_{base}"]

    # ---- C3: DeepShape + short fine-tune on the plain GG model
    net = copy.deepcopy(models[base])
    shape_s, std_s = cfg.ds_shape_scale, cfg.ds_std_scale
    if cfg.variant == "deepshape-inverted":  # TEST-ONLY teeth: target nu / 0.8, beta / 0.6 (wider)
        shape_s, std_s = 1.0 / shape_s, 1.0 / std_s
    deepshape_(net, shape_s, std_s, cfg.ds_adj_minnum, cfg.ds_step_log2,
               "unsorted" if cfg.variant == "deepshape-unsorted" else "paper")
    m["acc_deepshape_no_ft"] = task.accuracy(net)
    m["bits_deepshape_no_ft"] = rate(net, cfg)["bits"]
    task.train(net, "deepshape-ft", cfg.ft_epochs, cfg.ft_lr)
    m["acc_deepshape"] = task.accuracy(net)
    m["bits_deepshape"] = rate(net, cfg)["bits"]
    models["deepshape"] = net

    # ---- C4: RF8 vs 8-bit formats on the final models
    for name in ("backslash", "deepshape", base):
        tag = "plain_gg" if name == base else name
        m.update(format_accs(models[name], task, tag, cfg.variant))
    # accuracy vs coding rate curves (x = uniform step exponent) for the leaderboard plot
    steps = cfg.rate_steps_log2
    for name in ("default", base, "backslash", "deepshape"):
        tag = {"default": "default", base: "plain_gg"}.get(name, name)
        m.update(curve_metrics(f"bits_{tag}", "step_log2", steps,
                               [K.entropy_bits(K.all_params(models[name]), 2.0 ** -s) for s in steps]))
        m.update(curve_metrics(f"acc_{tag}", "step_log2", steps,
                               [task.accuracy(uniform_quantized(models[name], 2.0 ** -s)) for s in steps]))
    if cfg.gpt_steps > 0:
        m.update(gpt_runs(cfg, ctx))
    return m, task.ref


# --------------------------------------------------------------------------- tiny char GPT

def arithmetic_corpus(n: int, gen: torch.Generator) -> str:
    """``a+b=c;`` with a, b < 50: a procedural corpus with a vocabulary of 13 symbols."""
    a = torch.randint(0, 50, (n,), generator=gen).tolist()
    b = torch.randint(0, 50, (n,), generator=gen).tolist()
    return "".join(f"{x}+{y}={x + y};" for x, y in zip(a, b))


def gpt_runs(cfg: Any, ctx: RunContext) -> dict[str, float]:
    """Tiny GPT (2 layers, d=64): default N(0, 0.02) init vs GG init; final / held-out loss and steps
    to the target loss."""
    text = arithmetic_corpus(20000, ctx.generator(300))
    tok = Tokenizer.fit([text])
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))
    tr, va = ids[:split], ids[split:]
    T = cfg.gpt_context + 1
    val = va[: (len(va) // T) * T].view(-1, T)[:256]
    base_seed = ctx.seed * 1_000_003 + 400

    def batch(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(base_seed + step)
        start = torch.randint(0, len(tr) - T, (cfg.batch_size,), generator=g)
        return tr[start[:, None] + torch.arange(T)]

    out: dict[str, float] = {}
    for name, nu in [("default", None), *[(nu_tag(nu), nu) for nu in cfg.nus]]:
        torch.manual_seed(ctx.seed)
        net = TransformerLM(tok.vocab_size, max_len=T, dim=64, depth=2, heads=4)
        if nu is not None:
            gg.gg_init_(net, nu, cfg.gpt_xi, ctx.generator(201), cfg.fan_mode, cfg.gpt_init_embeddings)
        tc = TrainConfig(steps=cfg.gpt_steps, batch_size=cfg.batch_size, lr=cfg.gpt_lr, optimizer="adamw",
                         log_every=1, schedule="cosine")
        res = fit(net, lambda mdl, b: mdl.loss(b), batch, tc, ctx=ctx, name=f"gpt-{name}")
        net.eval()
        with torch.no_grad():
            out[f"gpt_val_loss_{name}"] = float(net.loss(val.to(ctx.device)))
        out[f"gpt_steps_to_target_{name}"] = steps_to(res, cfg.gpt_target_loss)
    return out
