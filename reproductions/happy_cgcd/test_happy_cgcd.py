"""happy_cgcd: spec §6 smoke assertions on hand-made inputs, stage splits, DINO key mapping, the teeth."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reproductions.happy_cgcd import run
from reproductions.happy_cgcd.backbone import dino_to_suite
from reproductions.happy_cgcd.method import (CosineHead, hap_loss, hap_probs, hardness, info_nce, memax,
                                             old_new_accuracy, select_new_centroids, shared_radius, soft_entropy,
                                             supcon)
from reproductions.happy_cgcd.stages import build_protocol, digit_view
from suite import config as suite_config, registry
from suite.context import for_tests
from suite.metrics.clustering import clustering_accuracy
from suite.models import ViT


def test_soft_entropy_zero_iff_balanced():
    total, parts = soft_entropy(torch.full((4,), 0.25), n_old=2)
    assert float(total) == pytest.approx(0.0, abs=1e-7)
    for p in ([0.4, 0.4, 0.1, 0.1], [0.5, 0.0, 0.25, 0.25], [0.25, 0.25, 0.4, 0.1]):
        assert float(soft_entropy(torch.tensor(p), n_old=2)[0]) > 1e-3
    # group term uses the summed marginals: P_o = 0.8, P_n = 0.2
    _, parts = soft_entropy(torch.tensor([0.4, 0.4, 0.1, 0.1]), n_old=2)
    assert float(parts.group) == pytest.approx(0.8 * math.log(0.8) + 0.2 * math.log(0.2) + math.log(2), rel=1e-6)
    assert float(parts.old) == pytest.approx(0.0, abs=1e-7) and float(parts.new) == pytest.approx(0.0, abs=1e-7)
    # N_t = 1: the within-new term is inactive (spec §6 note)
    _, parts = soft_entropy(torch.tensor([0.3, 0.2, 0.5]), n_old=2)
    assert float(parts.new) == 0.0 and float(parts.group) == pytest.approx(0.0, abs=1e-7)
    # memax (naive) is zero only for uniform over all K
    assert float(memax(torch.full((5,), 0.2))) == pytest.approx(0.0, abs=1e-7)
    assert float(memax(torch.tensor([0.3, 0.2, 0.5]))) > 0


def test_hap_probs_softmax_and_favour_hardest():
    protos = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.2]]), dim=1)
    sim = protos @ protos.T
    h = (sim.sum(1) - sim.diag()) / 3
    assert torch.allclose(hardness(protos), h, atol=1e-6)
    p = hap_probs(protos, 0.1)
    assert torch.allclose(p, torch.softmax(h / 0.1, 0), atol=1e-6)
    assert int(p.argmax()) in (0, 1)  # the two nearly identical prototypes are the hard ones
    assert torch.allclose(hap_probs(protos, uniform=True), torch.full((4,), 0.25))
    inv = hap_probs(protos, 0.1, inverted=True)  # the teeth of C3: the easiest prototypes most
    assert torch.allclose(inv, torch.softmax(-h / 0.1, 0), atol=1e-6) and int(inv.argmax()) in (2, 3)


def test_hap_pseudo_features_reach_the_head_normalised():
    """The official HAP feeds μ_c + r·ε (not re-normalised) to the head, whose forward L2-normalises it before
    the cosine layer: the loss is the CE of cosine logits / 0.1, whatever the pseudo-features' norm."""
    torch.manual_seed(0)
    head, protos = CosineHead(16, 4), F.normalize(torch.randn(4, 16), dim=1)
    labels, probs = torch.arange(4), torch.full((4,), 0.25)
    torch.manual_seed(1)
    got = hap_loss(head, protos, labels, 0.5, 64, probs)
    torch.manual_seed(1)
    idx = torch.multinomial(probs, 64, replacement=True)
    feats = protos[idx] + 0.5 * torch.randn(64, 16)
    want = F.cross_entropy(F.normalize(feats, dim=1) @ F.normalize(head.weight, dim=1).T / 0.1, labels[idx])
    assert float(feats.norm(dim=1).mean()) > 2.0  # far from unit norm: skipping the normalisation would show
    assert torch.allclose(got, want, atol=1e-6)


def test_init_selects_lowest_max_logit():
    head = CosineHead(3, 2)
    head.weight.data = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    cents = torch.tensor([[1.0, 0.1, 0], [0.1, 1.0, 0], [0.0, 0.1, 1.0], [0.7, 0.7, 0.0]])
    assert select_new_centroids(cents, head, 1).tolist() == [2]
    assert sorted(select_new_centroids(cents, head, 2).tolist()) == [2, 3]
    assert select_new_centroids(cents, head, 1, largest=True).tolist() != [2]
    head.grow(cents[[2]])
    assert head.n_classes == 3 and torch.allclose(head.weight[2], F.normalize(cents[2], dim=0))


def test_hungarian_and_single_assignment():
    y = np.array([0, 0, 1, 1, 2, 2, 3])
    perm = np.array([2, 3, 0, 1])[y]
    assert clustering_accuracy(y, perm) == 1.0
    assert old_new_accuracy(y, perm, {0, 1}) == {"all": 1.0, "old": 1.0, "new": 1.0}
    # one map on All: the cluster shared by old class 0 and new class 2 goes to the bigger class
    y = np.array([0, 0, 0, 2, 2, 1, 1])
    pred = np.array([5, 5, 5, 5, 5, 6, 6])
    acc = old_new_accuracy(y, pred, {0, 1})
    assert acc["all"] == pytest.approx(5 / 7) and acc["old"] == 1.0 and acc["new"] == 0.0


def test_contrastive_losses_prefer_aligned_views():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    other = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    assert info_nce([z, z], 0.1) < info_nce([z, other], 0.1)
    y = torch.arange(4).repeat_interleave(4)
    clustered = F.normalize(torch.eye(8)[y] + 0.01 * torch.randn(16, 8, generator=g), dim=1)
    assert supcon([clustered, clustered], y, 0.1) < supcon([z, other], y, 0.1)
    assert shared_radius(clustered, y) < shared_radius(z, y)


def test_protocol_splits():
    x = torch.arange(200).float()[:, None]
    y = torch.arange(10).repeat_interleave(20)
    p = build_protocol(x, y, x, y, n_classes=10, n_old=5, n_stages=5, n_new=1, labeled_frac=0.8, per_new=0,
                       per_old=3, per_disc=2, seed=0)
    s0 = p.stages[0]
    assert len(s0.y) == 5 * 16 and set(s0.y.tolist()) == set(range(5))
    for t, st in enumerate(p.stages[1:], 1):
        counts = torch.bincount(st.y, minlength=10)
        assert counts[4 + t] == 20 and (counts[:5] == 3).all() and (counts[5:4 + t] == 2).all()
        assert counts[5 + t:].sum() == 0 and st.seen == list(range(5 + t))
    # stage 0 labels are consistent with the class order; original class of head index i is order[i]
    orig = x[:, 0].long() // 20
    assert torch.equal(torch.as_tensor(p.order)[s0.y], orig[s0.x[:, 0].long()])
    v = digit_view(torch.rand(4, 1, 8, 8))
    assert v.shape == (4, 1, 8, 8)


def test_dino_keys_map_onto_suite_vit():
    vit = ViT(image_size=32, patch_size=16, num_classes=1, dim=32, depth=2, heads=2)
    inv = {"patch.weight": "patch_embed.proj.weight", "patch.bias": "patch_embed.proj.bias", "cls": "cls_token",
           "pos": "pos_embed"}
    dino = {inv.get(k, k): v.clone() for k, v in vit.state_dict().items() if not k.startswith("head.")}
    mapped = dino_to_suite({f"module.backbone.{k}": v for k, v in dino.items()})
    other = ViT(image_size=32, patch_size=16, num_classes=1, dim=32, depth=2, heads=2)
    missing, unexpected = other.load_state_dict(mapped, strict=False)
    assert not unexpected and all(m.startswith("head.") for m in missing)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(other.features(x), vit.features(x))


def test_smoke_protocol_and_teeth(tmp_path):
    """Smoke claims hold through ``run``; the broken init (most known-like centroids) fails init-picks-least-known."""
    r = registry.get("happy_cgcd")
    torch.set_num_threads(1)
    verdicts = {}
    for variant in ("paper", "init_largest"):
        cfg = suite_config.resolve(r, "smoke", {"variant": variant, "stage0_epochs": 3, "stage_epochs": 2})
        torch.manual_seed(0)
        out = run(cfg, for_tests("smoke", 0, tmp=tmp_path / variant))
        verdicts[variant] = {c.id: c.check(out.metrics, "smoke")["verdict"] for c in r.claims}
    assert all(v in ("holds", "not-expected") for v in verdicts["paper"].values()), verdicts["paper"]
    assert verdicts["init_largest"]["init-picks-least-known"] == "fails"


def test_paper_claims_name_teeth():
    """Every paper claim names a broken variant of the config (REPRODUCTION.md §5); every claim has a kind."""
    from suite import teeth

    r = registry.get("happy_cgcd")
    assert all(c.kind in ("paper", "check") for c in r.claims)
    assert all(c.teeth for c in r.claims if c.kind == "paper")
    assert teeth.check_declared(r) == []


def test_tinyimagenet_streams_from_disk_in_the_in_memory_order(tmp_path, monkeypatch):
    """Issue 16: the full-scale TinyImageNet path reads batches from a memory map; its stages, training batches
    and encoding batches hold the rows the in-memory loader gives (encoding in the same order)."""
    import tracemalloc

    import numpy as np

    from reproductions.happy_cgcd import streaming as S
    from suite.context import for_tests
    from suite.data import tinyimagenet

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    root = tinyimagenet.write_fixture(tmp_path / "data" / tinyimagenet.SUBDIR, n_classes=6, n_train=10, n_val=3)
    ctx = for_tests("full", 0, data_root=tmp_path / "data")
    mem, disk = tinyimagenet.load(root, cache=False), S.tiny_splits(ctx)
    assert disk["train"].ref.provenance == "paper"
    for s in ("train", "val"):
        assert isinstance(disk[s].x, np.memmap) and torch.equal(disk[s].y, mem[s].y)
        assert torch.equal(torch.cat(list(S.batches(disk[s], 7, "cpu"))), mem[s].x)
    kw = dict(n_classes=6, n_old=2, n_stages=2, n_new=2, labeled_frac=0.8, per_new=0, per_old=3, per_disc=2, seed=0)
    pm = build_protocol(mem["train"].x, mem["train"].y, mem["val"].x, mem["val"].y, **kw)
    pd = build_protocol(disk["train"], disk["train"].y, disk["val"], disk["val"].y, **kw)
    assert torch.equal(torch.cat(list(S.batches(pd.x_test, 5, "cpu"))), pm.x_test)
    for a, b in zip(pm.stages, pd.stages):
        assert isinstance(b.x, S.DiskSplit) and torch.equal(a.y, b.y) and torch.equal(b.x.labels, b.y)
        # shuffled training batches read from disk: full batches of distinct rows of the stage, with their labels
        # (the last partial batch is dropped, as the official loaders do)
        got = list(S.fit_data(b.x, b.y, 4, ctx))
        xs, ys = torch.cat([g[0] for g in got]), torch.cat([g[1] for g in got])
        assert len(got) == len(a.y) // 4 and all(len(g[0]) == 4 for g in got)
        left = a.y.tolist()
        for label in ys.tolist():
            left.remove(label)  # raises if a label is drawn more often than the stage holds it
        rows = {bytes(r.numpy().tobytes()) for r in a.x}
        assert all(bytes(r.numpy().tobytes()) in rows for r in xs)
    split = disk["train"]
    tracemalloc.start()
    n = sum(len(b) for b in S.batches(split, 4, "cpu"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == len(split) and peak < split.x.nbytes / 4, f"read peak {peak} of a {split.x.nbytes}-byte split"


def test_dino_fixture_has_the_published_keys_and_loads(tmp_path):
    from reproductions.happy_cgcd.backbone import ViTFeatures, load_dino, write_dino_fixture

    write_dino_fixture(tmp_path)
    path = tmp_path / "dino_vitbase16_pretrain.pth"
    assert path.stat().st_size < 20e6
    state = torch.load(path, weights_only=True)
    assert state["pos_embed"].shape == (1, 197, 768) and "patch_embed.proj.weight" in state
    assert "blocks.11.attn.qkv.weight" in state and "cls_token" in state
    m = ViTFeatures(32)
    load_dino(m, path)  # interpolates the 14x14 positional grid to 2x2
    mine = m.vit.state_dict()
    assert torch.equal(mine["blocks.3.norm1.weight"], state["blocks.3.norm1.weight"])
    assert torch.equal(mine["patch.weight"], state["patch_embed.proj.weight"]) and mine["pos"].shape == (1, 5, 768)


def test_cifar100_fixture_is_the_published_format_with_every_class(tmp_path, monkeypatch):
    """The full path's CIFAR-100 fixture (dry run / rehearsal): read by the catalog's loader, every class present,
    labelled a fixture; with the data under the data root the same function reads it with the loader's ref."""
    import pickle

    from reproductions.happy_cgcd import cifar100_splits
    from reproductions.happy_cgcd.fixtures import write_cifar100_fixture
    from suite.data import cifar
    from suite.errors import DataNotFoundError

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    sp = cifar100_splits(for_tests("full", 0, data_root=tmp_path / "empty", dry_run=True))
    for split, per in (("train", 3), ("test", 1)):
        assert torch.equal(torch.bincount(sp[split].y, minlength=100), torch.full((100,), per))
        assert sp[split].x.dtype == torch.uint8 and sp[split].x.shape == (100 * per, 3, 32, 32)
        assert sp[split].ref.name == "cifar-100-fixture" and sp[split].ref.provenance == "stand-in"
    root = write_cifar100_fixture(tmp_path / "data" / cifar.C100_DIR, per_class_train=1, per_class_test=1)
    with open(root / "train", "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    assert set(d) == {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}
    assert d[b"data"].shape == (100, 3072) and d[b"data"].dtype == np.uint8
    real = cifar100_splits(for_tests("full", 0, data_root=tmp_path / "data"))
    assert real["train"].ref.provenance == "paper" and len(real["train"].y) == 100
    with pytest.raises(DataNotFoundError, match="cifar-100-python"):
        cifar100_splits(for_tests("full", 0, data_root=tmp_path / "empty"))
