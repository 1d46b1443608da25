"""The standard random laws of :class:`~zeroloss.nets.FeedForward`'s dense maps, drawn with the member generators.

These are the laws a FeedForward can be built with (``FeedForward(..., init="lecun")``);
:mod:`zeroloss.papers.chatterjee2022.init` adds
Chatterjee's data-dependent ``positive`` initialisation on top and keeps the registry of all of them. This module
imports nothing from the net (it reads ``fan_ins``, ``depth``, ``bias``, ``output_bias`` and the parameters), so the
net can use it without an import cycle.

Every law writes the parameters in place, member by member: member k draws from its own CPU generator seeded
``seed + k`` (float64 draws, then cast), so member k equals the single-member net drawn with seed + k. PyTorch's
``nn.init`` is never called. Laws (fan_in / fan_out of each dense map; v has fan_out 1):

- ``gaussian``: every weight N(0, 1), biases 0 (Du et al.'s law; docs/theory.md §1.2).
- ``kaiming`` (He et al. 2015, normal, fan-in, gain √2): W ~ N(0, 2/fan_in), biases 0.
- ``xavier`` (Glorot & Bengio 2010, normal): W ~ N(0, 2/(fan_in + fan_out)), biases 0.
- ``lecun`` (LeCun et al. 1998, normal): W ~ N(0, 1/fan_in), biases 0.
- ``torch_default``: nn.Linear's default law, reproduced explicitly: weights and biases U(−1/√fan_in, 1/√fan_in)
  (kaiming_uniform with a = √5 gives bound √(6/((1 + 5) fan_in)) = 1/√fan_in), weight then bias per layer.

References:
    K. He, X. Zhang, S. Ren, J. Sun. Delving deep into rectifiers. ICCV 2015.
    X. Glorot, Y. Bengio. Understanding the difficulty of training deep feedforward neural networks. AISTATS 2010.
    Y. LeCun, L. Bottou, G. Orr, K.-R. Müller. Efficient BackProp. 1998.

Examples:
    >>> from zeroloss.nets import FeedForward
    >>> from zeroloss.nets.base import member_generators
    >>> net = FeedForward(d=4, widths=[8], members=2, seed=3, init=None)
    >>> STANDARD_LAWS["torch_default"](net, member_generators(3, 2))
    {}
    >>> bool(net.W1.abs().max() <= 0.5)   # U(±1/√4)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

#: ``law(net, generators) -> dict`` (facts about the draw; the standard laws have none).
Law = Callable[..., dict]

def weights_and_fans(net: nn.Module) -> list[tuple[str, int, int]]:
    """(name, fan_in, fan_out) of each dense map of a FeedForward, in parameter order: W1..WL then v."""
    fans = net.fan_ins
    out = [(f"W{ell}", fans[ell - 1], fans[ell]) for ell in range(1, net.depth + 1)]
    return [*out, ("v", fans[-1], 1)]


def param_shape(net: nn.Module, name: str) -> tuple[int, ...]:
    """Shape of one member's parameter ``name`` (without the members dim)."""
    return tuple(dict(net.named_parameters())[name].shape[1:])


def write_params(net: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy (S, *shape) float64 tensors into the named parameters; every other parameter is set to 0."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in values:
                p.copy_(values[name].to(dtype=p.dtype, device=p.device))
            else:
                p.zero_()


def _normal_law(std: Callable[[int, int], float], doc: str) -> Law:
    def law(net: nn.Module, generators: list[torch.Generator]) -> dict:
        values: dict[str, list[torch.Tensor]] = {}
        for g in generators:
            for name, fan_in, fan_out in weights_and_fans(net):
                draw = torch.randn(param_shape(net, name), generator=g, dtype=torch.float64, device="cpu")
                draw = draw * std(fan_in, fan_out)
                values.setdefault(name, []).append(draw)
        write_params(net, {k: torch.stack(v) for k, v in values.items()})
        return {}

    law.__doc__ = doc
    return law


gaussian = _normal_law(lambda fan_in, fan_out: 1.0, "Du et al.'s law: every weight N(0, 1), biases 0.")
kaiming = _normal_law(lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
                      "He (Kaiming) normal, fan-in mode, gain √2: W ~ N(0, 2/fan_in), biases 0.")
xavier = _normal_law(lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
                     "Glorot (Xavier) normal: W ~ N(0, 2/(fan_in + fan_out)), biases 0.")
lecun = _normal_law(lambda fan_in, fan_out: math.sqrt(1.0 / fan_in), "LeCun normal: W ~ N(0, 1/fan_in), biases 0.")


def torch_default(net: nn.Module, generators: list[torch.Generator]) -> dict:
    """nn.Linear's default law, drawn explicitly: weight then bias of each layer U(±1/√fan_in)."""
    values: dict[str, list[torch.Tensor]] = {}
    biases = {f"W{ell}": f"b{ell}" for ell in range(1, net.depth + 1)} if net.bias else {}
    if net.output_bias:
        biases["v"] = "c"
    for g in generators:
        for name, fan_in, _ in weights_and_fans(net):
            bound = 1.0 / math.sqrt(fan_in)
            for param in (name, biases.get(name)):
                if param is None:
                    continue
                draw = torch.rand(param_shape(net, param), generator=g, dtype=torch.float64, device="cpu")
                draw = (draw * 2.0 - 1.0) * bound
                values.setdefault(param, []).append(draw)
    write_params(net, {k: torch.stack(v) for k, v in values.items()})
    return {}


#: name → law ``fn(net, generators) -> dict``: the laws that need no data
#: (:mod:`zeroloss.papers.chatterjee2022.init` adds ``positive``).
STANDARD_LAWS: dict[str, Law] = {
    "kaiming": kaiming,
    "xavier": xavier,
    "lecun": lecun,
    "torch_default": torch_default,
    "gaussian": gaussian,
}
