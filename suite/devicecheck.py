"""Catch a tensor left on the host without a GPU (issue 16): a second device simulated on the CPU.

A full-scale path moves its model and batches to ``ctx.device``. On a CPU machine every tensor lives
on the CPU, so a batch that was never moved, a ``.numpy()`` on a device tensor or a test split fed
to the device model all run fine here and crash on the GPU hours later. Under :class:`DeviceCheck`
the run's device is ``cpu:1``: tensors created on or moved to it are marked as *device* tensors
(a Python attribute; marks spread through every op's outputs), and the mode raises
:class:`DeviceMixError` where CUDA would raise:

- an op mixing device tensors with host tensors that have dimensions (0-dim host scalars are
  allowed, as on CUDA; so are host index tensors in ``x[idx]`` and cross-device ``copy_``);
- ``.numpy()`` on a device tensor.

``.cpu()`` / ``.to("cpu")`` return host tensors; ``.device`` of a device tensor reads ``cpu:1``, so
``torch.zeros(n, device=x.device)`` lands on the device as it would on a GPU. Gradients of device
parameters are device tensors. It is a check, not a simulator: it costs a Python call per op, so it
runs on rehearsals (tiny budgets) only.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("cpu", 1)
_MARK = "_suite_on_device"


class DeviceMixError(RuntimeError):
    """What CUDA would raise: a device tensor met a host tensor."""


def on_device(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


def _mark(x: Any, value: bool = True) -> Any:
    if isinstance(x, torch.Tensor):
        try:
            setattr(x, _MARK, value)
        except (AttributeError, RuntimeError):
            pass
    return x


def _is_device(d: Any) -> bool:
    if d is None:
        return False
    try:
        d = torch.device(d)
    except (TypeError, RuntimeError):
        return False
    return d.type == "cpu" and d.index == 1


def _is_host(d: Any) -> bool:
    try:
        d = torch.device(d)
    except (TypeError, RuntimeError):
        return False
    return d.type == "cpu" and d.index in (None, 0)


def _target_device(func: Any, args: tuple, kwargs: dict) -> Any:
    """The device a ``.to``-like call or a factory asks for (None when it names none)."""
    if "device" in kwargs:
        return kwargs["device"]
    if getattr(func, "__name__", "") == "to":
        for a in args[1:]:
            if isinstance(a, (str, torch.device)):
                return a
            if isinstance(a, torch.Tensor):
                return DEVICE if on_device(a) else torch.device("cpu")
    return None


_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}  # host indices into a device tensor: fine
_SHAPE_OF_OTHER = {"view_as", "reshape_as", "expand_as"}  # read only the other tensor's shape
_ALLOWED_MIX = _INDEXING | _SHAPE_OF_OTHER | {"copy_", "_has_compatible_shallow_copy_type", "is_set_to"}
_TO_HOST = {"cpu", "numpy", "tolist", "item", "__float__", "__int__", "__bool__", "__index__", "__len__",
            "__repr__", "__format__", "__str__"}


def _like_inputs(fn: Any) -> Any:
    """``fn`` whose tensor outputs are marked as device tensors when any tensor input is one."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if any(on_device(t) for t in tree_flatten((args, kwargs))[0]):
            tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) else t, out)
        return out
    return wrapped


class DeviceCheck(TorchFunctionMode):
    """``with DeviceCheck(): run(cfg, ctx)`` with ``ctx.device = DEVICE``."""

    # nn.Parameter.__deepcopy__ builds the copy outside torch's function dispatch: carry the mark over
    # (copy.deepcopy of a model on the device is on the device)
    def __enter__(self) -> "DeviceCheck":
        self._deepcopy = orig = torch.nn.Parameter.__deepcopy__

        def deepcopy(param: torch.nn.Parameter, memo: dict) -> torch.nn.Parameter:
            return _mark(orig(param, memo), on_device(param))

        # under any torch function mode, nn.Module.to(device=...) parses the keyword to a device without
        # its index (cpu:1 -> cpu); pass it positionally, which keeps it
        self._module_to = module_to = torch.nn.Module.to

        def to(module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
            if "device" in kwargs:
                kwargs = dict(kwargs)
                args = (kwargs.pop("device"), *args)
            return module_to(module, *args, **kwargs)

        # torch.load(map_location=cpu:1) would tag the storages with an index no later load can restore:
        # load to the host, then mark what was loaded as device tensors
        self._load = load = torch.load

        def load_to(*args: Any, **kwargs: Any) -> Any:
            if _is_device(kwargs.get("map_location")):
                kwargs["map_location"] = torch.device("cpu")
                return tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) else t, load(*args, **kwargs))
            return load(*args, **kwargs)

        # nn.Parameter(t) makes a new Python object outside the dispatch too (modules built with device=...)
        self._param_new = param_new = torch.nn.Parameter.__new__

        def new(cls: type, data: Any = None, requires_grad: bool = True) -> torch.nn.Parameter:
            return _mark(param_new(cls, data, requires_grad), on_device(data))

        torch.nn.Parameter.__new__ = staticmethod(new)  # type: ignore[assignment]
        torch.nn.Parameter.__deepcopy__ = deepcopy  # type: ignore[method-assign]
        torch.nn.Module.to = to  # type: ignore[method-assign]
        torch.load = load_to  # type: ignore[assignment]
        # torch.func unwraps its results in C++, outside the dispatch: they live where their inputs did
        import torch._functorch.eager_transforms as ft_grad
        import torch._functorch.vmap as ft_vmap

        self._patched = [(ft_vmap, "_add_batch_dim"), (ft_vmap, "_remove_batch_dim"), (ft_grad, "_wrap_for_grad"),
                         (ft_grad, "_unwrap_for_grad"), (torch.autograd, "grad")]
        self._saved = [getattr(mod, attr) for mod, attr in self._patched]
        for (mod, attr), orig_fn in zip(self._patched, self._saved):
            setattr(mod, attr, _like_inputs(orig_fn))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        torch.nn.Parameter.__deepcopy__ = self._deepcopy  # type: ignore[method-assign]
        torch.nn.Parameter.__new__ = self._param_new  # type: ignore[assignment]
        torch.nn.Module.to = self._module_to  # type: ignore[method-assign]
        torch.load = self._load  # type: ignore[assignment]
        for (mod, attr), orig_fn in zip(self._patched, self._saved):
            setattr(mod, attr, orig_fn)
        super().__exit__(*exc)


    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(getattr(func, "__self__", None), "__name__", "")
        if name == "__get__" and owner in ("device", "grad", "data"):
            out = func(*args, **kwargs)
            if owner == "device":
                return DEVICE if on_device(args[0]) else out
            return _mark(out) if on_device(args[0]) and out is not None else out
        if name == "__set__" and owner == "data":  # param.data = moved: the param moved with it
            out = func(*args, **kwargs)
            _mark(args[0], on_device(args[1]))
            return out
        if name == "numpy" and on_device(args[0]):
            raise DeviceMixError("`.numpy()` on a device tensor (CUDA cannot): call `.cpu()` first")
        if name in _TO_HOST:
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and args and out is args[0]:
                out = out.view_as(out)  # .cpu() returned self: unmark a new object, not the device tensor
            return tree_map(lambda t: _mark(t, False) if isinstance(t, torch.Tensor) else t, out)
        target = _target_device(func, args, kwargs)
        if target is not None:
            kw = dict(kwargs)
            if "device" in kw and _is_device(kw["device"]):
                kw["device"] = torch.device("cpu")
            a = tuple(torch.device("cpu") if _is_device(x) and i else x for i, x in enumerate(args))
            out = func(*a, **kw)
            if _is_device(target) or _is_host(target):
                flag = _is_device(target)
                if isinstance(out, torch.Tensor) and args and out is args[0] and on_device(out) != flag:
                    out = out.view_as(out)  # .to() returned self: a new object carries the new mark
                return tree_map(lambda t: _mark(t, flag) if isinstance(t, torch.Tensor) else t, out)
            return out
        # deepcopy's memo dict holds every tensor copied so far: scanning it made a model's copy quadratic
        flat, _ = tree_flatten((args[:1] if name == "__deepcopy__" else args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        dev = [t for t in tensors if on_device(t)]
        if dev and name not in _ALLOWED_MIX:
            host = [t for t in tensors if not on_device(t) and t.dim() > 0]
            if host:
                raise DeviceMixError(
                    f"`{name or func}` mixes a device tensor with a host tensor of shape {tuple(host[0].shape)} "
                    f"(CUDA raises here): move it with `.to(device)`")
        if name in _INDEXING and len(args) > 1 and not on_device(args[0]):
            # a host tensor indexed by device indices (the value written by __setitem__ may live anywhere)
            if any(on_device(t) for t in tree_flatten(args[1])[0]):
                raise DeviceMixError(f"`{name}` indexes a host tensor with a device tensor (CUDA raises here)")
        out = func(*args, **kwargs)
        if name in _ALLOWED_MIX:  # the result lives where the indexed / written / reshaped tensor lives
            dev = dev if on_device(args[0]) else []
        if dev:
            tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) else t, out)
        return out
