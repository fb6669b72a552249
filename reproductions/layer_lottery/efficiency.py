"""Cost of a network (C4, Table 4): multiply-accumulates counted on a real forward pass, the
analytic count of a CIFAR-style ResNet from its stage sizes, parameter memory, and measured
training-step latency ratios (interleaved timing, median of repeats)."""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import stage_of_blocks


def counted_macs(net: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of the conv and linear layers of one forward pass of a single input (hooks on the real
    modules; BN, ReLU, additions and pooling are not counted)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        total += out[0].numel() * k

    def lin_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else lin_hook)
             for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape, device=next(net.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    return int(total)


def analytic_macs(hw: int, in_ch: int, width: int, kept_per_stage: Sequence[int], num_classes: int,
                  projection: bool = False) -> int:
    """Closed-form MACs of a CIFAR ResNet (He et al. 2016 §4.2) with ``kept_per_stage[s]`` blocks in
    stage s (widths w, 2w, 4w; stride 2 at the first block of stages 2 and 3; 3x3 convs):
    stem hw^2*in*w*9; each block 2 convs of (hw_s^2 * c_s^2 * 9), the downsampling conv1 reading
    c_{s-1} channels at the new resolution; a 1x1 projection if ``projection``; head 4w*classes."""
    total = hw * hw * in_ch * width * 9
    c_prev, size = width, hw
    for s, n in enumerate(kept_per_stage):
        c = width * 2 ** s
        if s > 0:
            size = (size + 1) // 2
        for j in range(n):
            c_in = c_prev if j == 0 else c
            total += size * size * 9 * (c_in * c + c * c)
            if j == 0 and projection and (c_in != c or s > 0):
                total += size * size * c_in * c
        c_prev = c
    return total + c_prev * num_classes


def kept_per_stage(net: nn.Module, remove: Sequence[int]) -> list[int]:
    """Blocks per stage left after removing ``remove`` from ``net``."""
    stages = stage_of_blocks(net)
    counts = [0] * (max(stages) + 1)
    for i, s in enumerate(stages):
        if i not in set(remove):
            counts[s] += 1
    return counts


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def clock(device: torch.device) -> float:
    """Seconds for cost measurements: process CPU time on CPU (immune to other processes sharing
    the cores), synchronised wall time on CUDA (kernels are asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def train_step_times(nets: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, reps: int = 20,
                     warmup: int = 3) -> list[float]:
    """Median seconds (:func:`clock`) of one SGD training step (forward, backward, update) for each
    network, measured interleaved (round-robin) so that drifts hit all networks alike."""
    opts = [torch.optim.SGD(n.parameters(), lr=1e-3, momentum=0.9) for n in nets]
    states = [{k: v.clone() for k, v in n.state_dict().items()} for n in nets]
    times: list[list[float]] = [[] for _ in nets]
    for r in range(warmup + reps):
        for i, (n, o) in enumerate(zip(nets, opts)):
            n.train()
            t0 = clock(x.device)
            o.zero_grad(set_to_none=True)
            F.cross_entropy(n(x), y).backward()
            o.step()
            dt = clock(x.device) - t0
            if r >= warmup:
                times[i].append(dt)
    for n, st in zip(nets, states):  # timing must not change the networks
        n.load_state_dict(st)
    return [float(torch.tensor(t).median()) for t in times]
