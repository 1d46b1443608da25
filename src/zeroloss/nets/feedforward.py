"""Chatterjee's feedforward net (docs/theory.md §2.2): per-layer widths, biases, output bias; ensemble-native.

    z^(0) = x,   z^(ℓ) = σ(W_ℓ z^(ℓ−1) + b_ℓ),  ℓ = 1..L,   f(x; w) = vᵀ z^(L) + c

There is no architectural scale factor (unlike Du et al.'s nets): the scale lives in the initialisation. The net
is built with one of the standard laws of :mod:`zeroloss.nets.laws` (``kaiming``, ``xavier``, ``lecun``,
``torch_default``, ``gaussian``) or with every parameter at zero; Chatterjee's data-dependent ``positive``
initialisation is applied afterwards by :func:`zeroloss.initialise` (:mod:`zeroloss.papers.chatterjee2022.init`
imports this module,
never the reverse). PyTorch's default initialisers are never used. ``widths=[]`` (L = 0) is the linear model
f(x) = vᵀx + c, whose local PL constant is known exactly (the reference problem of the tests).

Every dense map and bias is recorded as a :class:`~zeroloss.nets.base.LinearMap`, so :func:`zeroloss.gram` works
on this net, biases included. Parameter layers: ``W{ℓ}``/``b{ℓ}`` are layer ℓ, ``v`` and ``c`` are layer L + 1.

References:
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zeroloss.activations import Activation, get_activation
from zeroloss.errors import ZerolossInputError, positive_int
from zeroloss.nets.base import EnsembleNet, LinearMap, check_dtype, member_generators, resolve_device
from zeroloss.nets.laws import STANDARD_LAWS


class FeedForward(EnsembleNet):
    """Feedforward net with biases (docs/theory.md §2.2), S members side by side.

    Args:
        d: input dimension.
        widths: hidden widths [d₁, …, d_L]; empty for the linear model f = vᵀx + c.
        activation: registry name or :class:`~zeroloss.activations.Activation`.
        members: S.
        seed: seed of member 0 (member k draws from seed + k).
        dtype: float32 or float64.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or None (auto).
        bias: hidden biases b_ℓ (default True).
        output_bias: output bias c (default True).
        init: name of the standard law drawn at construction (a key of :data:`zeroloss.nets.laws.STANDARD_LAWS`;
            default ``"lecun"``), or None to leave every parameter at zero (e.g. before copying weights in, or
            before ``zeroloss.initialise(net, "positive", X=..., y=..., radius=...)``, which needs data).

    Shapes: ``W1`` (S, d₁, d), ``Wℓ`` (S, d_ℓ, d_{ℓ−1}), ``bℓ`` (S, d_ℓ), ``v`` (S, d_L), ``c`` (S, 1);
    ``net(X)`` with X (n, d) gives (S, n).

    Examples:
        >>> net = FeedForward(d=3, widths=[8, 8], activation="tanh", members=2, seed=0)
        >>> net(torch.eye(3)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        d: int,
        widths: Sequence[int],
        activation: str | Activation = "tanh",
        members: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = "cpu",
        bias: bool = True,
        output_bias: bool = True,
        init: str | None = "lecun",
    ) -> None:
        super().__init__()
        self.d = positive_int(d, "d")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
            raise ZerolossInputError(f"widths: must be a list of positive integers, got {widths!r}")
        self.widths = [positive_int(w, "widths") for w in widths]
        self.depth = len(self.widths)
        self.members = positive_int(members, "members")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ZerolossInputError(f"seed: must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.activation = get_activation(activation)
        self.bias = bool(bias)
        self.output_bias = bool(output_bias)
        self.init_info: dict = {}
        dtype = check_dtype(dtype)
        dev = resolve_device(device)
        S = self.members
        fan_in = self.d
        for ell, width in enumerate(self.widths, start=1):
            self.register_parameter(f"W{ell}", nn.Parameter(torch.zeros(S, width, fan_in, dtype=dtype, device=dev)))
            if self.bias:
                self.register_parameter(f"b{ell}", nn.Parameter(torch.zeros(S, width, dtype=dtype, device=dev)))
            fan_in = width
        self.v = nn.Parameter(torch.zeros(S, fan_in, dtype=dtype, device=dev))
        if self.output_bias:
            self.c = nn.Parameter(torch.zeros(S, 1, dtype=dtype, device=dev))
        if init is not None:
            if not isinstance(init, str) or init not in STANDARD_LAWS:
                hint = (" (the positive initialisation needs data: build with init=None, then call "
                        "zeroloss.initialise(net, 'positive', X=..., y=..., radius=...))" if init == "positive"
                        else "")
                raise ZerolossInputError(f"init: must be one of {', '.join(STANDARD_LAWS)} or None, got {init!r}{hint}")
            self.init_info = {"init": init, "seed": seed, **STANDARD_LAWS[init](self, member_generators(seed, S))}

    @property
    def fan_ins(self) -> list[int]:
        """Fan-in of each dense map: [d, d₁, …, d_L] (the last is v's)."""
        return [self.d, *self.widths]

    def layer_of(self, param: str) -> int:
        if param in ("v", "c"):
            return self.depth + 1
        return int(param[1:])

    def _empty_like(self, members: int, seed: int) -> FeedForward:
        return FeedForward(self.d, self.widths, self.activation, members, seed, self.dtype, self.device,
                           self.bias, self.output_bias, init=None)

    def functional_forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, list[LinearMap]]:
        maps: list[LinearMap] = []
        S = params["v"].shape[0]
        x = X.expand(S, *X.shape[-2:])  # (S, n, d), shared by the members
        for ell in range(1, self.depth + 1):
            z = torch.matmul(x, params[f"W{ell}"].transpose(-1, -2))  # (S, n, d_ℓ)
            if self.bias:
                z = z + params[f"b{ell}"].unsqueeze(-2)
            if record:
                # W and b act on the same pre-activation: ∂u/∂W = δ xᵀ and ∂u/∂b = δ with the same δ = ∂u/∂z.
                maps.append(LinearMap(f"W{ell}", ell, "dense", x, z))
                if self.bias:
                    maps.append(LinearMap(f"b{ell}", ell, "bias", None, z))
            x = self.activation.fn(z)
        out = torch.matmul(x, params["v"].unsqueeze(-1))  # (S, n, 1)
        if self.output_bias:
            out = out + params["c"].view(S, 1, 1)
        if record:
            maps.append(LinearMap("v", self.depth + 1, "dense", x, out))
            if self.output_bias:
                maps.append(LinearMap("c", self.depth + 1, "bias", None, out))
        return out.squeeze(-1), maps
