"""A distributed run through the runner: a toy reproduction whose ``run`` uses :mod:`suite.distributed` (a gather of
rank ids, an all-mean, a DDP fit that checkpoints) run as 2 ranks on this CPU (gloo) by the local launcher. One spawn
per test (spawning is slow); every spawning test is bounded by an alarm so that a hang fails instead of blocking."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
from torch import nn

from suite import distributed as D
from suite import registry, runner
from suite.registry import Reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources
from suite.train import TrainConfig, fit

needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")


@dataclass
class DistConfig:
    steps: int = 4
    fail_rank: int = -1  # this rank raises after the first collective (the others are then inside the next one)


def dist_run(cfg: DistConfig, ctx) -> Outcome:
    ranks = D.gather(D.rank())
    if D.rank() == cfg.fail_rank:
        raise RuntimeError(f"rank {cfg.fail_rank} fails on purpose")
    rank_mean = float(D.all_mean(torch.tensor([float(D.rank())], device=ctx.device)))
    rank_sum = float(D.all_sum(torch.tensor([1.0], device=ctx.device)))
    items = sorted(i for part in D.gather(list(D.shard(list(range(7))))) for i in part)
    g = ctx.generator()
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    x, y = D.shard(x).to(ctx.device), D.shard(y).to(ctx.device)  # each rank its own half of the data
    torch.manual_seed(0)
    model = D.wrap(nn.Linear(4, 1).to(ctx.device), "ddp")
    res = fit(model, lambda m, b: ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(), (x, y),
              TrainConfig(steps=cfg.steps, batch_size=8, lr=0.05, optimizer="sgd", checkpoint_every=2), ctx=ctx)
    # FSDP2: the Linear children sharded first, then the root; one step through the sharded model
    from torch.distributed.fsdp import FSDPModule

    torch.manual_seed(0)
    sharded = D.wrap(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).to(ctx.device), "fsdp",
                     shard_children=lambda m: isinstance(m, nn.Linear))
    sharded(x).pow(2).mean().backward()
    fsdp_units = sum(isinstance(m, FSDPModule) for m in sharded.modules())
    weights = D.gather(torch.cat([p.detach().flatten().cpu() for p in model.parameters()]))
    spread = max(float((w - weights[0]).abs().max()) for w in weights)
    metrics = {"world": float(len(ranks)), "ranks_in_order": float(ranks == list(range(D.world_size()))),
               "rank_mean": rank_mean, "rank_sum": rank_sum, "shards_cover": float(items == list(range(7))),
               "weight_spread": spread, "loss": res.final_loss, "fsdp_units": float(fsdp_units)}
    return Outcome(metrics, DatasetRef("gaussian", "stand-in"))


DIST = Reproduction(
    slug="_dist_test", track="_toytrack", paper=Paper(title="Distributed test", authors="Nobody", year=2024),
    config=DistConfig, scales={"smoke": {}, "small": {}, "full": {}},
    claims=(Claim(id="in-step", text="DDP keeps the ranks' weights equal", metric="weight_spread", op="<=", ref=1e-6,
                  kind="check"),),
    run=dist_run, resources={"smoke": Resources(cpus=2, processes=2, mem_gb=1, time_min=5)},
    module="suite.test_distributed",
)


@pytest.fixture
def repro():
    with registry.temporarily(DIST):
        yield DIST


def test_helpers_are_trivial_without_a_group():
    t = torch.tensor([1.0, 3.0])
    assert not D.initialized() and D.rank() == 0 and D.world_size() == 1 and D.is_main() and D.local_rank() == 0
    assert D.shard([1, 2, 3]) == [1, 2, 3] and D.gather("x") == ["x"] and D.broadcast(5) == 5
    assert D.all_mean(t) is t and D.all_sum(t) is t
    D.barrier()
    net = nn.Linear(2, 2)
    assert D.wrap(net, "ddp") is net and D.wrap(net, "fsdp") is net
    with pytest.raises(ValueError, match="kind"):
        D.wrap(net, "zero3")
    assert D.init("cpu") == torch.device("cpu") and not D.initialized()  # WORLD_SIZE unset: no group


def test_resources_validate_processes():
    assert Resources().processes == 1
    with pytest.raises(ValueError, match="processes"):
        Resources(processes=0)
    with pytest.raises(ValueError, match="one rank per GPU"):
        Resources(gpus=2, processes=4)
    assert Resources(gpus=8, processes=8).processes == 8


@needs_gloo
def test_two_ranks_run_with_one_record(tmp_path, repro, bounded):
    spec = runner.RunSpec("_dist_test", "smoke", 0)
    rec = runner.execute(spec, tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["world"] == 2 and m["ranks_in_order"] == 1.0  # the gathered ranks are [0, 1]
    assert m["rank_mean"] == 0.5 and m["rank_sum"] == 2.0 and m["shards_cover"] == 1.0
    assert m["weight_spread"] <= 1e-6 and rec["claims"]["in-step"]["verdict"] == "holds"
    assert m["fsdp_units"] == 3  # both Linear children and the root
    assert rec["env"]["world_size"] == 2
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("result.json")] == [
        runner.run_dir(spec, tmp_path).relative_to(tmp_path) / "result.json"]
    folder = runner.run_dir(spec, tmp_path)
    # rank 0 checkpoints in the folder, rank 1 in rank1/ (suite/train.py names its file); the rehearsal's glob
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("checkpoint*.pt")) == [
        "checkpoint.pt", "rank1/checkpoint.rank1.pt"]
    assert not (folder / runner.RUNNING_FILE).exists() and not (folder / runner.ERROR_FILE).exists()
    assert not (folder / "rank1" / runner.RESULT_FILE).exists()
    assert runner.is_done(spec, tmp_path)
    assert runner.execute(spec, tmp_path) == rec  # the launcher reuses the record without spawning


@needs_gloo
def test_ranks_reuse_a_stored_record_together(tmp_path, repro, bounded):
    """The Slurm path (every task a rank, no launcher short-cut): rank 0 decides under the lock that the record
    stands and broadcasts it, so no rank runs and none waits in a collective for the others."""
    spec = runner.RunSpec("_dist_test", "smoke", 0, ("steps=3",))
    folder = runner.run_dir(spec, tmp_path)
    first = runner.execute(spec, tmp_path, processes=1)  # a record of the current code
    assert first["status"] == "ok" and first["env"]["world_size"] == 1
    again = runner._launch(spec, DIST, tmp_path, folder, 2, device="cpu", force=False, data_root=None,
                           show_progress=False)
    assert again == first
    assert not (folder / "rank1").exists()  # rank 1 did not run


@needs_gloo
def test_a_rank_that_raises_fails_the_run_without_hanging(tmp_path, repro, bounded):
    spec = runner.RunSpec("_dist_test", "smoke", 0, ("fail_rank=1",))
    rec = runner.execute(spec, tmp_path)
    folder = runner.run_dir(spec, tmp_path)
    assert rec["status"] == "failed"
    assert "rank 1 fails on purpose" in rec["error"], rec["error"]
    stored = json.loads((folder / runner.ERROR_FILE).read_text())
    assert stored["status"] == "failed" and "rank 1 fails on purpose" in stored["error"]
    assert stored["env"]["world_size"] == 2
    assert not list(tmp_path.rglob("result.json")) and not (folder / runner.RUNNING_FILE).exists()
