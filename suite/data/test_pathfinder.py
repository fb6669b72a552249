"""Procedural Pathfinder: balanced labels, determinism, markers on path ends."""
import torch

from suite.data import pathfinder


def test_generate():
    cfg = pathfinder.PathfinderConfig(n=400, side=16, path_len=12, seed=5)
    img, y = pathfinder.generate(cfg)
    assert img.shape == (400, 16, 16) and 0.4 < y.float().mean() < 0.6
    assert torch.equal(img, pathfinder.generate(cfg)[0])
    assert ((img == 255).flatten(1).sum(1) >= 1).all() and ((img == 160).flatten(1).sum(1) > 3).all()
    ds = pathfinder.procedural_pathfinder(cfg)
    assert ds.x.shape == (400, 256) and ds.ref.name == "pathfinder-procedural"
    assert torch.equal(pathfinder.procedural_pathfinder(cfg).x, ds.x)  # cached copy
