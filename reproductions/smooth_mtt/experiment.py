"""One run: vanilla and smooth experts (paired seeds), then the arms at equal evaluation budget (same IPC,
same evaluation nets/epochs): random real subset, MTT (vanilla experts, plain matching), AST (smooth experts,
representative init, perturbation, balanced loss, intermediate matching) and optionally AST on vanilla experts;
plus mechanism checks on constructed inputs (spec §6 smoke)."""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.context import RunContext
from suite.io import atomic_torch_save
from suite.spec import curve_metrics

from . import method as M
from .data import Data

ARMS = ("random", "mtt", "ast", "ast_vanilla")


def make_net_factory(cfg: Any, data: Data, seed_base: int):
    counter = [0]

    def make() -> M.ConvNetIN:
        torch.manual_seed(seed_base + counter[0])
        counter[0] += 1
        return M.ConvNetIN(data.channels, data.num_classes, cfg.width, cfg.depth, data.image_size)

    return make


# ------------------------------------------------------------------ experts

def train_experts(cfg: Any, data: Data, ctx: RunContext, smooth: bool, variant: str, use_gp: bool = True
                  ) -> tuple[list[torch.Tensor], dict[str, float]]:
    """``n_experts`` trajectories; expert k of every kind shares its init, data order and augmentation draws."""
    spec = M.ExpertSpec(epochs=cfg.train_epochs, lr=cfg.lr_teacher, momentum=cfg.expert_momentum,
                        weight_decay=cfg.expert_wd, batch=cfg.expert_batch, smooth=smooth, use_gp=use_gp,
                        gp_weight=cfg.gp_weight, gp_norm=cfg.gp_norm, lr_decay=cfg.expert_lr_decay,
                        dsa=cfg.expert_dsa)
    dev = torch.device(ctx.device)
    trajs, accs, t0 = [], [], time.perf_counter()
    kind = ("smooth" if use_gp else "clip_only") if smooth else "vanilla"
    for k in range(cfg.n_experts):
        torch.manual_seed(ctx.seed * 7919 + 101 * k + 1)
        net = M.ConvNetIN(data.channels, data.num_classes, cfg.width, cfg.depth, data.image_size)
        path = ctx.run_dir / "experts" / f"{kind}-{variant}-{k}.pt"
        if cfg.cache_experts and path.exists():   # a preempted full-scale job keeps its finished experts
            traj = torch.load(path)
            M.load_flat(net, traj[-1].to(dev)).to(dev)
        else:
            traj = M.train_expert(net, data.x_train, data.y_train, spec, ctx.generator(2000 + k),
                                  ctx.generator(3000 + k), dev, variant)
            if cfg.cache_experts:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(traj, path)
        trajs.append(traj)
        accs.append(M.accuracy(net.to(dev), data.x_test, data.y_test))
        ctx.log("expert %s%s %d/%d test acc %.4f", "smooth" if smooth else "vanilla", "" if use_gp else " (no GP)",
                k + 1, cfg.n_experts, accs[-1])
    secs = time.perf_counter() - t0
    steps = torch.stack([M.step_norms(t) for t in trajs])       # (experts, epochs)
    early = steps[:, :cfg.early_epochs]
    return trajs, {"seconds": secs, "test_acc": 100 * sum(accs) / len(accs),
                   "early_max_step": float(early.max(1).values.mean()),
                   "first_step": float(steps[:, 0].mean()),
                   "step_var": float(steps.var(1).mean()),
                   "mean_step": float(steps.mean())}


# ------------------------------------------------------------------ arms

def evaluate(cfg: Any, data: Data, images: torch.Tensor, labels: torch.Tensor, lr: float, ctx: RunContext,
             offset: int, n_nets: int) -> list[float]:
    dev = torch.device(ctx.device)
    make = make_net_factory(cfg, data, ctx.seed * 104729 + offset)
    gen = ctx.generator(50_000 + offset)
    return [100 * M.evaluate_synset(images, labels, lr, make, data.x_test, data.y_test, cfg.eval_epochs,
                                    cfg.eval_batch, cfg.eval_momentum, cfg.eval_wd, cfg.eval_dsa, gen, dev,
                                    momentum_decay=cfg.eval_momentum_decay)
            for _ in range(n_nets)]


def distill_spec(cfg: Any, ast: bool, variant: str) -> M.DistillSpec:
    return M.DistillSpec(
        iterations=cfg.iterations, syn_steps=cfg.syn_steps, expert_epochs=cfg.expert_epochs,
        max_start=cfg.max_start_epoch, lr_img=cfg.lr_img, lr_lr=cfg.lr_lr, lr_init=cfg.lr_init,
        inner_momentum=cfg.inner_momentum, batch_syn=cfg.batch_syn,
        perturb=ast and cfg.ast_perturb, balance=ast and cfg.ast_balance, middle=ast and cfg.ast_middle,
        perturb_alpha=cfg.perturb_alpha, dsa=cfg.distill_dsa,
        update_images=not (variant == "no-image-update" or (ast and variant == "ast-no-image-update")),
        sign=-1.0 if variant == "matching-sign-flipped" or (ast and variant == "ast-sign-flipped") else 1.0)


def run_arms(cfg: Any, data: Data, ctx: RunContext, variant: str) -> dict[str, float]:
    out: dict[str, float] = {}
    dev = torch.device(ctx.device)
    vanilla, vst = train_experts(cfg, data, ctx, smooth=False, variant=variant)
    smooth, sst = train_experts(cfg, data, ctx, smooth=True, variant=variant)
    for kind, st in (("vanilla", vst), ("smooth", sst)):
        for key, val in st.items():
            out[f"expert_{key}/{kind}"] = val
    out["smooth_step_ratio"] = sst["early_max_step"] / max(vst["early_max_step"], 1e-12)
    out["smooth_first_step_ratio"] = sst["first_step"] / max(vst["first_step"], 1e-12)
    if cfg.clip_only_experts:   # diagnostic: the clipping loss alone (no gradient penalty), not used for distillation
        _, cst = train_experts(cfg, data, ctx, smooth=True, variant=variant, use_gp=False)
        for key, val in cst.items():
            out[f"expert_{key}/clip_only"] = val
        out["clip_only_step_ratio"] = cst["early_max_step"] / max(vst["early_max_step"], 1e-12)
    net0 = M.ConvNetIN(data.channels, data.num_classes, cfg.width, cfg.depth, data.image_size)
    shapes, n_params = M.shapes_of(net0), sum(p.numel() for p in net0.parameters())
    out["n_params"] = float(n_params)
    eval_steps = cfg.eval_epochs + 1   # passes per evaluation net (evaluate_synset runs epochs 0..E)

    for ipc in cfg.ipcs:
        tag = f"ipc{ipc}"
        labels = torch.arange(data.num_classes, device=dev).repeat_interleave(ipc)
        per_epoch = -(-labels.numel() // cfg.eval_batch)
        # random real subset: also the MTT initialisation (pix_init real), so the MTT gain is the distillation's
        rnd_idx = M.random_indices(data.y_train, ipc, data.num_classes, ctx.generator(100 + ipc))
        rnd_imgs = data.x_train[rnd_idx]
        # representative initialisation (pix_init avg) from the final epoch of smooth expert 0
        if cfg.ast_init == "avg":
            expert = M.load_flat(M.ConvNetIN(data.channels, data.num_classes, cfg.width, cfg.depth,
                                             data.image_size), smooth[0][-1]).to(dev)
            with torch.no_grad():
                logits = torch.cat([expert(data.x_train[i:i + 4096]) for i in range(0, len(data.y_train), 4096)])
            t0 = time.perf_counter()
            rep_idx = M.representative_indices(logits, data.y_train, ipc, data.num_classes, ctx.generator(200 + ipc))
            init_s = time.perf_counter() - t0
            ast_imgs = data.x_train[rep_idx]
        else:
            ast_imgs, init_s = rnd_imgs, 0.0
        arms: dict[str, tuple[torch.Tensor, float, float, float, float]] = {}
        # (images, eval lr, expert seconds, distill seconds, iterations)
        arms["random"] = (rnd_imgs, cfg.lr_init, 0.0, 0.0, 0.0)
        plan = [("mtt", rnd_imgs, vanilla, False, vst), ("ast", ast_imgs, smooth, True, sst)]
        if cfg.ast_vanilla_arm:
            plan.append(("ast_vanilla", ast_imgs, vanilla, True, vst))
        for arm, init, trajs, ast, est in plan:
            spec = distill_spec(cfg, ast, variant)
            curve: dict[int, float] = {}
            curve_s = [0.0]   # evaluation time inside the distillation loop, not counted as distillation cost

            def on_iter(it: int, imgs: torch.Tensor, lr: torch.Tensor,
                        curve: dict[int, float] = curve, curve_s: list[float] = curve_s) -> None:
                if cfg.curve_every and ipc == cfg.ipcs[0] and it % cfg.curve_every == 0 and it < cfg.iterations:
                    t0 = time.perf_counter()
                    curve[it] = sum(evaluate(cfg, data, imgs, labels, float(lr), ctx, 900 + it,
                                             cfg.curve_nets)) / cfg.curve_nets
                    curve_s[0] += time.perf_counter() - t0

            # common random numbers: every arm draws the same experts order / start epochs / batches
            imgs, lr, st = M.distill(init.to(dev), labels, trajs, spec, shapes, cfg.depth,
                                     ctx.generator(300 + ipc), on_iter)
            arms[arm] = (imgs, float(lr), est["seconds"], st["seconds"] - curve_s[0] + (init_s if ast else 0.0),
                         float(cfg.iterations))
            out[f"match_loss_first/{arm}/{tag}"] = st["loss_first"]
            out[f"match_loss_last/{arm}/{tag}"] = st["loss_last"]
            out[f"syn_lr/{arm}/{tag}"] = float(lr)
            out[f"img_change/{arm}/{tag}"] = float((imgs - init.to(dev)).norm() / init.norm().clamp_min(1e-12))
            if curve:
                out.update(curve_metrics(f"acc_curve_{arm}", "iter", list(curve), list(curve.values())))
        for arm, (imgs, lr, e_s, d_s, iters) in arms.items():
            accs = evaluate(cfg, data, imgs, labels, lr, ctx, 10_000 + ipc, cfg.eval_nets)  # same eval nets per arm
            mean = sum(accs) / len(accs)
            std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
            out[f"acc/{arm}/{tag}"], out[f"acc_std/{arm}/{tag}"] = mean, std
            if ipc == cfg.ipcs[0]:
                out[f"acc/{arm}"], out[f"acc_std/{arm}"] = mean, std
                out[f"expert_s/{arm}"], out[f"distill_s/{arm}"] = e_s, d_s
                out[f"distill_iters/{arm}"] = iters
                out[f"eval_steps/{arm}"] = float(eval_steps * per_epoch)
                out[f"eval_nets/{arm}"] = float(cfg.eval_nets)
            if cfg.curve_every and ipc == cfg.ipcs[0] and arm != "random":
                out[f"acc_curve_{arm}@iter={cfg.iterations}"] = mean
    main = f"ipc{cfg.ipcs[0]}"
    out["gain_mtt"] = out[f"acc/mtt/{main}"] - out[f"acc/random/{main}"]
    out["gain_ast"] = out[f"acc/ast/{main}"] - out[f"acc/random/{main}"]
    out["ast_minus_mtt"] = out[f"acc/ast/{main}"] - out[f"acc/mtt/{main}"]
    if cfg.ast_vanilla_arm:
        out["smooth_gain_in_ast"] = out[f"acc/ast/{main}"] - out[f"acc/ast_vanilla/{main}"]
    return out


# ------------------------------------------------------------------ mechanism checks (spec §6 smoke)

def mechanism_metrics(cfg: Any, variant: str) -> dict[str, float]:
    g = torch.Generator().manual_seed(4321)
    out: dict[str, float] = {}
    torch.manual_seed(1234)
    net = M.ConvNetIN(1, 10, 8, 2, 8).double()
    shapes = M.shapes_of(net)
    flat = M.flat_params(net)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    # (1) the functional forward over the flat vector is the module's forward
    with torch.no_grad():
        out["functional_forward_err"] = float((M.functional_forward(flat, x, shapes, 2) - net(x)).abs().max())
    # (2) matching loss at rest: alpha_syn = 0 keeps theta_N = theta_0, so every ratio is exactly 1 (L = #terms)
    E, S, Mm = 6, 3, 2
    traj = flat.unsqueeze(0) + 0.1 * torch.randn(E, flat.numel(), generator=g, dtype=torch.float64).cumsum(0)
    imgs = torch.randn(10, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(10)
    errs = []
    for middle in (False, True):
        spec = M.DistillSpec(1, 4, Mm, S, 1.0, 1.0, 0.0, middle=middle, balance=True)
        for s in range(S):
            loss, _ = M.unroll(imgs, labels, torch.zeros((), dtype=torch.float64), traj[s], traj, s, spec, shapes, 2, g)
            errs.append(abs(float(loss.detach()) - (Mm if middle else 1)))
    out["match_rest_err"] = max(errs)
    # (3) balanced-loss factor at s in {0, S/2, S-1} against the closed form, for S in {10, 15, 20}
    errs = []
    for S_ in (10, 15, 20):
        h = S_ // 2
        want = {0: 1 / (math.log(h + 8) / math.log(5)), h: math.log(8) / math.log(5),
                S_ - 1: math.log(S_ - 1 - h + 8) / math.log(5)}
        errs += [abs(M.balance_factor(s, S_) - v) for s, v in want.items()]
    out["balance_factor_err"] = max(errs)
    # (4) perturbation: only 4-D tensors change, zeros stay zero, and the 4-D tensors do change
    f2 = flat.clone()
    f2[:5] = 0.0                                       # zeros inside the first conv weight
    pert = M.weight_perturb(f2, shapes, 1.0, g)
    bad, i = 0, 0
    for s in shapes:
        n = math.prod(s)
        a, b = f2[i:i + n], pert[i:i + n]
        if len(s) == 4:
            bad += int((b[a == 0] != 0).sum()) + int(torch.equal(a, b))
            # relative size: alpha * |D_ij| / ||D||_F < 1 for every entry
            bad += int(((b - a).abs() > a.abs() + 1e-15).sum())
        else:
            bad += int(not torch.equal(a, b))
        i += n
    out["perturb_violations"] = float(bad)
    # (5) loss-decay schedule 0.5, 0.55, ..., 0.95 (then 1)
    out["loss_decay_err"] = max(abs(v - (0.5 + 0.05 * e)) for e, v in enumerate(M.LOSS_DECAY)) + abs(len(M.LOSS_DECAY) - 10)
    # (6) gradients reach the synthetic images and alpha_syn through the N unrolled steps
    imgs_r = imgs.clone().requires_grad_(True)
    lr_r = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    spec = M.DistillSpec(1, 4, Mm, S, 1.0, 1.0, 0.01, middle=True, balance=True)
    loss, _ = M.unroll(imgs_r, labels, lr_r, traj[1], traj, 1, spec, shapes, 2, g)
    loss.backward()
    ok = bool(torch.isfinite(imgs_r.grad).all() and imgs_r.grad.abs().sum() > 0 and lr_r.grad is not None
              and torch.isfinite(lr_r.grad) and lr_r.grad.abs() > 0)
    out["grads_reach"] = float(ok)
    # (7) gradient penalty on a linear model: d(sum outputs)/dx = column sums of W, known in closed form
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double()
    xx = torch.randn(7, 3, 4, 4, generator=g, dtype=torch.float64)
    colsum = lin[1].weight.detach().sum(0).view(3, 4, 4)
    want_ch = 2.0 * ((colsum.norm(dim=0) - 1) ** 2).mean()
    want_im = 2.0 * ((colsum.norm() - 1) ** 2)
    out["gp_formula_err"] = max(abs(float(M.gradient_penalty(lin, xx, 2.0, "channel").detach()) - float(want_ch)),
                                abs(float(M.gradient_penalty(lin, xx, 2.0, "image").detach()) - float(want_im)))
    return out


def dry_build(cfg: Any, data: Data, ctx: RunContext) -> None:
    """--dry-run: build the full pipeline's pieces (net, GP, DSA, one 2-step unroll and its backward) on a few
    images, without training."""
    dev = torch.device(ctx.device)
    net = M.ConvNetIN(data.channels, data.num_classes, cfg.width, cfg.depth, data.image_size).to(dev)
    g = ctx.generator(1)
    x, y = data.x_train[:4], data.y_train[:4]
    loss = F.cross_entropy(net(M.dsa.augment(x, cfg.expert_dsa, g)), y) + M.gradient_penalty(net, x, cfg.gp_weight,
                                                                                            cfg.gp_norm)
    loss.backward()
    flat = M.flat_params(net)
    traj = torch.stack([flat + 0.01 * k for k in range(cfg.expert_epochs + 1)])
    spec = distill_spec(cfg, True, "correct")
    spec.syn_steps, spec.max_start = max(2, cfg.expert_epochs), 1
    imgs = x.clone().requires_grad_(True)
    lr = torch.tensor(cfg.lr_init, device=dev, requires_grad=True)
    loss, _ = M.unroll(imgs, y, lr, M.weight_perturb(flat, M.shapes_of(net), cfg.perturb_alpha, g), traj, 0, spec,
                       M.shapes_of(net), cfg.depth, g)
    loss.backward()
    ctx.log("dry run: %d parameters, %d train / %d test images, unroll loss %.4f", flat.numel(),
            len(data.y_train), len(data.y_test), float(loss.detach()))
