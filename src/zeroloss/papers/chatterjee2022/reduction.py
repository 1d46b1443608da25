"""The least-squares problem the positive initialisation reduces to without hidden biases (docs/theory.md §2.5).

With W₁ = 0, no hidden biases and σ(0) = 0 (tanh), every hidden layer outputs 0 at w₀, so f(x; w₀) = c and the only
non-zero blocks of the Jacobian at w₀ are W₁'s, ∂f(x_i)/∂W₁ = δ x_iᵀ with δ ∈ R^{d₁} the *same* back-propagated
vector for every input, and c's (∂f/∂c = 1). The full Gram (the empirical NTK) at w₀ is therefore

    Θ(w₀) = ‖δ‖² XXᵀ + 11ᵀ,            ‖δ‖² ∝ M²  (M the output scale, ~10³–10⁶ here),

so GD linearised at w₀ is GD on least squares in the raw inputs, r_{k+1} = (I − ηΘ(w₀)) r_k, up to the 11ᵀ term of
relative weight n/(‖δ‖²λ_max(XXᵀ)). The lab's step grid is relative to each run's own stability limit
2/λ_max(Θ(w₀)), so at the grid point φ the positive run's residual follows, to that order,

    r_{k+1} = (I − 2φ XXᵀ/λ_max(XXᵀ)) r_k,        L_k = Σ_i (1 − 2φλ_i/λ_max)^{2k} ⟨v_i, r₀⟩²

(λ_i, v_i the eigenpairs of XXᵀ): its best count is a function of (X, y, the grid, the target) alone — not of the
width, the depth or the hidden-weight law. :func:`least_squares_steps` computes that count exactly, with the search's
own rules (first step at or below the target, a member past the divergence rule dropped, ties to the smaller step).

Examples:
    >>> X = torch.eye(3, dtype=torch.float64)                 # κ(XXᵀ) = 1: φ = ½ solves it in one step
    >>> ls = least_squares_steps(X, -torch.ones(3, dtype=torch.float64), [0.25, 0.5, 1.0], 100, 1e-6)
    >>> ls.steps_to_target, ls.best_fraction
    (1, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zeroloss.train.divergence import within_bounds

#: Steps evaluated at once per grid point (the loss curve of a block is one (steps, n) array).
BLOCK = 4096


@dataclass(frozen=True)
class LeastSquaresSteps:
    """The best grid step of GD on ½‖r‖² with the Gram XXᵀ (see the module docstring).

    Attributes:
        steps_to_target: the fewest steps to L_k ≤ target·L₀ over the grid, or None when no grid point gets there
            within the budget.
        best_fraction: the grid point that gets there first (ties: the smaller step), or None.
        kappa: κ(XXᵀ) = λ_max/λ_min (float64).
    """

    steps_to_target: int | None
    best_fraction: float | None
    kappa: float


def least_squares_steps(X: torch.Tensor, r0: torch.Tensor, fractions: list[float], budget: int,
                        target: float) -> LeastSquaresSteps:
    """Fewest steps of GD on least squares in X from the residual r₀ (n,), step φ·2/λ_max(XXᵀ) for φ in ``fractions``.

    Args:
        X: (n, d) inputs; r0: (n,) initial residual u(w₀) − y.
        fractions: the grid, as multiples of the stability limit 2/λ_max(XXᵀ).
        budget: the most steps; target: the relative target L_k ≤ target·L₀.
    """
    Xd = torch.as_tensor(X, dtype=torch.float64)
    lam, vec = torch.linalg.eigh(Xd @ Xd.T)
    lam, vec = lam.numpy(), vec.numpy()
    coef2 = (vec.T @ np.asarray(r0, dtype=np.float64)) ** 2           # ⟨v_i, r₀⟩², (n,)
    l0 = float(coef2.sum())
    lam_max = float(lam[-1])
    kappa = lam_max / float(lam[0]) if lam[0] > 0 else float("inf")
    best: tuple[int, int] | None = None                                # (steps, grid index)
    for j, phi in enumerate(fractions):
        factor = np.abs(1.0 - 2.0 * phi * lam / lam_max)               # |1 − 2φλ_i/λ_max|, (n,)
        limit = budget if best is None else min(budget, best[0] - 1)
        start = 0
        while start <= limit:
            k = np.arange(start, min(start + BLOCK, limit + 1))
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                curve = (factor[None, :] ** (2.0 * k[:, None]) * coef2[None, :]).sum(axis=1)
            bad = np.nonzero(~within_bounds(curve, l0))[0]
            good = curve if not bad.size else curve[: bad[0]]
            hit = np.nonzero(good <= target * l0)[0]
            if hit.size:
                best = (int(k[hit[0]]), j)
                break
            if bad.size:
                break
            start += BLOCK
    if best is None:
        return LeastSquaresSteps(None, None, kappa)
    return LeastSquaresSteps(best[0], float(fractions[best[1]]), kappa)
