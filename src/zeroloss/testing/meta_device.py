"""GPU-correct without a GPU: a mode in which a tensor created without an explicit device lands on ``meta``.

The commonest GPU bug is a tensor created on the default device (the CPU) where the input's device was meant:
``torch.zeros(n)`` beside a CUDA input. On a CPU-only machine it goes unseen, because the default device *is* the
input's. Under :class:`DefaultDeviceIsMeta` the tensor factories called without ``device=`` (``torch.zeros``,
``torch.arange``, ``torch.randn``, … and ``torch.tensor`` of a non-scalar) create their tensors on the ``meta``
device instead, while the inputs stay on the CPU: any such tensor then meets a CPU tensor and fails loudly ("expected
all tensors to be on the same device", ".item() cannot be called on meta tensors"). Excepted, as harmless on a GPU:
``torch.as_tensor`` (which keeps its argument's device) and 0-dim scalars (``torch.tensor(2.0)``: torch moves them
to the other operand's device). Host-side bookkeeping must say ``device="cpu"`` explicitly to pass.

Examples:
    >>> import torch
    >>> x = torch.ones(3)
    >>> with DefaultDeviceIsMeta():
    ...     a = torch.zeros(3, device=x.device) + x   # explicit: fine
    ...     b = torch.zeros(3)                        # implicit: on meta
    >>> a.device.type, b.device.type
    ('cpu', 'meta')
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: The factories whose device defaults to the default device (the ``*_like`` and ``Tensor.new_*`` functions take
#: their argument's device and are left alone).
FACTORIES = frozenset({
    torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.linspace, torch.logspace, torch.eye,
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.tensor, torch.empty_strided, torch.tril_indices,
    torch.triu_indices, torch.normal,
})


def _is_scalar(data: Any) -> bool:
    if isinstance(data, (numbers.Number, bool)):
        return True
    if isinstance(data, torch.Tensor):
        return data.ndim == 0
    return getattr(data, "ndim", None) == 0


class DefaultDeviceIsMeta(TorchFunctionMode):
    """Tensor factories called without ``device=`` create ``meta`` tensors (see the module docstring).

    Attributes:
        redirected: the names of the factories that were redirected, in call order (for a report).
    """

    def __init__(self) -> None:
        super().__init__()
        self.redirected: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = dict(kwargs or {})
        if func in FACTORIES and kwargs.get("device") is None and kwargs.get("out") is None:
            if func is torch.normal and not all(isinstance(a, numbers.Number) for a in args[:2]):
                return func(*args, **kwargs)  # normal(mean_tensor, std_tensor): the tensors' device
            if func is torch.tensor and _is_scalar(args[0] if args else kwargs.get("data")):
                return func(*args, **kwargs)
            kwargs["device"] = "meta"
            self.redirected.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)
