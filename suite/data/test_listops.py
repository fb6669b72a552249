"""Procedural ListOps: grammar, evaluation, determinism, length bounds, tokenizer."""
import numpy as np
import pytest

from suite.data import listops


def test_evaluate_known_examples():
    assert listops.evaluate(listops.split_tokens("[MAX 2 9 [MIN 4 7 ] 0 ]")) == 9
    assert listops.evaluate(listops.split_tokens("( ( ( [SM 5 ) 8 ) ] )")) == 3
    assert listops.evaluate("[MED 1 9 4 ]".split()) == 4
    assert listops.evaluate("[MED 1 2 ]".split()) == int(np.median([1, 2]))
    with pytest.raises(ValueError):
        listops.evaluate("[MAX 2 9".split())


def test_generator_properties():
    cfg = listops.ListOpsConfig(n=200, max_depth=4, max_args=4, min_length=8, max_length=60, seed=3)
    ds = listops.procedural_listops(cfg)
    assert ds.ref.provenance == "stand-in" and ds.x.shape == (200, 60)
    assert (ds.extra["lengths"] >= 8).all() and (ds.extra["lengths"] <= 60).all()
    for src, y in zip(ds.extra["source"], ds.y.tolist()):
        toks = listops.split_tokens(src)
        assert listops.evaluate(toks) == y and set(toks) <= set(listops.VOCAB[1:])
    assert len(set(ds.y.tolist())) == 10
    again = listops.procedural_listops(cfg, cache=False)
    assert (again.x == ds.x).all() and again.extra["source"] == ds.extra["source"]
