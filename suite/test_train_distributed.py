"""``suite.train.fit`` in a ``torch.distributed`` group (DDP over gloo, two processes on this CPU): every rank
checkpoints its own state, and an interrupted run resumes to the weights of an uninterrupted one."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from suite.train import TrainConfig, fit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stop(Exception):
    pass


def _net() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank
    return nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)))


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    """Two runs of 6 steps: one uninterrupted, one stopped after step 3 and resumed; each rank saves both
    final weights."""
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

        for run in ("whole", "resumed"):
            ck = os.path.join(folder, run, "checkpoint.pt")
            model = _net()
            try:
                fit(model, loss, data, cfg, checkpoint=ck, on_step=bomb if run == "resumed" else None,
                    generator=torch.Generator().manual_seed(10 + rank))
            except _Stop:
                model = _net()
                res = fit(model, loss, data, cfg, checkpoint=ck, generator=torch.Generator().manual_seed(10 + rank))
                assert res.resumed_from_step == 3
            torch.save(model.state_dict(), os.path.join(folder, f"{run}.rank{rank}.weights"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_ranks_checkpoint_apart_and_an_interrupted_ddp_run_resumes_exactly(tmp_path):
    for run in ("whole", "resumed"):
        (tmp_path / run).mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for run in ("whole", "resumed"):  # before the fix both ranks wrote one checkpoint.pt
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == ["checkpoint.pt", "checkpoint.rank1.pt"]
    w = {(run, r): torch.load(tmp_path / f"{run}.rank{r}.weights", weights_only=True)
         for run in ("whole", "resumed") for r in (0, 1)}
    ref = w[("whole", 0)]
    assert all(torch.equal(ref[k], w[("whole", 1)][k]) for k in ref)  # DDP kept the ranks in step
    assert all(torch.equal(ref[k], w[("resumed", r)][k]) for k in ref for r in (0, 1))  # resumed = uninterrupted
