"""Ensemble-native networks: the common interface every theory-exact net implements.

Every parameter tensor has a leading members dimension S. The forward pass is functional,
``functional_forward(params, X, record=True)``, and returns the predictions (S, n) together with one
:class:`LinearMap` record per trainable linear map: the map's input and its output z (the "pre-activation").
Because u_i depends on parameter W only through z_i = W·a_i, ∂u_i/∂W = δ_i a_iᵀ with δ_i = ∂u_i/∂z_i, and the
per-layer Gram matrix is ``(a_i·a_j)(δ_i·δ_j)`` (docs/theory.md §1.3). The records are what :func:`zeroloss.gram` uses;
no Jacobian is formed.

Member k of a net built with seed s is drawn by its own generator seeded with s + k, so it equals the
single-member net built with seed s + k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zeroloss.devices import resolve_device as resolve_device  # re-exported: the nets' device argument
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
        """Validate X — shape (n, d) for nets with an input dimension ``d``, n ≥ 1, finite values — and move it to
        the net's device and dtype. Nets with other input shapes override this (with :func:`check_input_values`)."""
        d = getattr(self, "d", None)
        if d is None:
            raise NotImplementedError
        return check_input_values(X, (d,), "(n, d)", self.dtype, self.device)

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


def check_input_values(X: object, sample_shape: tuple[int, ...], layout: str, dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
    """X as a tensor of shape (n, *sample_shape) with n ≥ 1 and finite entries, on ``device`` in ``dtype``.

    Args:
        X: the inputs (a tensor or anything ``torch.as_tensor`` takes).
        sample_shape: one sample's shape, e.g. (d,) or (channels, positions).
        layout: how the error names the axes, e.g. ``"(n, d)"``.

    Raises:
        ZerolossInputError: naming X — not numbers, a wrong shape, no sample, NaN or inf (with the first bad row).
    """
    try:
        X = torch.as_tensor(X)
    except (TypeError, ValueError, RuntimeError):
        raise ZerolossInputError(f"X: must be an array of numbers of shape {layout}, got {type(X).__name__}") from None
    want = "(n, " + ", ".join(map(str, sample_shape)) + ")"
    if X.ndim != 1 + len(sample_shape) or tuple(X.shape[1:]) != tuple(sample_shape):
        raise ZerolossInputError(f"X: must have shape {want} = {layout}, got {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ZerolossInputError(f"X: must hold at least one input, got shape {tuple(X.shape)}")
    if X.dtype == torch.bool or X.is_complex():
        raise ZerolossInputError(f"X: must hold real numbers, got dtype {X.dtype}")
    finite = torch.isfinite(X.reshape(X.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        raise ZerolossInputError(f"X: contains NaN or inf (first in row {int(torch.nonzero(~finite)[0])})")
    return X.to(dtype=dtype, device=device)


def require_ensemble_net(net: object, caller: str) -> None:
    """Refuse, in one line, a model that is not a zeroloss ensemble net (``caller`` names the refusing function).

    :func:`zeroloss.gram` and :func:`zeroloss.train_gd` need the :class:`EnsembleNet` interface (a members
    dimension, recorded linear maps); a plain ``torch.nn.Module`` is the business of ``zeroloss.entk`` (its
    empirical NTK) and ``zeroloss.diagnose``.

    Examples:
        >>> require_ensemble_net(torch.nn.Linear(3, 1), "gram")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        zeroloss.errors.ZerolossInputError: net: gram takes a zeroloss net (zeroloss.nets), got Linear; ...
    """
    if not isinstance(net, EnsembleNet):
        raise ZerolossInputError(f"net: {caller} takes a zeroloss net (zeroloss.nets), got {type(net).__name__}; "
                                 "for any torch.nn.Module use zeroloss.entk (its empirical NTK) or zeroloss.diagnose")


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
    per_member = [[torch.randn(s, generator=g, dtype=torch.float64, device="cpu") for s in shapes]  # host draws
                  for g in generators]
    return [torch.stack([draws[i] for draws in per_member]).to(dtype=dtype, device=device)
            for i in range(len(shapes))]


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accept float32 and float64 only."""
    if dtype not in (torch.float32, torch.float64):
        raise ZerolossInputError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
    return dtype
