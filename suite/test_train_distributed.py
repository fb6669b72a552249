"""``suite.train.fit`` in a ``torch.distributed`` group (two processes on this CPU, gloo), with the model wrapped
in DDP or sharded with FSDP2 (``fully_shard``): every rank checkpoints its own state (FSDP: its own shard), and an
interrupted run resumes to the weights of an uninterrupted one."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from suite.runner import free_port
from suite.train import TrainConfig, fit


KINDS = ("ddp", "fsdp")


class _Stop(Exception):
    pass


def _net(kind: str) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    if kind == "ddp":
        return nn.parallel.DistributedDataParallel(net)
    from torch.distributed.fsdp import fully_shard

    for layer in (net[0], net[2]):
        fully_shard(layer)
    return fully_shard(net)


def _full(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights on every rank (FSDP's DTensor shards gathered)."""
    return {k.removeprefix("module."): (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
            for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    """For DDP and FSDP, two runs of 6 steps: one uninterrupted, one stopped after step 3 and resumed; each rank
    saves the final weights of both."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
        y = torch.arange(64) % 3
        shard = slice(rank, None, world)  # each rank its half of the data
        cfg = TrainConfig(steps=6, batch_size=8, lr=0.1, optimizer="sgd", checkpoint_every=1)
        loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
        data = (x[shard], y[shard])

        def bomb(state) -> None:
            if state.step == 3:
                raise _Stop

        for kind in KINDS:
            for run in ("whole", "resumed"):
                ck = os.path.join(folder, f"{kind}-{run}", "checkpoint.pt")
                model = _net(kind)
                try:
                    fit(model, loss, data, cfg, checkpoint=ck, on_step=bomb if run == "resumed" else None,
                        generator=torch.Generator().manual_seed(10 + rank))
                except _Stop:
                    model = _net(kind)
                    res = fit(model, loss, data, cfg, checkpoint=ck, generator=torch.Generator().manual_seed(10 + rank))
                    assert res.resumed_from_step == 3
                torch.save(_full(model), os.path.join(folder, f"{kind}-{run}.rank{rank}.weights"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_ranks_checkpoint_apart_and_an_interrupted_run_resumes_exactly(tmp_path):
    runs = [f"{kind}-{run}" for kind in KINDS for run in ("whole", "resumed")]
    for run in runs:
        (tmp_path / run).mkdir()
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for run in runs:  # before the fix both ranks wrote one checkpoint.pt
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == ["checkpoint.pt", "checkpoint.rank1.pt"], run
    w = {(run, r): torch.load(tmp_path / f"{run}.rank{r}.weights", weights_only=True) for run in runs for r in (0, 1)}
    ref = w[("ddp-whole", 0)]
    for run in runs:
        for r in (0, 1):  # the ranks in step, DDP and FSDP alike, and the resumed runs where the whole ones ended
            assert all(torch.allclose(ref[k], w[(run, r)][k], atol=1e-6) for k in ref), (run, r)
    assert all(torch.equal(w[("ddp-whole", 0)][k], w[("ddp-resumed", 0)][k]) for k in ref)
    assert all(torch.equal(w[("fsdp-whole", 0)][k], w[("fsdp-resumed", 0)][k]) for k in ref)
