"""The simulated second device catches what CUDA would reject, and lets through what CUDA allows."""
import pytest
import torch
import torch.nn as nn

from suite.devicecheck import DEVICE, DeviceCheck, DeviceMixError, on_device
from suite.train import TrainConfig, fit


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 3))


def test_a_correct_training_loop_runs_and_gives_the_plain_cpu_numbers():
    x, y = torch.randn(64, 8, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3
    loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    tc = TrainConfig(steps=6, batch_size=16, lr=1e-2, optimizer="adam", grad_clip=1.0)
    plain = _net()
    fit(plain, loss, (x, y), tc, device="cpu")
    with DeviceCheck():
        net = _net()
        fit(net, loss, (x, y), tc, device=DEVICE)
        assert all(on_device(p) for p in net.parameters()) and all(on_device(b) for b in net.buffers())
        with torch.no_grad():
            out = net.eval()(x.to(DEVICE))
        assert out.device == DEVICE and on_device(out)
        pred = out.argmax(1).cpu().numpy()  # back on the host first: allowed
    assert torch.equal(torch.as_tensor(pred), plain.eval()(x).argmax(1))


def test_what_cuda_rejects_raises():
    with DeviceCheck():
        net = _net().to(DEVICE).eval()
        x = torch.randn(4, 8)
        with pytest.raises(DeviceMixError, match="host tensor of shape"):
            net(x)  # a batch never moved to the device
        out = net(x.to(DEVICE))
        with pytest.raises(DeviceMixError, match="numpy"):
            out.numpy()
        with pytest.raises(DeviceMixError):
            torch.cat([out, torch.zeros(4, 3)])


def test_what_cuda_allows_passes():
    import copy

    with DeviceCheck():
        net = copy.deepcopy(_net().to(DEVICE))  # a copy of a device model stays on the device
        assert all(on_device(p) for p in net.parameters()) and all(on_device(b) for b in net.buffers())
        net.eval()(torch.randn(2, 8).to(DEVICE))
        lin = nn.Linear(3, 2).to(device=DEVICE, dtype=torch.float32)  # the keyword form too
        assert on_device(lin.weight) and lin.weight.device == DEVICE
        built = nn.Embedding(5, 3, device=lin.weight.device)  # a module built on the device
        assert on_device(built.weight) and on_device(built(torch.tensor([1, 2]).to(DEVICE)))
        a = torch.randn(5, 3).to(DEVICE)
        assert on_device(torch.zeros(2, device=a.device)) and on_device(torch.zeros_like(a))
        assert on_device(a * torch.tensor(2.0))  # a 0-dim host scalar
        assert on_device(a[torch.tensor([0, 2])])  # host indices into a device tensor
        host = torch.empty(5, 3)
        host.copy_(a)  # cross-device copy
        assert not on_device(host) and not on_device(a.cpu()) and not on_device(a.to("cpu"))
        assert on_device(a), "copying a device tensor to the host must leave the tensor itself on the device"
        assert float(a.sum()) == pytest.approx(float(host.sum()))
        assert isinstance(a.tolist(), list) and isinstance(a[0, 0].item(), float)


def test_torch_func_results_stay_on_the_device():
    from torch.func import grad, vmap

    def loss_one(w, xi, yi):
        return nn.functional.binary_cross_entropy_with_logits((xi * w).sum(), yi)

    with DeviceCheck():
        w, x, y = torch.randn(3).to(DEVICE), torch.randn(5, 3).to(DEVICE), torch.rand(5).to(DEVICE)
        g = vmap(grad(loss_one), in_dims=(None, 0, 0))(w, x, y)  # per-example gradients (Fishr)
        assert on_device(g) and on_device(torch.zeros(2, 3, device=g.device).index_add(0, torch.arange(2).to(DEVICE), g[:2]))


def test_a_checkpoint_saved_on_the_device_loads_back_to_it(tmp_path):
    with DeviceCheck():
        net = _net().to(DEVICE)
        torch.save(net.state_dict(), tmp_path / "ck.pt")
        state = torch.load(tmp_path / "ck.pt", map_location=DEVICE, weights_only=True)
        assert all(on_device(v) for v in state.values())
        _net().to(DEVICE).load_state_dict(state)
    assert set(torch.load(tmp_path / "ck.pt", weights_only=True)) == set(state)


def test_fit_resumes_from_a_checkpoint_on_the_device(tmp_path):
    """Until the fix, fit resumed with load_state(map_location=device), which put the saved RNG and generator
    states on the device, where torch.set_rng_state and Generator.set_state reject them."""
    x, y = torch.randn(32, 8), torch.arange(32) % 3
    loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    tc = TrainConfig(steps=4, batch_size=8, checkpoint_every=1)

    def interrupt(state):
        if state.step == 2:
            raise KeyboardInterrupt  # a preempted job: the checkpoint of step 2 stays

    with DeviceCheck():
        with pytest.raises(KeyboardInterrupt):
            fit(_net(), loss, (x, y), tc, device=DEVICE, checkpoint=tmp_path / "ck.pt", on_step=interrupt)
        res = fit(_net(), loss, (x, y), tc, device=DEVICE, checkpoint=tmp_path / "ck.pt")  # the resume
    assert res.resumed_from_step == 2 and res.step == 4


def test_cross_device_writes_and_shape_reads_pass_and_device_indices_into_host_raise():
    with DeviceCheck():
        host, dev = torch.zeros(4, 3), torch.ones(2, 3).to(DEVICE)
        host[2:] = dev  # a copy across devices
        assert float(host.sum()) == 6.0 and not on_device(host)
        assert on_device(torch.arange(6).to(DEVICE).view_as(host[:2]))
        with pytest.raises(DeviceMixError, match="indexes a host tensor"):
            host[torch.tensor([0, 1]).to(DEVICE)]
