"""gg_priors full scale: the authors' GPT-2 recipe (lm_task.py) — GPT-2's transposed Conv1D weights get their
true fans under GG / He / Xavier init, the corpus becomes 512-token blocks, the HF Trainer's weight-decay groups,
next-token accuracy, and the whole full path on the corpus fixture."""
from __future__ import annotations

import math

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError

from reproductions.gg_priors import gg
from reproductions.gg_priors.experiment import baseline_init_, init_model, make_task
from reproductions.gg_priors.lm_task import LMTask, blocks, decay_groups, train_tokenizer, write_fixture

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=64, n_layer=1, n_head=2))


def test_gg_init_reads_conv1d_fan_in_from_the_transposed_weight():
    """GPT-2's Conv1D stores (in, out): mlp.c_fc is (64, 256), mlp.c_proj (256, 64). Var = xi / fan_in: 1/64 and
    1/256 (reading shape[1] as fan_in would swap them)."""
    m = tiny_gpt2()
    gg.gg_init_(m, 1.0, 1.0, torch.Generator().manual_seed(0))
    mlp = m.transformer.h[0].mlp
    assert tuple(mlp.c_fc.weight.shape) == (64, 256)
    assert abs(float(mlp.c_fc.weight.double().var()) * 64 - 1) < 0.1
    assert abs(float(mlp.c_proj.weight.double().var()) * 256 - 1) < 0.1
    ln = m.transformer.h[0].ln_1
    assert torch.equal(ln.weight, torch.ones(64)) and torch.equal(ln.bias, torch.zeros(64))


def test_he_and_xavier_keep_layernorm_scales_and_use_conv1d_fan_in():
    m = baseline_init_(tiny_gpt2(), "he", 2.0, torch.Generator().manual_seed(0))
    mlp = m.transformer.h[0].mlp
    assert abs(float(mlp.c_fc.weight.double().var()) * 64 / 2 - 1) < 0.1      # He: 2 / fan_in (64)
    assert abs(float(mlp.c_proj.weight.double().var()) * 256 / 2 - 1) < 0.1   # 2 / 256
    assert torch.equal(m.transformer.ln_f.weight, torch.ones(64))              # not zeroed
    x = baseline_init_(tiny_gpt2(), "xavier", 2.0, torch.Generator().manual_seed(0))
    assert abs(float(x.transformer.h[0].mlp.c_fc.weight.double().var()) * (64 + 256) / 2 - 1) < 0.1
    assert torch.equal(x.transformer.h[0].ln_2.weight, torch.ones(64))


def test_blocks_concatenate_lines_and_drop_the_remainder_once():
    lines = ["a b c d", "", "e f", "g h i j k"]
    tok = train_tokenizer(lines, 100, 1)
    ids = [i for line in lines for i in tok.encode(line, add_special_tokens=False).ids]
    assert len(ids) == 11
    b = blocks(tok, lines, 4, "training")
    assert b.shape == (2, 4) and b.flatten().tolist() == ids[:8]
    with pytest.raises(ConfigError, match="fewer than one block"):
        blocks(tok, lines, 12, "training")


def test_tokenizer_has_the_recipe_specials_and_vocabulary_cap():
    lines = [" ".join(f"w{i}x{j}" for j in range(30)) for i in range(40)]
    tok = train_tokenizer(lines, 120, 2)
    assert [tok.token_to_id(s) for s in ("[PAD]", "[UNK]", "[BOS]", "[EOS]")] == [0, 1, 2, 3]
    assert tok.get_vocab_size() <= 120


def test_weight_decay_groups_skip_biases_and_layernorms_and_count_tied_weights_once():
    m = tiny_gpt2()
    decay, plain = decay_groups(m, 0.1)
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and ".ln_" not in names[id(p)] for p in decay["params"])
    assert any("ln_f" in names[id(p)] for p in plain["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(list(m.parameters()))
    assert sum(p is m.lm_head.weight for p in decay["params"]) == 1  # tied to wte: once


def test_next_token_accuracy_counts_shifted_targets(tmp_path):
    write_fixture(tmp_path / "gg_priors")
    cfg = config.resolve(registry.get("gg_priors"), "full", {"lm_dim": 32, "lm_layers": 1, "lm_heads": 2,
                                                              "lm_context": 64})
    task = LMTask(cfg, for_tests(data_root=tmp_path))
    assert task.ref.provenance == "paper" and task.train_blocks.shape[1] == 64

    class Oracle(torch.nn.Module):  # predicts every next token of the validation blocks
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            nxt = torch.roll(input_ids, -1, dims=1)
            return type("O", (), {"logits": torch.nn.functional.one_hot(nxt, 10_000).float() * 50})()

    acc, loss = task.scores(Oracle()).values()
    assert acc == 100.0 and loss < 1e-6
    untrained = init_model(task, cfg, for_tests(), "default", None)
    acc0, loss0 = task.scores(untrained).values()
    assert acc0 < 50 and abs(loss0 - math.log(task.tok.get_vocab_size())) < 1.0


def test_backslash_from_init_starts_from_the_plain_runs_initial_weights(tmp_path):
    write_fixture(tmp_path / "gg_priors")
    cfg = config.resolve(registry.get("gg_priors"), "full", {"lm_dim": 32, "lm_layers": 1, "lm_heads": 2,
                                                              "lm_context": 64})
    ctx = for_tests(data_root=tmp_path)
    task = make_task(cfg, ctx)
    a, b = init_model(task, cfg, ctx, "gg1", 1.0), init_model(task, cfg, ctx, "gg1", 1.0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = init_model(task, cfg, ctx, "default", None)
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)


def test_full_preset_is_the_gpt2_recipe_and_bad_heads_are_rejected():
    cfg = config.resolve(registry.get("gg_priors"), "full")
    assert (cfg.task, cfg.lm_context, cfg.lm_dim, cfg.lm_layers, cfg.lm_heads) == ("gpt2-text", 512, 256, 4, 4)
    assert (cfg.epochs, cfg.bs_epochs, cfg.ft_epochs, cfg.bs_from, cfg.lr) == (8, 3, 8, "init", 3e-4)
    with pytest.raises(ConfigError, match="multiple of lm_heads"):
        config.resolve(registry.get("gg_priors"), "full", {"lm_heads": 3})


def test_full_path_runs_on_the_corpus_fixture(tmp_path):
    """Every metric the full-scale claims read comes out of the GPT-2 task (tiny widths, one epoch)."""
    from reproductions.gg_priors import CLAIMS, run

    write_fixture(tmp_path / "gg_priors")
    over = {"lm_dim": 32, "lm_layers": 1, "lm_heads": 2, "lm_context": 64, "epochs": 1, "bs_epochs": 1,
            "ft_epochs": 1, "n_draws": 20_000, "ds_adj_minnum": 50, "ds_step_log2": 8, "nus": (1.0, 2.0)}
    cfg = config.resolve(registry.get("gg_priors"), "full", over)
    out = run(cfg, for_tests(data_root=tmp_path, seed=0))
    for c in CLAIMS:
        if "full" in c.scales:
            assert c.metric in out.metrics and (not isinstance(c.ref, str) or c.ref in out.metrics), c.id
    assert out.dataset.name == "gg-priors-gpt2-corpus" and "val_loss_gg1" in out.metrics
    assert 0 <= out.metrics["acc_backslash_rf8"] <= 100
