"""Reference Gram matrices by Jacobian contraction with ``torch.func`` (the "NTK" tutorial's method).

This is what a user would write today: per member, ``vmap(jacrev(f))`` over samples, then an einsum over every
parameter's flattened Jacobian. It forms the full Jacobian (n × #params per member), so it is slow and memory-hungry;
zeroloss uses it as the reference the structured :func:`zeroloss.gram` is tested against, and as the fallback for
parameters that are not plain linear maps.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from zeroloss.kernels.empirical import resolve_layers
from zeroloss.nets.base import EnsembleNet
from zeroloss.precision import no_tf32


def gram_jacobian(
    net: EnsembleNet, X: torch.Tensor, layer: str | int = "all", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Gram matrix (S, n, n) by explicit Jacobian contraction; same meaning as :func:`zeroloss.gram`.

    Examples:
        >>> from zeroloss.nets import FullyConnected
        >>> from zeroloss.kernels.empirical import gram
        >>> net = FullyConnected(d=3, width=8, depth=2, members=2)
        >>> X = torch.eye(3)
        >>> bool(torch.allclose(gram_jacobian(net, X), gram(net, X)))
        True
    """
    layers = resolve_layers(net, layer)
    X = net.check_inputs(X).to(dtype)
    names = [k for k, _ in net.named_parameters() if net.layer_of(k) in layers]
    all_params = {k: p.detach().to(dtype) for k, p in net.named_parameters()}
    out = []
    with no_tf32():
        for s in range(net.members):
            member = {k: v[s : s + 1] for k, v in all_params.items()}

            def f_single(trainable: dict[str, torch.Tensor], x: torch.Tensor, member=member) -> torch.Tensor:
                params = {**member, **trainable}
                return net.functional_forward(params, x.unsqueeze(0))[0][0, 0]

            trainable = {k: member[k] for k in names}
            jac = vmap(jacrev(f_single), (None, 0))(trainable, X)  # name → (n, 1, *shape)
            flat = [j.reshape(X.shape[0], -1) for j in jac.values()]
            out.append(sum(torch.einsum("ip,jp->ij", J, J) for J in flat))
    return torch.stack(out)
