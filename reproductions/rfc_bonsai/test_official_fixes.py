"""rfc_bonsai: the full path follows the official code (issue 17): IRMv1 budgets per init, Camelyon17's online
group-DRO round, its epochs, fine-tuning weight decay and CLOvE grid. Each test fails on the old behaviour."""
import dataclasses

import pytest
import torch
from torch import nn

from suite import config, registry
from suite.context import for_tests
from suite.ood import bonsai as B
from suite.ood.net import Classifier

SLUG = "rfc_bonsai"


def _full():
    return config.resolve(registry.get(SLUG), "full")


def test_irm_steps_per_init_follow_the_official_scripts():
    """coloredmnist_rfc.sh: IRMv1 3001 steps from the Bonsai inits; coloredmnist_anneal.sh: 1001 from Rand/ERM."""
    from reproductions.rfc_bonsai import _protocol
    from reproductions.rfc_bonsai.colored import ood_stage_steps

    cfg = _full()
    p = _protocol(cfg, cfg.methods, cfg.inits, cfg.hidden, cfg.oracle)
    assert [ood_stage_steps(p, "irm", i) for i in ("rand", "erm")] == [1001, 1001]
    assert {ood_stage_steps(p, "irm", i) for i in ("bonsai", "bonsai_cf", "erm_cf", "rand_cf", "bonsai1_cf")} == {3001}
    assert ood_stage_steps(p, "vrex", "rand") == ood_stage_steps(p, "vrex", "bonsai") == 1001
    # smoke and small keep one IRMv1 budget (irm_base_steps None)
    small = config.resolve(registry.get(SLUG), "small")
    ps = _protocol(small, small.methods, small.inits, small.hidden, small.oracle)
    assert ood_stage_steps(ps, "irm", "rand") == ood_stage_steps(ps, "irm", "bonsai") == small.irm_steps


def test_camelyon_round1_is_group_dro_at_the_official_step_size():
    """The DRO round's weights are suite.ood.dro.GroupWeights (tested there) at WILDS' step size."""
    from reproductions.rfc_bonsai.camelyon import GROUP_DRO_STEP_SIZE

    assert GROUP_DRO_STEP_SIZE == 0.01  # src/configs/algorithm.py


def test_group_uniform_draw_balances_the_groups():
    """WILDS standard loader with uniform_over_groups: each draw picks a group uniformly (WeightedRandomSampler)."""
    from reproductions.rfc_bonsai.camelyon import group_uniform_draw

    groups = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    draw = group_uniform_draw(groups, 32, torch.Generator().manual_seed(0))
    idx = torch.cat([draw(s) for s in range(200)])
    assert len(idx) == 6400 and abs(float((groups[idx] == 1).float().mean()) - 0.5) < 0.03


def _tiny_make(in_dim):
    def make(out, offset):
        torch.manual_seed(offset)
        return Classifier(nn.Sequential(nn.Linear(in_dim, 8), nn.ReLU()), nn.Linear(8, out))
    return make


def test_camelyon_bonsai_round1_is_online_group_dro(monkeypatch):
    """Camelyon17's discovery round 1 runs group_dro_round (not the hard max of suite.ood.bonsai); its group
    weights move towards the group round 0 got wrong."""
    from suite.ood import EnvData
    from reproductions.rfc_bonsai import camelyon as Cm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).float()
    y[:30] = 1 - y[:30]  # round 0 cannot fit these: the "wrong" group
    train = EnvData(x, y, torch.zeros(200, dtype=torch.long), 1)
    bcfg = B.BonsaiConfig(rounds=2, erm_steps=60, dro_steps=60, synth_steps=5, lr=1e-2, rho=0.0, optimizer="sgd",
                          batch_size=16)
    seen = {}
    real = Cm.GroupWeights.objective

    def spy(self, losses):
        seen["q"] = self.q
        return real(self, losses)

    monkeypatch.setattr(Cm.GroupWeights, "objective", spy)
    monkeypatch.setattr(B, "robust_loss", lambda *a, **k: pytest.fail("hard max used"))
    found = Cm.bonsai(_tiny_make(5), train, bcfg, ctx=for_tests("full", 0), gen=torch.Generator().manual_seed(1))
    assert found.correct.shape == (2, 200) and found.synth is not None and len(found.models) == 2
    wrong = ~found.correct[0]
    assert wrong.any() and float(seen["q"][1]) > 0.5  # the wrong group gained weight


def test_camelyon_rounds_are_kept_at_their_best_iid_val_epoch():
    """src/analysis_earlystop.py + camelyon17_rfc_r1.sh / _r0r1_syn.sh (final_mode=iid): the ERM round and the DRO
    round are read at their best IID-validation epoch (--pred_epochs); the ERM round also keeps its best
    OOD-validation epoch (the ERM row's OOD-val selection)."""
    from suite.ood import EnvData
    from reproductions.rfc_bonsai import camelyon as Cm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).float()
    y[:30] = 1 - y[:30]
    train = EnvData(x, y, torch.zeros(200, dtype=torch.long), 1)
    bcfg = B.BonsaiConfig(rounds=2, erm_steps=60, dro_steps=60, synth_steps=5, lr=1e-2, rho=0.0, optimizer="sgd",
                          batch_size=16)
    calls, snaps = [], []

    def score(name, script):
        def f(m):
            calls.append(name)
            snaps.append((name, [p.detach().clone() for p in m.parameters()]))
            return script[sum(c == name for c in calls[:-1]) % 3]
        return f

    sel = B.EpochSelect(20, {"iid_val": score("iid", [0.3, 0.9, 0.5]), "ood_val": score("ood", [0.1, 0.2, 0.8])})
    found = Cm.bonsai(_tiny_make(5), train, bcfg, ctx=for_tests("full", 0), gen=torch.Generator().manual_seed(1),
                      select=sel)
    assert calls == ["iid", "ood"] * 3 + ["iid"] * 3  # epochs at steps 20, 40, 60; round 1 scores IID val only
    iid = [p for n, p in snaps if n == "iid"]
    ood = [p for n, p in snaps if n == "ood"]
    assert len(found.kept) == 1 and (found.kept[0]["iid_val"].step, found.kept[0]["ood_val"].step) == (40, 60)
    for model, want in ((found.models[0], iid[1]), (found.kept[0]["ood_val"].model, ood[2]), (found.models[1], iid[4])):
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), want))
    assert torch.equal(found.correct[1], B.correctness(found.models[1], x, y))


def test_camelyon_stages_follow_the_official_scripts(tmp_path, monkeypatch):
    """Epochs 10 (ERM / DRO rounds, downstream) and 20 (synthesis); fine-tuning weight decay 1e-6; the CLOvE grid
    of camelyon17_rfc_r0r1_syneven_clove_linear.sh. Bonsai and training are stubbed: this checks the plumbing."""
    from suite.data import camelyon17
    from reproductions.rfc_bonsai import camelyon as Cm

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    camelyon17.write_fixture(tmp_path / "data" / camelyon17.SUBDIR)

    from reproductions.rfc_bonsai.test_camelyon_parts import _Mean as Mean  # a 3-feature stand-in featurizer

    seen, calls = {}, []

    def fake_bonsai(make, train, bcfg, **kw):
        seen["bcfg"], seen["select"] = bcfg, kw["select"]
        n = seen["n"] = len(train.y)
        c = torch.ones(2, n, dtype=torch.bool)
        return B.BonsaiResult(c, B.pseudo_labels(train.y[None], c), [Classifier(Mean(), nn.Linear(3, 1))] * 2,
                              synth=Classifier(Mean(), nn.Linear(3, 2)))

    monkeypatch.setattr(Cm, "bonsai", fake_bonsai)
    monkeypatch.setattr(Cm, "train_ood", lambda model, data, method, cfg, **kw: calls.append((kw["name"], cfg)))
    made = []
    monkeypatch.setattr(Cm, "_make", lambda seed: lambda out, offset: (made.append((out, offset)),
                                                                       Classifier(Mean(), nn.Linear(3, out)))[1])
    cfg = _full()
    assert (cfg.cam_epochs, cfg.cam_synth_epochs) == (10, 20)
    Cm.run_camelyon(cfg, for_tests("full", 0, data_root=tmp_path / "data"))
    b = seen["bcfg"]
    n = seen["n"]
    assert b.erm_steps == b.dro_steps == 10 * n // 32 and b.synth_steps == 20 * n // 32
    assert b.weight_decay == 0.01 and b.synth_weight_decay == 1e-6
    # the rounds are kept at their best epoch (src/analysis_earlystop.py): evaluated once an epoch on both splits
    assert seen["select"].every == max(1, n // 32) and list(seen["select"].scores) == ["iid_val", "ood_val"]
    lams = lambda prefix: [c.lam for n, c in calls if n.startswith(prefix)]  # noqa: E731
    assert lams("cam-clove-bonsai_cf-") == list(cfg.cam_clove_lams) and max(cfg.cam_clove_lams) == 1
    assert lams("cam-irm-bonsai_cf-") == list(cfg.cam_lams)
    wd = {n.split("-")[2]: c.weight_decay for n, c in calls}
    assert wd["bonsai"] == 1e-6 and wd["bonsai_cf"] == 0.01 and wd["erm"] == 0.01
    assert {c.steps for _, c in calls} == {b.erm_steps}
    # every downstream / ERM-init run draws its batches as WILDS' group loader: 2 hospitals x 16 patches
    # (src/configs/datasets.py n_groups_per_batch 2), not 32 // 3 from each of the 3 hospitals
    assert {(c.draw, c.groups_per_batch, c.batch_per_env) for _, c in calls} == {("groups", 2, 16)}
    # CLOvE's kernel width on Camelyon17 is the script's 0.1; the other penalties take no option
    assert {c.penalty_kwargs.get("width") for n, c in calls if n.startswith("cam-clove-")} == {0.1}
    # IRMv1 on Camelyon17 is WILDS' split-half penalty (src/algorithms/IRM.py irm_penalty); vREx / ERM take no option
    assert all(c.penalty_kwargs == {"form": "split_half"} for n, c in calls if n.startswith("cam-irm-"))
    assert all(c.penalty_kwargs == {} for n, c in calls if not n.startswith(("cam-clove-", "cam-irm-")))
    # ERM-init IRMv1 / vREx (camelyon17_irm.sh / _vrex.sh): the 9 x 5 (lambda, anneal) grid, penalty weight 0
    # for the anneal steps, optimizer re-created; the Bonsai-init runs never anneal
    assert (cfg.cam_erm_init_lams, cfg.cam_erm_init_anneal_steps) == ((0, 0.5, 1, 5, 10, 50, 100, 500, 1000),
                                                                      (0, 500, 1000, 5000, 10000))
    for m in ("irm", "vrex"):
        init = [c for n, c in calls if n.startswith(f"cam-{m}-erm-")]
        assert sorted((c.lam, c.anneal_steps) for c in init) == sorted(
            (lam, a) for lam in cfg.cam_erm_init_lams for a in cfg.cam_erm_init_anneal_steps)
        assert {(c.anneal_lam, c.anneal_reset, c.weight_decay) for c in init} == {(0.0, True, 0.01)}
    assert all(c.anneal_steps == 0 and not c.anneal_reset for n, c in calls if "-erm-" not in n)
    # each ERM-init run starts from scratch: a fresh network with round 0's initial weights (offset 0), not a copy
    # of the trained round-0 model (Bonsai is stubbed here, so these are the only networks built)
    assert made == [(1, 0)] * (2 * 9 * 5)


def test_camelyon_irm_is_the_official_split_half_penalty(monkeypatch):
    """src/algorithms/IRM.py irm_penalty (even / odd halves of each hospital) on Camelyon17, through the config's
    penalty_kwargs to suite.ood.irm.penalty; the ColoredMNIST runs keep the squared form (coloredmnist/train.py
    IRM_penalty)."""
    from suite.ood import irm
    from suite.ood.training import configured_penalty
    from reproductions.rfc_bonsai import _protocol, colored
    from reproductions.rfc_bonsai.camelyon import downstream_config, erm_init_config

    cfg = _full()
    assert cfg.cam_irm_form == "split_half"
    for c in (downstream_config(cfg, "irm", 10.0, 0.01, 5), erm_init_config(cfg, "irm", 10.0, 500, 5)):
        assert c.penalty_kwargs == {"form": "split_half"}
        seen = []
        monkeypatch.setattr(irm, "penalty", lambda out, form="squared": seen.append(form))
        configured_penalty("irm", c)(None)
        assert seen == ["split_half"]
        monkeypatch.undo()
    assert downstream_config(cfg, "vrex", 10.0, 0.01, 5).penalty_kwargs == {}
    p = _protocol(cfg, cfg.methods, cfg.inits, cfg.hidden, cfg.oracle)
    assert colored.ood_config(p, "irm", 1001, 1e3, p.rho).penalty_kwargs == {}


def test_camelyon_batch_must_split_over_the_groups():
    from suite.errors import ConfigError
    from reproductions.rfc_bonsai.camelyon import downstream_config

    with pytest.raises(ConfigError):
        downstream_config(dataclasses.replace(_full(), cam_batch=33), "irm", 1.0, 0.01, 10)


def test_clove_on_colored_mnist_is_the_official_clove_train(monkeypatch):
    """coloredmnist/run_exp.py defaults (--batch_size 512, --kernel_scale 0.4) and train.py clove_train: every
    step one random 512-example slice per environment, NLLs and MMCEs summed over the environments, no explicit
    L2; the other methods stay full batch with their L2 weight. Checked through run() on ColoredDigits."""
    from suite.ood import training as T
    from reproductions.rfc_bonsai import _protocol, colored

    cfg = _full()
    assert (cfg.clove_batch, cfg.clove_width) == (512, 0.4)
    p = _protocol(cfg, cfg.methods, cfg.inits, cfg.hidden, cfg.oracle)
    c = colored.ood_config(p, "clove", 1001, 1e3, p.rho)
    assert (c.batch_per_env, c.draw, c.env_reduce, c.rho, c.penalty_kwargs) == (512, "slice", "sum", 0.0,
                                                                               {"width": 0.4})
    v = colored.ood_config(p, "vrex", 1001, 1e3, p.rho)
    assert (v.batch_per_env, v.env_reduce, v.rho) == (None, "mean", 0.0011)
    seen = []
    real = T.ood_loss

    def spy(m, b, pen, lam, rho, env_reduce="mean"):
        seen.append((len(b), tuple(torch.bincount(b.env).tolist()), env_reduce, rho))
        return real(m, b, pen, lam, rho, env_reduce)

    monkeypatch.setattr(T, "ood_loss", spy)
    r = registry.get(SLUG)
    small = dataclasses.replace(config.resolve(r, "smoke"), methods=("clove",), inits=("bonsai_cf",), oracle=False,
                                ood_steps=3, dro_steps=2, synth_steps=2, erm_steps=2, erm_init_steps=2)
    m = r.run(small, for_tests("smoke", 0)).metrics
    assert "worst_env_acc/clove/bonsai_cf" in m
    assert seen[-3:] == [(1024, (512, 512), "sum", 0.0)] * 3  # ColoredDigits: 600 per env, 512 drawn


def test_erm_rows_sweep_the_official_l2_grid(monkeypatch):
    """coloredmnist_erm.sh / coloredmnist_rfc.sh: ERM and the oracle run at l2 in {1e-4, 5e-4, 1e-3, 5e-3, 1e-2}
    (best reported); the penalised methods keep l2 0.0011."""
    from reproductions.rfc_bonsai import _protocol, colored

    cfg = _full()
    p = _protocol(cfg, cfg.methods, cfg.inits, cfg.hidden, cfg.oracle)
    assert colored.grid_points(p, "erm") == [(0.0, r, f"rho={r:g}") for r in (0.0001, 0.0005, 0.001, 0.005, 0.01)]
    assert {rho for _, rho, _ in colored.grid_points(p, "vrex")} == {0.0011}
    # through run(): every ERM row and the oracle train once per l2 weight, the plain metric is the best
    seen = []
    real = colored.train_ood
    monkeypatch.setattr(colored, "train_ood", lambda m, d, meth, c, **kw: (seen.append((kw["name"], c.rho)),
                                                                          real(m, d, meth, c, **kw))[1])
    r = registry.get(SLUG)
    small = dataclasses.replace(config.resolve(r, "smoke"), methods=("erm",), inits=("bonsai_cf",),
                                erm_rho_grid=(1e-4, 1e-2), ood_steps=5, dro_steps=5, synth_steps=5)
    m = r.run(small, for_tests("smoke", 0)).metrics
    assert {rho for n, rho in seen if n.startswith("erm-bonsai_cf")} == {1e-4, 1e-2}
    assert {rho for n, rho in seen if n.startswith("oracle")} == {1e-4, 1e-2}
    for row in ("erm/bonsai_cf", "oracle/rand"):
        assert m[f"worst_env_acc/{row}"] == max(m[f"worst_env_acc/{row}@rho=0.0001"], m[f"worst_env_acc/{row}@rho=0.01"])
