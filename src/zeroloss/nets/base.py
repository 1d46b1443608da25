"""Ensemble-native networks: the common interface every theory-exact net implements.

Every parameter tensor has a leading members dimension S. The forward pass is functional,
``functional_forward(params, X, record=True)``, and returns the predictions (S, n) together with one
:class:`LinearMap` record per trainable linear map: the map's input and its output z (the "pre-activation").
Because u_i depends on parameter W only through z_i = W·a_i, ∂u_i/∂W = δ_i a_iᵀ with δ_i = ∂u_i/∂z_i, and the
per-layer Gram matrix is ``(a_i·a_j)(δ_i·δ_j)`` (MATH §1.3). The records are what :func:`zeroloss.gram` uses;
no Jacobian is formed.

Member k of a net built with seed s is drawn by its own generator seeded with s + k, so it equals the
single-member net built with seed s + k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zeroloss.errors import ZerolossInputError, positive_int


@dataclass
class LinearMap:
    """One trainable linear map of a forward pass.

    Args:
        param: name of the parameter (a key of ``net.named_parameters()``).
        layer: 1-based layer index; ``depth + 1`` is the output layer.
        kind: ``"dense"`` — z_i = W a_i with ``inputs`` (S, n, fan_in) and ``preact`` (S, n, fan_out);
            ``"conv"`` — z_i[:, l] = W φ_l(a_i) with ``inputs`` the patches (S, n, fan_in, p) and ``preact``
            (S, n, fan_out, p); ``"bias"`` — z_i = b + …, ``inputs`` None, ``preact`` (S, n, fan_out).
        inputs: see ``kind``.
        preact: the map's output z, inside the autograd graph of the predictions.
    """

    param: str
    layer: int
    kind: str
    inputs: torch.Tensor | None
    preact: torch.Tensor


class EnsembleNet(nn.Module):
    """Base class: S members trained side by side; subclasses implement :meth:`functional_forward`.

    Attributes:
        members: S.
        depth: number of hidden layers H (the output layer is layer H + 1).
        seed: seed of member 0 (member k uses seed + k).
    """

    members: int
    depth: int
    seed: int

    def functional_forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, list[LinearMap]]:
        """Predictions (S, n) for inputs X from the given parameters; with ``record`` also the linear maps."""
        raise NotImplementedError

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Predictions of every member, shape (S, n)."""
        return self.functional_forward(dict(self.named_parameters()), X)[0]

    def check_inputs(self, X: torch.Tensor) -> torch.Tensor:
        """Validate the shape of X — (n, d) for nets with an input dimension ``d`` — and move it to the net's
        device and dtype. Nets with other input shapes override this."""
        X = torch.as_tensor(X)
        d = getattr(self, "d", None)
        if d is None:
            raise NotImplementedError
        if X.ndim != 2 or X.shape[1] != d:
            raise ZerolossInputError(f"X: must have shape (n, {d}), got {tuple(X.shape)}")
        return X.to(dtype=self.dtype, device=self.device)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def layer_of(self, param: str) -> int:
        """The 1-based layer of a parameter (``depth + 1`` for the output layer)."""
        raise NotImplementedError

    def member(self, k: int) -> EnsembleNet:
        """A single-member copy of member k (parameters copied, not shared)."""
        if not 0 <= k < self.members:
            raise ZerolossInputError(f"member: must be in 0..{self.members - 1}, got {k}")
        clone = self._empty_like(members=1, seed=self.seed + k)
        with torch.no_grad():
            for (_, dst), (_, src) in zip(clone.named_parameters(), self.named_parameters(), strict=True):
                dst.copy_(src[k : k + 1])
        return clone

    def _empty_like(self, members: int, seed: int) -> EnsembleNet:
        raise NotImplementedError


def stack_members(nets: list[EnsembleNet]) -> EnsembleNet:
    """One ensemble whose member k is ``nets[k]`` (single-member nets of one architecture, any seeds).

    Used to train runs with arbitrary seeds side by side; the result's ``seed`` is that of ``nets[0]``.
    """
    if not nets or any(net.members != 1 for net in nets):
        raise ZerolossInputError("nets: must be a non-empty list of single-member nets")
    stacked = nets[0]._empty_like(members=len(nets), seed=nets[0].seed)
    with torch.no_grad():
        for name, param in stacked.named_parameters():
            param.copy_(torch.cat([dict(net.named_parameters())[name] for net in nets]))
    return stacked


def member_generators(seed: int, members: int) -> list[torch.Generator]:
    """One CPU generator per member, seeded seed + k (the member-equivalence rule)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ZerolossInputError(f"seed: must be a non-negative integer, got {seed!r}")
    positive_int(members, "members")
    return [torch.Generator().manual_seed(seed + k) for k in range(members)]


def member_normal_draws(
    generators: list[torch.Generator],
    shapes: list[tuple[int, ...]],
    dtype: torch.dtype,
    device: torch.device | str,
) -> list[torch.Tensor]:
    """I.i.d. N(0, 1) tensors of the given shapes, each stacked over members: shapes (S, *shape).

    Member k draws all its shapes in order from its own generator; draws are made on the CPU in float64, so a
    member's weights do not depend on the device or the training dtype, then cast.
    """
    per_member = [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for g in generators]
    return [torch.stack([draws[i] for draws in per_member]).to(dtype=dtype, device=device)
            for i in range(len(shapes))]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accept float32 and float64 only."""
    if dtype not in (torch.float32, torch.float64):
        raise ZerolossInputError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
    return dtype
