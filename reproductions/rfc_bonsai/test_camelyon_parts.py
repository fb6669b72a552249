"""rfc_bonsai: at full, Camelyon17 runs as three parts of the ``datasets`` split (issue 17: one 111-training job per
seed did not fit 48 h): the Bonsai pipeline (``camelyon17``) and the official ERM-init grid of each method
(``camelyon17-erm-init-irm`` / ``-vrex``, camelyon17_{irm,vrex}.sh). Each test fails on the one-job code."""
import dataclasses
import re

import pytest
import torch
from torch import nn

from suite import config, executors, leaderboard, registry, runner
from suite.context import for_tests
from suite.ood import bonsai as B
from suite.ood.net import Classifier

SLUG = "rfc_bonsai"
ERM_INIT = re.compile(r"^cam-(irm|vrex)-erm-")  # names of the ERM-init trainings (cam-<method>-erm-<lam>-anneal<a>)


def test_full_preset_is_four_jobs_per_seed_with_their_resources():
    from reproductions.rfc_bonsai import CAMELYON_PARTS

    repro = registry.get(SLUG)
    specs = runner.full_runs(runner.RunSpec(SLUG, "full", 3, ()))
    parts = ("colored-mnist", "camelyon17", "camelyon17-erm-init-irm", "camelyon17-erm-init-vrex")
    assert [s.overrides for s in specs] == [(f"datasets={p}",) for p in parts] and {s.seed for s in specs} == {3}
    assert tuple(CAMELYON_PARTS) == parts[1:]
    res = {repro.part_of(s.overrides): executors.resources_for(s, None, None) for s in specs}
    # estimates from epoch counts (README "Job size"): 48 h only for the 450-epoch ERM-init parts
    assert {p: (r.gpus, r.time_min) for p, r in res.items()} == {
        "colored-mnist": (1, 480), "camelyon17": (1, 1440),
        "camelyon17-erm-init-irm": (1, 2880), "camelyon17-erm-init-vrex": (1, 2880)}
    # each job's config is the preset with that one part, and a rehearsal keeps the preset whole
    full = config.canonical(config.resolve(repro, "full"))
    for s, p in zip(specs, parts):
        assert config.canonical(config.resolve(repro, "full", s.overrides)) == {**full, "datasets": [p]}
    assert runner.full_runs(runner.RunSpec(SLUG, "full", 0, ()), rehearse=True) == [runner.RunSpec(SLUG, "full", 0, ())]


class _Mean(nn.Module):
    out_dim = 3

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.float().mean((2, 3))


def _stubbed_run(tmp_path, monkeypatch, datasets):
    """rfc_bonsai's run() on the WILDS fixture at the full preset, Bonsai and every training stubbed (counted)."""
    from suite.data import camelyon17
    from reproductions.rfc_bonsai import camelyon as Cm

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    camelyon17.write_fixture(tmp_path / "data" / camelyon17.SUBDIR)
    seen = {"bonsai": 0, "calls": [], "made": []}

    def fake_bonsai(make, train, bcfg, **kw):
        seen["bonsai"] += 1
        c = torch.ones(2, len(train.y), dtype=torch.bool)
        return B.BonsaiResult(c, B.pseudo_labels(train.y[None], c), [Classifier(_Mean(), nn.Linear(3, 1))] * 2,
                              synth=Classifier(_Mean(), nn.Linear(3, 2)))

    def fake_train(model, data, method, cfg, **kw):
        seen["calls"].append((kw["name"], cfg, kw["gen"], kw["gen"].get_state()))

    monkeypatch.setattr(Cm, "bonsai", fake_bonsai)
    monkeypatch.setattr(Cm, "train_ood", fake_train)
    monkeypatch.setattr(Cm, "_make", lambda seed: lambda out, offset: (seen["made"].append((out, offset)),
                                                                       Classifier(_Mean(), nn.Linear(3, out)))[1])
    repro = registry.get(SLUG)
    cfg = config.resolve(repro, "full", (f"datasets={','.join(datasets)}",))
    assert cfg.datasets == tuple(datasets)
    ctx = for_tests("full", 0, data_root=tmp_path / "data")
    return repro.run(cfg, ctx), seen, cfg, ctx


@pytest.mark.parametrize("method", ["irm", "vrex"])
def test_erm_init_part_runs_only_its_erm_init_grid(tmp_path, monkeypatch, method):
    from reproductions.rfc_bonsai.camelyon import ERM_INIT_STREAM

    out, seen, cfg, ctx = _stubbed_run(tmp_path, monkeypatch, [f"camelyon17-erm-init-{method}"])
    names = [n for n, *_ in seen["calls"]]
    assert seen["bonsai"] == 0 and len(names) == 9 * 5 == len(seen["made"])  # no pipeline, 45 runs from scratch
    assert all(n.startswith(f"cam-{method}-erm-") for n in names)
    assert sorted((c.lam, c.anneal_steps) for _, c, *_ in seen["calls"]) == sorted(
        (lam, a) for lam in cfg.cam_erm_init_lams for a in cfg.cam_erm_init_anneal_steps)
    assert seen["made"] == [(1, 0)] * 45  # round 0's initial weights under the seed
    # every run draws from a fresh generator on the ERM-init stream (as the official per-run processes of a seed),
    # not the pipeline's shared one: the part's numbers cannot depend on what ran before it in a job
    gens = [g for _, _, g, _ in seen["calls"]]
    assert len({id(g) for g in gens}) == 45
    start = ctx.generator(ERM_INIT_STREAM).get_state()
    assert all(torch.equal(st, start) for *_, st in seen["calls"])
    # the metrics keep their names (camelyon17/...), and name Camelyon17 as their dataset
    want = {f"camelyon17/{k}/{method}/erm/{sel}" for k in ("test_acc", "lam", "anneal") for sel in ("iid_val", "ood_val")}
    assert set(out.metrics) == want
    assert out.dataset.provenance == "paper" and "camelyon" in out.dataset.name
    assert all(out.dataset_of(k) == out.dataset for k in out.metrics)


def test_pipeline_part_runs_no_erm_init_training(tmp_path, monkeypatch):
    out, seen, cfg, _ = _stubbed_run(tmp_path, monkeypatch, ["camelyon17"])
    names = [n for n, *_ in seen["calls"]]
    assert seen["bonsai"] == 1 and seen["made"] == [] and not [n for n in names if ERM_INIT.match(n)]
    # the frozen-feature heads and the fine-tunings all run: 1 + 17 + 17 + 16 heads, 1 + 17 fine-tunings
    assert len(names) == 51 + 18
    assert not [k for k in out.metrics if "/erm/" in k and k.split("/")[2] in ("irm", "vrex")]
    assert "camelyon17/bonsai/agree_frac" in out.metrics and "camelyon17/test_acc/erm/rand/iid_val" in out.metrics


def test_colored_and_camelyon_parts_in_one_run_name_their_own_datasets(tmp_path, monkeypatch):
    """A run of several parts (``--set datasets=a,b``): each metric names the dataset of its part."""
    monkeypatch.setattr("reproductions.rfc_bonsai.run_protocol", lambda *a, **k: {"worst_env_acc/erm/rand": 0.5})
    out, seen, _, _ = _stubbed_run(tmp_path, monkeypatch, ["colored-digits", "camelyon17-erm-init-vrex"])
    assert out.dataset_of("worst_env_acc/erm/rand").name == "colored-digits"
    assert "camelyon" in out.dataset_of("camelyon17/test_acc/vrex/erm/iid_val").name
    assert "camelyon" in out.dataset.name and "colored-digits" in out.dataset.name


@pytest.mark.slow
def test_merged_parts_equal_one_run_of_all_parts(tmp_path, monkeypatch):
    """DenseNet-121 on the WILDS fixture (cut budgets): the leaderboard's merge (suite.leaderboard.assemble) of one
    job per part gives the metrics of one job running every part, bit for bit (CPU), ColoredDigits included; and
    every training of a part ends with the weights it has in the one job (the fixture's accuracies are too coarse
    to show a changed minibatch stream)."""
    import hashlib

    from suite.data import camelyon17
    from reproductions.rfc_bonsai import camelyon as Cm

    trained: dict[str, str] = {}
    real = Cm.train_ood

    def spy(model, data, method, cfg, **kw):
        out = real(model, data, method, cfg, **kw)
        trained[kw["name"]] = hashlib.sha1(b"".join(p.detach().cpu().numpy().tobytes()
                                                    for p in model.parameters())).hexdigest()
        return out

    monkeypatch.setattr(Cm, "train_ood", spy)
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    camelyon17.write_fixture(tmp_path / "data" / camelyon17.SUBDIR)
    repro = registry.get(SLUG)
    parts = ("colored-digits", "camelyon17", "camelyon17-erm-init-irm", "camelyon17-erm-init-vrex")
    base = dataclasses.replace(config.resolve(repro, "smoke"), methods=("erm", "vrex"), inits=("rand", "bonsai_cf"),
                               cam_epochs=1, cam_synth_epochs=1, cam_batch=8, cam_lams=(0, 10.0),
                               cam_clove_lams=(0, 0.1), cam_erm_init_lams=(0, 10.0), cam_erm_init_anneal_steps=(0, 1))

    def job(datasets, started):
        cfg = dataclasses.replace(base, datasets=datasets)
        torch.manual_seed(0)
        out = repro.run(cfg, for_tests("full", 0, data_root=tmp_path / "data"))
        return {"scale": "full", "seed": 0, "env": {"code_hash": "x"}, "config": config.canonical(cfg),
                "config_hash": started, "metrics": out.metrics, "dataset": out.dataset.as_dict(), "started": started}

    whole = job(parts, "0")
    in_whole, pieces = dict(trained), []
    for i, p in enumerate(parts):
        trained.clear()
        pieces.append(job((p,), str(i)))
        assert trained.items() <= in_whole.items(), p
    assert sum(n.startswith("cam-") for n in in_whole) == 7 + 3 + 2 * 4  # heads, fine-tunings, ERM-init runs
    merged = leaderboard.assemble(repro, pieces)
    assert len(merged) == 1 and sorted(merged[0]["config"]["datasets"]) == sorted(parts)
    assert merged[0]["metrics"] == whole["metrics"]
    assert {k for k in whole["metrics"] if k.startswith("camelyon17/anneal/")} == {
        f"camelyon17/anneal/{m}/erm/{s}" for m in ("irm", "vrex") for s in ("iid_val", "ood_val")}
    assert merged[0]["dataset"] == whole["dataset"]
