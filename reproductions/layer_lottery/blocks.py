"""Residual-block surgery on a ``CifarResNet``: which blocks may go, building the shallower network
without them (§3: "removal BUILDS a new shallower network and copies the kept blocks' weights"), and
structural filter pruning of the blocks' inner convolutions (the C3 comparison, Table 3).

Generic in the sense that it only needs a model with a flat ``.blocks`` ``ModuleList`` of
``suite.models.resnet.BasicBlock``; nothing here scores blocks (see ``criteria.py``).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from suite.errors import ConfigError


def stage_of_blocks(net: nn.Module) -> list[int]:
    """Stage index of every block: a stage starts at block 0 and at every block that changes the
    shape (stride != 1 or channel change, i.e. a downsampling block)."""
    stages, s = [], -1
    for i, b in enumerate(net.blocks):
        c_in, c_out = b.conv1.in_channels, b.conv2.out_channels
        if i == 0 or b.stride != 1 or c_in != c_out:
            s += 1
        stages.append(s)
    return stages


def removable_blocks(net: nn.Module) -> list[int]:
    """Blocks that may be removed (§3, §6): identity-shaped blocks that are not the first block of
    their stage. The first block of each stage (downsampling / stem-adjacent) always stays."""
    stages = stage_of_blocks(net)
    return [i for i in range(len(stages)) if i > 0 and stages[i] == stages[i - 1]]


def check_removable(net: nn.Module, remove: Sequence[int]) -> None:
    ok = set(removable_blocks(net))
    bad = sorted(set(remove) - ok)
    if bad:
        raise ConfigError(f"blocks {bad} cannot be removed (downsampling / first of a stage); "
                          f"removable blocks are {sorted(ok)}")


def build_without(net: nn.Module, remove: Sequence[int], variant: str = "paper") -> nn.Module:
    """A new network without blocks ``remove``: y_i = y_{i-1} for a removed block i (§3).

    Stem, head and every kept block (weights AND BatchNorm running statistics) are copied from
    ``net`` in order; nothing is masked. ``variant="wrong-copy"`` (TEST-ONLY, teeth) copies the
    kept blocks' parameters shifted by one position among same-shaped blocks, the BN-misplacement
    bug of spec §7.
    """
    check_removable(net, remove)
    new = copy.deepcopy(net)
    drop = set(int(i) for i in remove)
    if variant == "mask-not-remove":  # TEST-ONLY teeth of C4: zero-mask instead of removing (§3 says no)
        new.blocks = nn.ModuleList([ZeroedBlock(b) if i in drop else b for i, b in enumerate(new.blocks)])
        return new
    kept = [b for i, b in enumerate(new.blocks) if i not in drop]
    if variant == "wrong-copy":
        kept = _shift_same_shape(kept)
    elif variant not in ("paper", "grasp-sign-flipped", "untrained-ticket"):
        raise ConfigError(f"variant={variant!r} unknown; use 'paper' (test-only: 'wrong-copy', "
                          f"'grasp-sign-flipped', 'mask-not-remove', 'untrained-ticket')")
    new.blocks = nn.ModuleList(kept)
    return new


class ZeroedBlock(nn.Module):
    """TEST-ONLY (variant ``mask-not-remove``): a "removed" block kept in the network with its residual
    branch multiplied by 0. The function equals removal (y = relu(x) = x for x >= 0) but every conv
    still runs forward and backward: the zero-masking the paper's removal avoids (§3)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(0.0 * self.block.residual(x) + self.block.shortcut(x))


def _shift_same_shape(kept: list[nn.Module]) -> list[nn.Module]:
    """Teeth: rotate the states of consecutive same-shaped blocks by one (a misplaced copy)."""
    out = [copy.deepcopy(b) for b in kept]
    for i in range(1, len(kept)):
        a, b = kept[i - 1], kept[i]
        if all(pa.shape == pb.shape for pa, pb in zip(a.state_dict().values(), b.state_dict().values())) \
                and len(a.state_dict()) == len(b.state_dict()):
            out[i].load_state_dict(a.state_dict())
    return out


def kept_index_map(n_blocks: int, remove: Sequence[int]) -> list[int]:
    """Original index of each block of the pruned network, in order."""
    drop = set(remove)
    return [i for i in range(n_blocks) if i not in drop]


def kept_weight_mismatch(net: nn.Module, ticket: nn.Module, remove: Sequence[int]) -> int:
    """Number of state tensors (parameters and BN buffers) of ``ticket`` that differ from the
    original's at the mapped position (0 = every kept weight was copied into the right place)."""
    orig = net.state_dict()
    bad = 0
    mapping = kept_index_map(len(net.blocks), remove)
    for k, v in ticket.state_dict().items():
        if k.startswith("blocks."):
            j, rest = k.split(".", 2)[1:]
            if int(j) >= len(mapping):  # more blocks than the removal leaves: not a removal
                bad += 1
                continue
            k = f"blocks.{mapping[int(j)]}.{rest}"
        bad += int(k not in orig or orig[k].shape != v.shape or not torch.equal(orig[k], v))
    return bad


def with_zero_residual(net: nn.Module, i: int) -> nn.Module:
    """Copy of ``net`` whose block ``i`` has its residual branch f_i forced to 0 (the reference for
    the removal-exactness check, §6 smoke)."""
    ref = copy.deepcopy(net)
    blk = ref.blocks[i]
    blk.residual = lambda x: torch.zeros_like(blk.shortcut(x))  # type: ignore[method-assign]
    return ref


# --------------------------------------------------------------------------- filter pruning (C3)

def prune_inner_filters(net: nn.Module, remove: dict[int, Sequence[int]]) -> nn.Module:
    """A new network whose block ``i`` loses the inner filters ``remove[i]`` (conv1 output channels,
    bn1, conv2 input channels): structural filter pruning that leaves the residual shapes intact."""
    new = copy.deepcopy(net)
    for i, filt in remove.items():
        if not filt:
            continue
        b = new.blocks[i]
        c = b.conv1.out_channels
        keep = torch.tensor(sorted(set(range(c)) - set(int(f) for f in filt)), dtype=torch.long)
        if keep.numel() == 0:
            raise ConfigError(f"block {i}: cannot remove all {c} inner filters; lower the filter count")
        conv1 = nn.Conv2d(b.conv1.in_channels, keep.numel(), 3, b.conv1.stride, 1, bias=False)
        conv1.weight.data.copy_(b.conv1.weight.data[keep])
        bn1 = nn.BatchNorm2d(keep.numel())
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn1, name).data.copy_(getattr(b.bn1, name).data[keep])
        bn1.num_batches_tracked.copy_(b.bn1.num_batches_tracked)
        conv2 = nn.Conv2d(keep.numel(), b.conv2.out_channels, 3, 1, 1, bias=False)
        conv2.weight.data.copy_(b.conv2.weight.data[:, keep])
        b.conv1, b.bn1, b.conv2 = conv1, bn1, conv2
    return new
