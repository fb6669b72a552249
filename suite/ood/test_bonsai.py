"""Bonsai's pieces: pseudo-labels, groups, robust loss, resampling, averaged head, determinism."""
import torch

from suite.ood import EnvData
from suite.ood import bonsai as B
from suite.ood.dro import group_losses, robust_loss
from suite.ood.net import mlp_classifier


def _xy(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).float()


def test_pseudo_labels_are_hard_predictions():
    torch.manual_seed(0)
    x, y = _xy()
    m = mlp_classifier(5, (4,))
    c = B.correctness(m, x, y)
    assert torch.equal(B.pseudo_labels(y, c), (m(x).reshape(-1) > 0).float())


def test_groups_partition_each_round_and_robust_loss_is_max():
    torch.manual_seed(0)
    x, y = _xy()
    correct = torch.rand(2, 60) < 0.7
    masks = B.split_groups(correct)
    assert masks.shape == (4, 60) and int(masks.sum()) == 2 * 60
    m = mlp_classifier(5, (4,))
    assert torch.allclose(robust_loss(m, x, y, masks, 0.0), group_losses(m, x, y, masks).max())


def test_balanced_resample_halves_and_fallback():
    g = torch.Generator().manual_seed(0)
    correct = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]], dtype=torch.bool)
    idx = B.balanced_resample(correct, g, n=1000)
    agree = correct.all(0) | (~correct).all(0)
    assert int(agree[idx].sum()) == 500
    all_agree = torch.tensor([[1, 0, 1]], dtype=torch.bool)
    assert len(B.balanced_resample(all_agree, g, n=10)) == 10


def _run(seed=0):
    x, y = _xy()

    def make(out, off):
        with torch.random.fork_rng():
            torch.manual_seed(seed * 100 + off)
            return mlp_classifier(5, (8, 8), out)

    cfg = B.BonsaiConfig(rounds=3, erm_steps=5, dro_steps=10, synth_steps=10)
    return B.run_bonsai(make, x, y, cfg, gen=torch.Generator().manual_seed(seed))


def test_bonsai_end_to_end_shapes_head_mean_and_determinism():
    a, b = _run(), _run()
    assert a.correct.shape == (3, 60) and a.synth.head.out_features == 3
    assert torch.equal(a.correct, b.correct)
    assert torch.equal(a.synth.head.weight, b.synth.head.weight)
    init = B.downstream_init(a.synth)
    assert torch.allclose(init.head.weight, a.synth.head.weight.mean(0, keepdim=True))
    assert torch.allclose(init.head.bias, a.synth.head.bias.mean().reshape(1))
    cf = B.downstream_init(a.synth, freeze=True)
    assert not any(p.requires_grad for p in cf.featurizer.parameters())
    assert torch.equal(a.targets, a.pseudo)


def test_env_sampling_draws_from_every_env():
    d = EnvData.from_pairs([(torch.zeros(5, 2), torch.zeros(5)), (torch.ones(7, 2), torch.ones(7))])
    b = d.sample(4, torch.Generator().manual_seed(0))
    assert len(b) == 8 and torch.equal(torch.bincount(b.env), torch.tensor([4, 4]))


def test_group_weights_are_the_online_group_dro_update():
    """Sagawa et al. 2020 Alg. 1 / WILDS groupDRO: q <- q exp(eta L) / Z, objective q . L (not max_g L)."""
    from suite.ood.dro import GroupWeights

    w = GroupWeights(2, step_size=0.01)
    losses = torch.tensor([1.0, 3.0], requires_grad=True)
    obj = w.objective(losses)
    q = torch.tensor([0.5, 0.5]) * torch.exp(0.01 * losses.detach())
    q = q / q.sum()
    assert torch.allclose(w.q, q) and torch.allclose(obj, (q * losses).sum())
    assert float(obj.detach()) < 2.1  # a hard max would be 3
    obj.backward()
    assert torch.allclose(losses.grad, q)  # q is a constant of the step
    w.objective(torch.tensor([1.0, 3.0]))  # weights accumulate over steps
    assert float(w.q[1]) > float(q[1])
    assert set(w.state_dict()) == {"q"}  # checkpointed with the model (fit's stateful)


def test_epoch_select_keeps_each_scores_first_best_epoch():
    """Official Camelyon17 (src/analysis_earlystop.py): per validation split, np.argmax over the epochs (the first
    maximum); the round continues with the first score's epoch: its weights and its right / wrong groups."""
    torch.manual_seed(0)
    x, y = _xy()
    cfg = B.BonsaiConfig(rounds=2, erm_steps=12, dro_steps=12, lr=0.1, optimizer="sgd", batch_size=10)
    script = {"a": [0.2, 0.7, 0.5, 0.7], "b": [0.9, 0.1, 0.3, 0.95]}  # 4 evaluations a round: steps 3, 6, 9, 12
    calls, snaps = {"a": 0, "b": 0}, {}

    def score(key):
        def f(m):
            i = calls[key] % 4
            calls[key] += 1
            snaps[(key, calls[key] - 1)] = [p.detach().clone() for p in m.parameters()]
            return script[key][i]
        return f

    sel = B.EpochSelect(3, {"a": score("a"), "b": score("b")})
    torch.manual_seed(0)
    found = B.discover(lambda out, k: mlp_classifier(5, (4,), out), x, y, cfg, select=sel)
    assert len(found.kept) == 2 and calls == {"a": 8, "b": 8}
    for r, model in enumerate(found.models):
        kept = found.kept[r]
        assert (kept["a"].step, kept["a"].score, kept["b"].step, kept["b"].score) == (6, 0.7, 12, 0.95)
        for got, want in ((model, snaps[("a", 4 * r + 1)]), (kept["a"].model, snaps[("a", 4 * r + 1)]),
                          (kept["b"].model, snaps[("b", 4 * r + 3)])):
            assert all(torch.equal(p, q) for p, q in zip(got.parameters(), want))
        assert torch.equal(found.correct[r], B.correctness(kept["a"].model, x, y))
    # without select: the last step; the evaluations did not perturb the training (round 0, same seed)
    torch.manual_seed(0)
    last = B.discover(lambda out, k: mlp_classifier(5, (4,), out), x, y, cfg)
    assert last.kept == [] and all(torch.equal(p, q) for p, q in zip(last.models[0].parameters(), snaps[("b", 3)]))


def test_epoch_select_resumed_round_keeps_the_best_epoch_before_the_interruption(tmp_path):
    """A Camelyon17 round checkpoints every epoch; a job requeued mid-round must still keep the best epoch seen
    before the interruption (the best so far travels in fit's checkpoint as stateful state) and draw the same
    minibatches after it (the draws' generator travels too): the kept weights equal an uninterrupted run's."""
    from suite.context import for_tests

    x, y = _xy()
    cfg = B.BonsaiConfig(rounds=1, erm_steps=12, lr=0.1, optimizer="sgd", batch_size=10, checkpoint_every=3)
    make = lambda out, k: mlp_classifier(5, (4,), out)  # noqa: E731

    class Preempted(Exception):
        pass

    def scripted(values):
        calls, snaps = [0], []

        def f(m):
            v = values[calls[0]]
            calls[0] += 1
            if v is None:
                raise Preempted  # the job is killed at the evaluation of step 9 (after its checkpoint)
            snaps.append([p.detach().clone() for p in m.parameters()])
            return v
        return f, snaps

    torch.manual_seed(0)
    f, ref_snaps = scripted([0.2, 0.7, 0.5, 0.6])  # evaluations at steps 3, 6, 9, 12
    g, ref_last = scripted([0.1, 0.2, 0.3, 0.9])  # a second score, best at the last step (after the resume)
    ref = B.discover(make, x, y, cfg, ctx=for_tests(tmp=tmp_path / "a"), select=B.EpochSelect(3, {"a": f, "b": g}))
    assert (ref.kept[0]["a"].step, ref.kept[0]["a"].score, ref.kept[0]["b"].step) == (6, 0.7, 12)

    f, _ = scripted([0.2, 0.7, None, 0.5, 0.6])
    g, _ = scripted([0.1, 0.2])
    torch.manual_seed(0)
    try:
        B.discover(make, x, y, cfg, ctx=for_tests(tmp=tmp_path / "b"), select=B.EpochSelect(3, {"a": f, "b": g}))
    except Preempted:
        pass
    f, _ = scripted([0.5, 0.6])  # the requeued job: step 9 is evaluated again, then step 12
    g, _ = scripted([0.3, 0.9])
    torch.manual_seed(123)  # another process: other initial weights, which the checkpoint replaces
    got = B.discover(make, x, y, cfg, ctx=for_tests(tmp=tmp_path / "b"), select=B.EpochSelect(3, {"a": f, "b": g}))
    assert (got.kept[0]["a"].step, got.kept[0]["a"].score, got.kept[0]["b"].step) == (6, 0.7, 12)
    for model, want in ((got.kept[0]["a"].model, ref_snaps[1]), (got.models[0], ref_snaps[1]),
                        (got.kept[0]["b"].model, ref_last[3])):  # the last: drawn after the resume
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), want))
    assert torch.equal(got.correct, ref.correct)
