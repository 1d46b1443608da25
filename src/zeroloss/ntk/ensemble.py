"""The structured eNTK of a member of a zeroloss ensemble net, from the net's own linear-map records.

zeroloss's nets (:mod:`zeroloss.nets`) do not call ``nn.Linear``/``nn.Conv1d`` modules: their forward pass is
written with batched matmuls and reports every trainable linear map as a
:class:`~zeroloss.nets.base.LinearMap` (input a, output z). These are the same rules as for a user's layers
(:mod:`zeroloss.ntk.rules`; docs/theory.md §1.3): a dense map is a shared-weight term with one position, a
convolution one with p positions (its patches are recorded), and a bias a per-sample gradient δ_i. One forward and
one backward pass of Σ_i u_i per chunk give every δ (k = 1 per member).
"""

from __future__ import annotations

import torch

from zeroloss.nets.base import EnsembleNet
from zeroloss.ntk import rules
from zeroloss.ntk.model import FunctionalModel
from zeroloss.ntk.structured import Factors


def member_forms(view: FunctionalModel, x: torch.Tensor, full: bool, n1: int, n2: int) -> dict[str, str]:
    """Parameter name → ``"product"`` / ``"gradient"`` for a member's weights (biases: gradient), from one sample."""
    net = view.model
    assert isinstance(net, EnsembleNet)
    with torch.no_grad():
        _, maps = net.functional_forward(view._member_all, x[:1], record=True)
    forms = {}
    for m in maps:
        if m.param not in view.params:
            continue
        if m.kind == "bias":
            forms[m.param] = "gradient"
            continue
        shape = _shape(m)
        forms[m.param] = rules.choose_form(shape, "linear", 1, full, n1, n2)
    return forms


def _shape(m) -> rules.Shape:
    if m.kind == "dense":
        fan_in, fan_out, T = m.inputs.shape[-1], m.preact.shape[-1], 1
    else:  # conv: inputs (S, n, fan_in, p), preact (S, n, fan_out, p)
        fan_in, fan_out, T = m.inputs.shape[2], m.preact.shape[2], m.inputs.shape[3]
    return rules.Shape(T, 1, fan_in, fan_out, fan_in * fan_out)


def member_factors(view: FunctionalModel, x: torch.Tensor, keys: dict[str, str], forms: dict[str, str]) -> Factors:
    """The :class:`~zeroloss.ntk.structured.Factors` of one member on a chunk x."""
    net = view.model
    assert isinstance(net, EnsembleNet)
    params = {k: v.detach().requires_grad_(k in view.params) for k, v in view._member_all.items()}
    out = Factors()
    with torch.enable_grad():
        u, maps = net.functional_forward(params, x, record=True)  # u (1, c)
        chosen = [m for m in maps if m.param in view.params]
        unique = list({id(m.preact): m.preact for m in chosen}.values())
        deltas = dict(zip(map(id, unique), torch.autograd.grad(u.sum(), unique), strict=True))
    for m in chosen:
        delta = deltas[id(m.preact)].detach()[0]  # (c, fan_out) or (c, fan_out, p)
        key = keys[m.param]
        if m.kind == "bias":
            out.add_gradient(key, delta.unsqueeze(1))  # (c, k=1, fan_out)
            continue
        if m.kind == "dense":
            A = m.inputs.detach()[0][:, None, :, None]  # (c, g=1, fan_in, T=1)
            D = delta[:, None, None, :, None]  # (c, g=1, k=1, fan_out, T=1)
        else:
            A = m.inputs.detach()[0].unsqueeze(1)  # (c, 1, fan_in, p)
            D = delta[:, None, None]  # (c, 1, 1, fan_out, p)
        if forms[m.param] == "product":
            out.add_product(key, None, A, D)
        else:
            out.add_gradient(key, rules.gradient_from_shared(None, A, D))
    return out
