"""ColoredMNIST / ColoredDigits: the IRM construction's noise and colour rates per environment."""
import torch

from suite.data import colored, mnist


def test_colorize_rates_large_sample():
    n = 200_000
    g = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 10, (n,), generator=g)
    images = torch.rand(n, 3, 3, generator=g)
    for e in (0.1, 0.2, 0.9):
        x, y, c = colored.colorize(images, digits, e, g)
        noise = (y.long() != (digits < 5).long()).float().mean().item()
        flip = (c != y.long()).float().mean().item()
        assert abs(noise - 0.25) < 0.005 and abs(flip - e) < 0.005
        assert torch.equal(x[torch.arange(n), c], images) and (x[torch.arange(n), 1 - c] == 0).all()


def test_colored_mnist_envs(tmp_path):
    mnist.write_fixture(tmp_path, n_train=120, n_test=10)
    envs = colored.colored_mnist(tmp_path, seed=1)
    assert sorted(envs) == ["test_0.9", "train_0.1", "train_0.2"]
    assert envs["train_0.1"].x.shape == (50, 2, 14, 14) and len(envs["test_0.9"]) == 20
    assert envs["train_0.1"].ref.provenance == "paper-subset"  # 120 images: fewer than MNIST's 60,000
    # same seed -> same data; image content is the downsampled MNIST pixel / 255
    again = colored.colored_mnist(tmp_path, seed=1)
    assert torch.equal(envs["train_0.2"].x, again["train_0.2"].x)
    test = envs["test_0.9"]
    src = mnist.load(tmp_path)["train"].x[100:, 0, ::2, ::2].float() / 255
    assert torch.allclose(test.x.sum(1), src)


def test_colored_digits_standin():
    envs = colored.colored_digits(seed=0)
    assert [len(envs[k]) for k in ("train_0.1", "train_0.2", "test_0.9", "test_0.1", "test_0.5")] == [600, 600, 597, 597, 597]
    assert envs["train_0.1"].x.shape[1:] == (2, 8, 8) and envs["test_0.5"].ref.provenance == "stand-in"
    flips = {k: (v.extra["color"] != v.y.long()).float().mean().item() for k, v in envs.items()}
    assert flips["train_0.1"] < flips["train_0.2"] < flips["test_0.5"] < flips["test_0.9"]
