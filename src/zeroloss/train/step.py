"""One step of full-batch gradient descent on an ensemble: the update rule, its step size, and its fused fast path.

The update (docs/theory.md §1.2, Training; §2.1), for every member s of the ensemble at once:

    θ_s ← θ_s − η_s ∇L_s(θ_s),        L_s = ½ Σ_i (u_si − y_i)²

The step size. For the squared loss, ∇²L = JᵀJ + Σ_i r_i ∇²u_i with J the Jacobian of the predictions and
r = u − y the residual; near initialisation, in the wide nets of the theory, the second term is small and the
curvature is that of JᵀJ, whose non-zero eigenvalues are those of the Gram matrix G = JJᵀ (docs/theory.md §1.3).
Two facts follow (docs/theory.md §1.3, §2.1):

* the linearised dynamics r(k+1) = (I − ηG) r(k) contract every eigendirection iff |1 − ηλ| < 1 for every
  eigenvalue λ of G, i.e. η < 2/λ_max(G): the stability bound (:func:`stability_bound`). Above it, the top
  direction grows; GD oscillates or diverges.
* the descent lemma for a β-smooth loss, L(θ − η∇L) ≤ L(θ) − η(1 − βη/2)‖∇L‖², guarantees the largest decrease,
  ‖∇L‖²/(2β), at η = 1/β — half the stability bound.

So the default step (``lr=None`` in :func:`zeroloss.train_gd`) is η_s = 1/λ_max(G_s(0)) per member
(:data:`AUTO_LR_FRACTION` = 1 of 1/λ_max): the descent lemma's step with β = λ_max(G(0)), which leaves a factor 2
of room below the stability bound for the curvature to grow along training (Gram drift, the Σ r_i ∇²u_i term).
λ_max is computed in float64 from the exact Gram matrix at the initial parameters (:func:`initial_lambda_max`).

The fast path. Du's three nets and Chatterjee's feedforward net have a hand-derived backward sweep
(:mod:`zeroloss.train.backprop`); gradients are linear in the residual, so a sweep started from η_s r_s gives
η_s ∇L_s, and on the CPU :func:`fused_step` writes it straight into the weights inside the matmuls that compute it
(never forming the gradient). It is the same update as :func:`gd_step`, to round-off (tests/test_backprop.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram
from zeroloss.nets.base import EnsembleNet
from zeroloss.spectra import eigenvalues
from zeroloss.train.backprop import Backprop

#: The default step is AUTO_LR_FRACTION / λ_max(G(0)) per member: 1, the descent lemma's η = 1/β (see above).
AUTO_LR_FRACTION = 1.0
#: The stability bound of the linearised dynamics is STABILITY_NUMERATOR / λ_max(G(0)).
STABILITY_NUMERATOR = 2.0


class UnstableStepWarning(UserWarning):
    """A given step size is above 2/λ_max(G(0)), where the linearised GD dynamics are unstable."""


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An (S,) tensor viewed as (S, 1, …, 1) to broadcast against a parameter ``like`` of shape (S, …)."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def gd_step(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], lr: torch.Tensor,
            active: torch.Tensor | None = None) -> None:
    """θ_s ← θ_s − η_s ∇L_s(θ_s) for every member s, in place (docs/theory.md §1.2, Training).

    Args:
        params: the parameters θ, each of shape (S, …).
        grads: ∇L of each parameter, same shapes (member s's gradient ∇L_s in slice s).
        lr: (S,) step sizes η_s, in the parameters' dtype.
        active: (S,) bool, or None for every member. An inactive (stopped) member keeps its parameters: its
            gradient is replaced by 0 with ``torch.where`` — it may be NaN, and 0 · NaN is NaN.

    Examples:
        >>> theta, grad = torch.ones(2, 3), torch.full((2, 3), 4.0)
        >>> gd_step([theta], [grad], lr=torch.tensor([0.5, 0.25]), active=torch.tensor([True, False]))
        >>> theta
        tensor([[-1., -1., -1.],
                [ 1.,  1.,  1.]])
    """
    with torch.no_grad():
        for theta, grad in zip(params, grads, strict=True):
            if active is not None:
                grad = torch.where(per_member(active, theta), grad, 0.0)
            theta.addcmul_(grad, per_member(lr, theta), value=-1.0)  # θ ← θ − η ∇L, one fused pass


def fused_step(engine: Backprop | None, residual: torch.Tensor, lr: torch.Tensor, gradients_formed: bool) -> bool:
    """The fast path of :func:`gd_step`: take the step inside the hand-derived backward sweep, if it applies.

    It applies when the net has a hand-derived sweep (``engine``) and no probe has formed this step's gradients
    already (then :func:`gd_step` on them is as cheap). The caller decides that every member is active (on the CPU,
    where reading that costs nothing): the fused sweep cannot freeze a stopped member.

    Args:
        engine: the sweep of :mod:`zeroloss.train.backprop`, after its ``forward()`` at the current parameters.
        residual: (S, n) r = u − y.
        lr: (S,) step sizes η_s, in the net's dtype.
        gradients_formed: whether this step's gradients have been computed already.

    Returns:
        True when the step was taken (θ_s ← θ_s − η_s ∇L_s), False when the caller must call :func:`gd_step`.
    """
    if engine is None or gradients_formed:
        return False
    engine.step(residual * lr.unsqueeze(-1))  # the sweep from η_s r_s writes −η_s ∇L_s into the weights
    return True


def initial_lambda_max(net: EnsembleNet, X: torch.Tensor) -> np.ndarray:
    """λ_max of every member's full Gram G(0) = Σ_h G^(h) at the current parameters, in float64: shape (S,).

    Costs one exact Gram matrix (:func:`zeroloss.gram`, memory :func:`zeroloss.gram_memory_bytes`) and one
    symmetric eigen-solve per member. A member whose Gram matrix is not finite (non-finite weights) gets NaN;
    the others are unaffected.

    Examples:
        >>> from zeroloss.nets import FullyConnected
        >>> net = FullyConnected(d=3, width=32, depth=2, members=2, dtype=torch.float64)
        >>> initial_lambda_max(net, torch.eye(3, dtype=torch.float64)).shape
        (2,)
    """
    G = gram(net, X)
    finite = torch.isfinite(G).flatten(1).all(dim=1)
    out = torch.full((G.shape[0],), float("nan"), dtype=torch.float64, device="cpu")  # host-side: returned as numpy
    if bool(finite.any()):
        out[finite.cpu()] = eigenvalues(G[finite])[:, -1].cpu()
    return out.numpy()


def stability_bound(lambda_max: np.ndarray) -> np.ndarray:
    """2/λ_max(G(0)) per member (NaN where λ_max is NaN, inf where it is ≤ 0: no curvature, no bound)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lambda_max > 0, STABILITY_NUMERATOR / lambda_max, np.where(np.isnan(lambda_max), np.nan,
                                                                                   np.inf))


def auto_lr(lambda_max: np.ndarray) -> np.ndarray:
    """The default step η_s = :data:`AUTO_LR_FRACTION` / λ_max(G_s(0)) per member (see the module docstring).

    A member without a usable λ_max (NaN: a non-finite Gram; ≤ 0: a constant net) gets η = 0: it keeps its
    parameters, and :meth:`zeroloss.GDRun.summary` reports it (diverged, or stalled).
    """
    usable = np.isfinite(lambda_max) & (lambda_max > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(usable, AUTO_LR_FRACTION / lambda_max, 0.0)


def lr_vector(lr: object, members: int) -> torch.Tensor:
    """A user's step size(s) as an (S,) float64 tensor: one number for every member, or one per member.

    Raises:
        ZerolossInputError: not numbers, a wrong count, or a step that is not positive and finite.
    """
    if isinstance(lr, (str, bytes, bool)) or (isinstance(lr, Sequence) and any(
            isinstance(v, (str, bytes, bool)) for v in lr)):
        raise ZerolossInputError(f"lr: must be a positive number or one per member ({members}), got {lr!r}")
    try:
        values = torch.as_tensor(lr, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ZerolossInputError(f"lr: must be a positive number or one per member ({members}), got {lr!r}") from None
    if values.numel() == 1:
        values = values.expand(members).clone()
    if values.numel() != members:
        raise ZerolossInputError(f"lr: must be a scalar or one value per member ({members}), got {values.numel()}")
    if not torch.isfinite(values).all() or (values <= 0).any():
        raise ZerolossInputError(f"lr: every step size must be positive and finite, got {values.tolist()}")
    return values


def warn_unstable(lr: np.ndarray, bound: np.ndarray, stacklevel: int = 3) -> None:
    """One :class:`UnstableStepWarning` per member whose step is above its stability bound 2/λ_max(G(0))."""
    for s in np.nonzero(lr > bound)[0]:
        warnings.warn(f"lr: member {s}'s step {lr[s]:.4g} is above its stability bound 2/λ_max(G(0)) = "
                      f"{bound[s]:.4g}; gradient descent will oscillate or diverge (lr=None takes 1/λ_max(G(0)))",
                      UnstableStepWarning, stacklevel=stacklevel)
