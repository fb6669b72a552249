"""learngene_sws's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "learngene_sws", pinned=31, compared=20, every_field=True)


def test_full_aux_net_has_the_official_heads_and_expands_into_six_head_descendants():
    """Official Aux-S: 12 heads of width 32 (models.py); Des-S: 6 of width 64 (des_models.py). The learngene
    layers copy across (the qkv matrix does not depend on the head count) and the descendant runs."""
    import torch

    from suite import config, registry

    from .experiment import build_vit
    from .method import expand, share_stages

    cfg = config.resolve(registry.get("learngene_sws"), "full")
    cfg.patch, shape = 8, (3, 16, 16)   # the full widths and heads on a 16-pixel image: 4 patches
    aux = share_stages(build_vit(cfg, sum(cfg.stages), shape, 10, aux=True), tuple(cfg.stages))
    des = expand(aux, tuple(cfg.stages), 12, build_vit(cfg, 12, shape, 10))
    assert {b.attn.heads for b in aux.blocks} == {12} and {b.attn.heads for b in des.blocks} == {6}
    assert torch.equal(des.blocks[0].attn.qkv.weight, aux.blocks[0].attn.qkv.weight)
    assert des(torch.randn(2, *shape)).shape == (2, 10)
