"""DAM-VP: pad prompts, clustering/routing, active neurons, Reptile update, spec §6 smoke claims, teeth."""
from __future__ import annotations

import pytest
import torch

from reproductions.dam_vp.data import diverse_digits, transform
from reproductions.dam_vp.method import (PadPrompts, active_neurons, cluster_threshold, diversity_clusters,
                                         prompt_vector, reptile_update, route, set_prompt_vector)
from suite import config, registry
from suite.errors import ConfigError


def test_pad_prompt_border_only_and_gather():
    p = PadPrompts(3, 1, 16, 16, 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(6, 1, 16, 16)
    r = torch.tensor([0, 1, 2, 2, 1, 0])
    out = p(x, r).detach()
    assert torch.equal(out[..., 2:14, 2:14], x[..., 2:14, 2:14])
    assert (out - x)[..., :2, :].abs().sum() > 0
    for i in range(6):  # the vectorised gather equals the per-sample loop
        assert torch.equal(out[i], (x[i] + p.assemble()[r[i]]).detach())
    n = sum(t.numel() for t in p.parameters())
    assert n == 3 * (2 * 2 * 16 + 2 * 12 * 2)
    bad = PadPrompts(1, 1, 16, 16, 2, variant="full_prompt")
    assert (bad(x[:1], r[:1]) - x[:1])[..., 2:14, 2:14].abs().sum() > 0


def test_meta_copy_and_vector_round_trip():
    meta, p = PadPrompts(1, 1, 8, 8, 2), PadPrompts(4, 1, 8, 8, 2)
    p.load_from(meta)
    assert torch.equal(p.assemble(), meta.assemble().expand(4, -1, -1, -1))
    v = torch.randn_like(prompt_vector(p))
    set_prompt_vector(p, v)
    assert torch.equal(prompt_vector(p), v)


def test_clusters_routing_and_threshold():
    g = torch.Generator().manual_seed(0)
    u = torch.cat([torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g) + 20])
    lab, protos = diversity_clusters(u, cluster_threshold(u, 60))
    assert len(protos) == 2 and torch.equal(route(u, protos), lab)
    assert torch.allclose(protos[lab[0]], u[lab == lab[0]].mean(0))
    lab1, _ = diversity_clusters(u, 1e9)
    assert int(lab1.max()) == 0  # huge threshold → M = 1 (= VP)


def test_active_neurons_and_reptile():
    w = torch.zeros(5, 3 * 4)
    w[torch.arange(5), torch.arange(5)] = torch.tensor([1.0, 5.0, 3.0, 0.5, 4.0])
    fn = lambda x: x.flatten(1) @ w.T  # noqa: E731
    idx = active_neurons(fn, 3, (3, 2, 2), torch.Generator().manual_seed(0), n=4096)
    assert idx.tolist() == [1, 4, 2]
    with pytest.raises(ConfigError):
        active_neurons(fn, 6, (3, 2, 2), torch.Generator().manual_seed(0))
    th, ph = torch.zeros(1, 3), torch.tensor([[1.0, 2, 3], [3, 2, 1]])
    assert torch.allclose(reptile_update(th, ph, 0.5), torch.tensor([[1.0, 1, 1]]))
    assert not torch.allclose(reptile_update(th, ph, 0.5, "reptile_sign"), torch.tensor([[1.0, 1, 1]]))


def test_diverse_digits_domains():
    t = diverse_digits(0)
    assert t.train.x.shape[1:] == (1, 16, 16)
    assert torch.bincount(t.train.domain).min() >= len(t.train.y) // 4 - 1
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(transform(x, "invert", torch.Generator()), 1 - x)
    assert set(t.sources) == {"blur", "translate", "saltpepper"}


def test_smoke_claims_and_teeth(tmp_path):
    from suite import runner

    bad = runner.execute(runner.RunSpec("dam_vp", "smoke", 0, overrides=("variant=reptile_sign",)), tmp_path,
                         device="cpu")
    assert bad["status"] == "ok"
    assert bad["claims"]["reptile-update"]["verdict"] == "fails"
    assert bad["claims"]["border-only"]["verdict"] == "holds"


def test_unknown_variant():
    with pytest.raises(ConfigError, match="one of"):
        config.resolve(registry.get("dam_vp"), "smoke", ["variant=nope"])


def test_the_whole_model_moves_to_the_device():
    """Issue 16: the frozen backbone is a registered module of ``Prompted``, so ``.to(device)`` moves all
    of it (a lambda head once left it behind on the CPU). The meta device stands in for a GPU: a parameter
    or buffer left on the CPU makes the forward pass fail."""
    from reproductions.dam_vp import Backbone
    from reproductions.dam_vp.method import Frozen, Prompted

    net = Backbone(16, 10).eval()
    for active, n_out in ((None, 10), (torch.tensor([1, 3]), 2)):
        model = Prompted(PadPrompts(2, 1, 16, 16, 2), Frozen(net, active)).to("meta")
        assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
        x, r = torch.zeros(4, 1, 16, 16, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
        assert model(x, r).shape == (4, n_out)


# --------------------------------------------------------------------------- full-scale path (issue 17)

def _full_cfg(*overrides):
    return config.resolve(registry.get("dam_vp"), "full", list(overrides))


def _dry_ctx(tmp_path, monkeypatch):
    from suite.context import RunContext

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "no-data").mkdir(exist_ok=True)
    return RunContext(scale="full", seed=0, device="cpu", run_dir=tmp_path / "run", data_root=tmp_path / "no-data",
                      dry_run=True)


def test_full_inputs_are_imagenet_normalised_before_the_prompt():
    """Issue 17.1: at full, each batch is resized (shorter side 256), centre-cropped to 224 and normalised with the
    ImageNet mean/std (official data_utils/transforms.py for IN-1k backbones), and the prompt is added after that,
    in normalised space (official adapter.py adds the prompter to the loader's normalised tensor)."""
    import torch.nn.functional as F

    from reproductions.dam_vp.images import IMAGENET_MEAN, IMAGENET_STD, InputTransform
    from reproductions.dam_vp.method import Prompted

    cfg = _full_cfg()
    assert (cfg.norm, cfg.resize, cfg.image_size) == ("imagenet", 256, 224)
    pre = InputTransform(cfg.image_size, cfg.resize, cfg.norm)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    up = F.interpolate(x.float() / 255, size=(256, 256), mode="bilinear", align_corners=False)[..., 16:240, 16:240]
    assert torch.allclose(pre(x), (up - mean) / std, atol=1e-5)
    grey = (torch.tensor(IMAGENET_MEAN) * 255).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert pre(grey.float() / 255).abs().max() < 1e-5  # the ImageNet mean colour maps to 0

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, z):
            seen.append(z)
            return z.flatten(1)[:, :4]

    p = PadPrompts(1, 3, 224, 224, cfg.pad, generator=torch.Generator().manual_seed(0))
    Prompted(p, Spy(), pre)(x, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(seen[0], pre(x) + p.assemble()[0], atol=1e-5)


def test_full_target_stays_stored_and_features_stream_per_batch(tmp_path, monkeypatch):
    """Issue 17.2: the target split is kept as stored (CIFAR uint8 at 32 px, file datasets as paths), never as a
    224 px float copy; features are computed chunk by chunk on the run's device, each chunk resized there."""
    from reproductions.dam_vp import _batched, _target_tasks
    from reproductions.dam_vp.images import FileImages, InputTransform

    ctx = _dry_ctx(tmp_path, monkeypatch)
    cfg = _full_cfg()
    tr, va, te, n_cls, ref = _target_tasks(cfg, ctx)
    assert tr.x.dtype == torch.uint8 and tr.x.shape[1:] == (3, 32, 32) and n_cls <= 100
    assert ref.name.endswith("-fixture") and ref.provenance == "stand-in"
    pre, shapes = InputTransform(224, 256, "imagenet"), []

    def feats(x):
        shapes.append(tuple(x.shape))
        z = pre(x)
        assert z.shape[1:] == (3, 224, 224)
        return z.mean((2, 3))

    u = _batched(feats, tr.x, device=torch.device("cpu"), bs=7)
    assert len(u) == len(tr.y) and all(s[0] <= 7 and s[1:] == (3, 32, 32) for s in shapes)
    tr, *_ = _target_tasks(_full_cfg("data=dtd"), ctx)  # a file dataset: decoded per chunk
    assert isinstance(tr.x, FileImages)
    shapes.clear()
    _batched(feats, tr.x, device=torch.device("cpu"), bs=2)
    assert len(shapes) == -(-len(tr.y) // 2) and all(s[0] <= 2 and s[1:] == (3, 224, 224) for s in shapes)


def test_full_meta_trains_on_the_six_source_datasets(tmp_path, monkeypatch):
    """Issue 17.3: with no meta-prompt file, the full path reads the paper's meta-training sources (official
    META_TRAIN_DATASETS) in their published formats — here their dry-run fixtures — and meta-trains on them."""
    from suite import runner
    from reproductions.dam_vp.images import SOURCES

    cfg = _full_cfg()
    assert cfg.meta_prompt_file == "" and cfg.meta_sources == SOURCES and cfg.meta_recipe == "official"
    assert set(SOURCES) == {"sun397", "stl10", "fru92", "veg200", "oxford-iiit-pets", "eurosat"}
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    rec = runner.execute(runner.RunSpec("dam_vp", "full", 0), tmp_path / "res", device="cpu", dry_run=True,
                         data_root=tmp_path)
    assert rec["status"] == "dry-run"
    written = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache" / "fixtures").iterdir()}
    assert set(SOURCES) <= written, written
    # a meta-prompt file stays an option: then no source is read
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache2"))
    runner.execute(runner.RunSpec("dam_vp", "full", 0, overrides=("meta_prompt_file=dam_vp/m.pt",)),
                   tmp_path / "res", device="cpu", dry_run=True, data_root=tmp_path)
    written = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache2" / "fixtures").iterdir()}
    assert not set(SOURCES) & written and "dam-vp-meta-prompt" in written


def test_official_reptile_recipe(monkeypatch, tmp_path):
    """The official meta step (meta-training/meta_hf.py): per source one batch, ``update_step`` Adam steps on it
    at the cosine-decayed lr, then θ ← θ − β·Σ_{tasks,clusters}(θ − φ)/Σ M."""
    import reproductions.dam_vp as dv
    from reproductions.dam_vp import Backbone, meta_lr, reptile
    from reproductions.dam_vp.data import Split
    from reproductions.dam_vp.method import Frozen
    from suite.context import RunContext

    g = torch.Generator().manual_seed(0)
    sources = {n: Split(torch.rand(12, 1, 16, 16, generator=g), torch.randint(0, 10, (12,), generator=g),
                        torch.full((12,), -1)) for n in ("a", "b")}
    cfg = config.resolve(registry.get("dam_vp"), "smoke", ["meta_recipe=official", "meta_epochs=2",
                                                           "meta_steps_per_epoch=0", "meta_batch=5",
                                                           "update_step=3", "update_lr=0.5", "meta_step=0.5",
                                                           "threshold=1e9"])
    calls = []

    def fake_fit(model, loss, data, tc, **kw):  # inner loop: record, then move each copy by +1 / +3
        b0, b1 = data(0), data(1)
        calls.append((tc.optimizer, tc.steps, tc.lr, b0 is b1, len(b0[0])))
        with torch.no_grad():
            for t in model.prompts.parameters():
                t.add_(1.0 if len(calls) % 2 else 3.0)

    monkeypatch.setattr(dv, "fit", fake_fit)
    ctx = RunContext(scale="smoke", seed=0, device="cpu", run_dir=tmp_path)
    meta = PadPrompts(1, 1, 16, 16, 2, generator=torch.Generator().manual_seed(1))
    theta = prompt_vector(meta)
    out = reptile(meta, sources, Frozen(Backbone(16).eval()), torch.nn.Identity(), cfg, ctx)
    steps = 2 * 3  # 2 epochs x ceil(12 / 5) batches (the smallest source)
    assert len(calls) == 2 * steps  # one inner fit per source per meta step
    assert all(c[0] == "adam" and c[1] == 3 and c[3] and c[4] <= 5 for c in calls)  # one batch, reused
    assert [c[2] for c in calls[::2]] == pytest.approx([meta_lr(s, steps, 0.5) for s in range(1, steps + 1)])
    # M = 1 per source (huge threshold): mean φ − θ = (1 + 3) / 2 = 2 every step → θ + 0.5·2 per step
    assert torch.allclose(prompt_vector(out), theta + steps * 0.5 * 2.0, atol=1e-5)


def test_head_missing_reads_feature_dims_not_the_classifier():
    """Official head-freezing/missing: ``discard_classifier`` + ``forward_features``; the logits are the active
    dims of the features, never of the ImageNet classifier's outputs."""
    from reproductions.dam_vp import Backbone
    from reproductions.dam_vp.method import Frozen

    net = Backbone(16, 10).eval()
    x = torch.rand(3, 1, 16, 16)
    act = torch.tensor([5, 1, 40])
    assert torch.equal(Frozen(net, act)(x), net.features(x)[:, act])
    assert torch.equal(Frozen(net)(x), net(x))
    from reproductions.dam_vp.method import logit_dims  # class k = k-th smallest of the top-n (torch.unique)
    assert logit_dims(torch.tensor([5, 1, 40, 2]), 3).tolist() == [1, 5, 40]


def test_official_meta_prompt_checkpoint_loads(tmp_path):
    from reproductions.dam_vp import load_meta_prompt

    g = torch.Generator().manual_seed(0)
    sd = {"pad_up": torch.randn(1, 3, 30, 224, generator=g), "pad_down": torch.randn(1, 3, 30, 224, generator=g),
          "pad_left": torch.randn(1, 3, 164, 30, generator=g), "pad_right": torch.randn(1, 3, 164, 30, generator=g)}
    torch.save({"state_dict": sd, "epoch": 7}, tmp_path / "official.pth")
    meta = PadPrompts(1, 3, 224, 224, 30)
    load_meta_prompt(meta, tmp_path / "official.pth")
    assert torch.equal(meta.top, sd["pad_up"]) and torch.equal(meta.right, sd["pad_right"])
    with pytest.raises(ConfigError, match="pad prompt of width 20"):
        load_meta_prompt(PadPrompts(1, 3, 224, 224, 20), tmp_path / "official.pth")


WIRED = ("sun397", "stl10", "fru92", "veg200", "oxford-iiit-pets", "eurosat", "cub200", "nabirds", "oxford-flowers",
         "stanford-dogs", "stanford-cars", "fgvc-aircraft", "food101", "dtd", "svhn", "gtsrb")


def test_wired_datasets_are_the_papers():
    from reproductions.dam_vp.images import PUBLISHED, TARGETS

    assert set(PUBLISHED) == set(WIRED)
    assert set(TARGETS) == set(WIRED[6:]) | {"cifar-10", "cifar-100"}  # official TASK_ADAPT_DATASETS (VTAB apart)


@pytest.mark.parametrize("name", WIRED)
def test_published_loaders_read_their_fixture_format(name, tmp_path):
    """Issue 17.4: every wired dataset of the paper has a loader for its published layout and a fixture writer in
    that layout; the loader reads the fixture back (labels in range, images uint8 at the requested size)."""
    from reproductions.dam_vp.images import PUBLISHED, FileImages

    d = PUBLISHED[name]
    folder = tmp_path / d.subdir
    d.write(folder)
    parts, n_cls = d.read(folder, 24, 28)
    assert "train" in parts and (d.role == "source" or "test" in parts)
    for x, y in parts.values():
        assert len(x) == len(y) > 0 and int(y.min()) >= 0 and int(y.max()) < n_cls
        batch = x[torch.arange(2)]
        assert batch.dtype == torch.uint8 and batch.shape[:2] == (2, 3)
        if isinstance(x, FileImages):  # decoded: shorter side → 28, centre crop 24
            assert batch.shape[2:] == (24, 24)
        else:  # arrays stay at their native resolution
            assert batch.shape[2] == batch.shape[3] in (32, 96)


def test_published_formats_exactly(tmp_path):
    """STL-10's binary is column-major (a transposed image reads back upright); SVHN's label 10 is the digit 0."""
    import numpy as np
    from scipy.io import savemat

    from reproductions.dam_vp.images import PUBLISHED

    d = tmp_path
    img = np.arange(3 * 96 * 96, dtype=np.int64).reshape(3, 96, 96) % 251
    for s in ("train", "test"):
        img.astype(np.uint8).transpose(0, 2, 1).tofile(d / f"{s}_X.bin")  # stored column-major
        np.array([3], dtype=np.uint8).tofile(d / f"{s}_y.bin")
    parts, _ = PUBLISHED["stl10"].read(d, 96, 96)
    assert torch.equal(parts["train"][0][0], torch.from_numpy(img.astype(np.uint8))) and parts["train"][1][0] == 2
    x = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    x[0, 1, 2, 1] = 9
    for s in ("train", "test"):
        savemat(d / f"{s}_32x32.mat", {"X": x, "y": np.array([[10], [4]], dtype=np.uint8)})
    parts, _ = PUBLISHED["svhn"].read(d, 32, 32)
    assert parts["test"][1].tolist() == [0, 4] and parts["test"][0][1, 2, 0, 1] == 9


@pytest.mark.parametrize("data", ["cifar-10", "dtd", "svhn"])
def test_other_targets_build_the_full_pipeline(data, tmp_path, monkeypatch):
    from suite import runner

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    rec = runner.execute(runner.RunSpec("dam_vp", "full", 0, overrides=(f"data={data}", "meta_sources=[stl10]",
                                                                                 "workers=0")),
                         tmp_path / "res", device="cpu", dry_run=True, data_root=tmp_path)
    assert rec["status"] == "dry-run"


def test_full_config_errors():
    for bad, match in ((["data=imagenet"], "data='imagenet' is unknown"), (["meta_sources=[foo]"], "'foo' is unknown"),
                       (["meta_sources=[]"], "needs a meta-prompt"), (["norm=zca"], "one of")):
        with pytest.raises(ConfigError, match=match):
            _full_cfg(*bad)
    with pytest.raises(ConfigError, match="meta_sources are for data from disk"):
        config.resolve(registry.get("dam_vp"), "smoke", ["meta_sources=[stl10]"])
