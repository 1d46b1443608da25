"""Chatterjee's certified first-layer lower bound on α(w₀, r) (docs/theory.md §2.3, [derived]), and its assumptions.

For F(w) = Σ_i (f(x_i; w) − y_i)² and δ_i = ∂f(x_i)/∂(W₁x_i + b₁) ∈ R^{d₁}, the W₁-block of the gradient is
∇_{W₁}F = 2 Σ_i r_i δ_i x_iᵀ (r = u − y), so ‖∇_{W₁}F‖² = 4 rᵀ (D ∘ XXᵀ) r with D_ij = δ_i·δ_j. By the Schur
product theorem D ∘ (XXᵀ − λ_min I) ⪰ 0, hence

    ‖∇F‖² ≥ ‖∇_{W₁}F‖² ≥ 4 λ_min(XXᵀ) min_i ‖δ_i‖² F,   α(w₀, r) ≥ 4 λ_min(XXᵀ) inf_{B(w₀,r)} min_i ‖δ_i‖².

Inside B(w₀, r) every parameter entry moves by at most r. If every hidden weight of W_ℓ (ℓ ≥ 2) is at least
c_ℓ > r and every output weight at least M > r at w₀, and σ′ ≥ s_ℓ on the pre-activation ranges of layer ℓ
reachable in the ball, back-propagation keeps every entry of δ_i at least (M − r) κ with

    κ = Π_{ℓ≥2} (c_ℓ − r) d_ℓ · Π_{ℓ=1}^{L} s_ℓ,      so   α(w₀, r) ≥ 4 λ_min(XXᵀ) d₁ (M − r)² κ².

(docs/theory.md §2.3 writes one c_lo for every layer; the per-layer c_ℓ is the same argument.) The criterion
4F(w₀) < r²α then holds once M > r + sqrt(F(w₀) / (r² λ_min(XXᵀ) d₁)) / κ. For L = 0 (the linear model
f = vᵀx + c) the first trained map is v itself, δ_i = 1, and the bound is α ≥ 4 λ_min(XXᵀ) — exact for
F = ‖Xv − y‖².

The pre-activation ranges are propagated by interval arithmetic over the whole ball (:func:`preactivation_ranges`)
in float64 with round-to-nearest: the bound is a mathematical certificate up to that round-off (relative 1e-15),
not a formally verified computation.

References:
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from zeroloss.activations import Activation
from zeroloss.errors import ZerolossInputError, require

#: Activations whose σ′ is quasi-concave (unimodal: increasing then decreasing, or monotone), so that the minimum
#: of σ′ over an interval is attained at an endpoint — what :func:`sigma_prime_lower` relies on. These are also
#: exactly the registry's smooth, strictly increasing activations.
QUASI_CONCAVE_DERIVATIVE = ("softplus", "tanh", "sigmoid", "erf")
#: Smallest positive normal float64: a κ below it has lost its precision (subnormal).
_TINY = float(np.finfo(np.float64).tiny)


#: Radii accepted by the certificate (``certify``, the positive init): r² must be a normal float64 (below, r²
#: underflows and the criterion 4F(w₀) < r²α reads 4F(w₀) < 0; above, it overflows to inf).
RADIUS_RANGE = (math.sqrt(float(np.finfo(np.float64).tiny)), math.sqrt(float(np.finfo(np.float64).max)))


def check_radius(radius: object, field: str = "radius") -> float:
    """Return ``radius`` as a float after checking it is a number in :data:`RADIUS_RANGE` (r² a normal float64).

    Examples:
        >>> check_radius(0.05)
        0.05
        >>> check_radius(1e-300)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        zeroloss.errors.ZerolossInputError: radius: must be a number in [1.49e-154, 1.34e+154] (r² must be ...
    """
    ok = isinstance(radius, (int, float)) and not isinstance(radius, bool) and math.isfinite(radius) and radius > 0
    require(ok, field, "must be a positive number", radius)
    lo, hi = RADIUS_RANGE
    if not lo <= radius <= hi:
        side = "below, it underflows to 0" if radius < lo else "above, it overflows"
        raise ZerolossInputError(f"{field}: must be a number in [{lo:.3g}, {hi:.3g}] (r² must be a normal float64: "
                                 f"{side}), got {radius!r}")
    return float(radius)


def input_spectrum(X: torch.Tensor) -> tuple[float, float, float]:
    """(λ_min(XXᵀ), λ_max(XXᵀ), rank tolerance on λ) in float64, from the singular values of X (n, d).

    λ_min is 0 when n > d. The tolerance is NumPy's ``matrix_rank`` rule σ ≤ σ_max · max(n, d) · eps, squared.
    """
    X = torch.as_tensor(X).to(torch.float64)
    n, d = X.shape
    sv = torch.linalg.svdvals(X)
    lam_max = float(sv[0]) ** 2
    lam_min = float(sv[-1]) ** 2 if n <= d else 0.0
    tol = (float(sv[0]) * max(n, d) * torch.finfo(torch.float64).eps) ** 2
    return lam_min, lam_max, tol


def check_certificate_assumptions(activation: Activation, X: torch.Tensor) -> float:
    """Raise :class:`ZerolossInputError` unless Chatterjee's assumptions hold; return λ_min(XXᵀ) (float64).

    Assumptions (docs/theory.md §2.2): σ smooth and strictly increasing (σ′ > 0), with σ′ quasi-concave for the interval
    bound; inputs linearly independent (n ≤ d and λ_min(XXᵀ) above the rank tolerance).
    """
    if not (activation.smooth and activation.strictly_increasing) or activation.name not in QUASI_CONCAVE_DERIVATIVE:
        raise ZerolossInputError(
            "activation: Chatterjee's certificate needs a smooth, strictly increasing σ "
            f"({', '.join(QUASI_CONCAVE_DERIVATIVE)}), got {activation.name!r}"
        )
    X = torch.as_tensor(X)
    n, d = X.shape
    lam_min, _, tol = input_spectrum(X)
    if n > d or lam_min <= tol:
        raise ZerolossInputError(
            f"X: Chatterjee's certificate needs linearly independent inputs (n ≤ d, λ_min(XXᵀ) > 0), got n={n}, "
            f"d={d}, λ_min(XXᵀ)={lam_min:.3e} (rank tolerance {tol:.1e})"
        )
    return lam_min


def preactivation_ranges(
    params: dict[str, torch.Tensor], X: torch.Tensor, radius: float, activation: Activation, depth: int,
    bias: bool,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Intervals [lo, hi] (each (n, d_ℓ)) containing W_ℓ z^(ℓ−1) + b_ℓ for every w in B(w₀, r), ℓ = 1..L.

    With a ∈ [a_lo, a_hi] the previous layer's output (a = x exactly for ℓ = 1) and W = W⁰ + ΔW,
    b = b⁰ + Δb with ‖(ΔW_j, Δb_j)‖ ≤ r for every row j:
    W⁰_j·a ∈ [W⁰₊a_lo + W⁰₋a_hi, W⁰₊a_hi + W⁰₋a_lo] and |ΔW_j·a + Δb_j| ≤ r sqrt(‖max(|a_lo|, |a_hi|)‖² + 1)
    (the + 1 only with biases), by Cauchy–Schwarz. σ is increasing, so the next outputs lie in [σ(lo), σ(hi)].

    Args:
        params: one member's parameters without the members dim (``W1`` (d₁, d), ``b1`` (d₁,), …), float64.
        X: (n, d) float64.
    """
    a_lo = a_hi = X
    ranges = []
    for ell in range(1, depth + 1):
        W0 = params[f"W{ell}"]
        pos, neg = W0.clamp(min=0.0), W0.clamp(max=0.0)
        lo = a_lo @ pos.T + a_hi @ neg.T
        hi = a_hi @ pos.T + a_lo @ neg.T
        if bias:
            lo = lo + params[f"b{ell}"]
            hi = hi + params[f"b{ell}"]
        amax = torch.maximum(a_lo.abs(), a_hi.abs())
        spread = radius * torch.sqrt(amax.pow(2).sum(dim=1, keepdim=True) + (1.0 if bias else 0.0))
        lo, hi = lo - spread, hi + spread
        ranges.append((lo, hi))
        a_lo, a_hi = activation.fn(lo), activation.fn(hi)
    return ranges


def sigma_prime_lower(activation: Activation, lo: torch.Tensor, hi: torch.Tensor) -> float:
    """min σ′ over every interval [lo, hi] (endpoints suffice: σ′ is quasi-concave, see QUASI_CONCAVE_DERIVATIVE)."""
    return float(torch.minimum(activation.d1(lo), activation.d1(hi)).min())


@dataclass
class FirstLayerBound:
    """The certified lower bound α(w₀, r) ≥ 4 λ_min(XXᵀ) d₁ (M − r)² κ² and its ingredients.

    Attributes:
        alpha_lower_bound: the bound, or None where the net's weights do not support it (see ``reason``).
        reason: why there is no bound, or the chain of the derivation in words.
        lambda_min: λ_min(XXᵀ) (float64).
        d1: width of the first layer (1 for the linear model).
        output_min: M = min v at w₀ (None for L = 0).
        hidden_min: c_ℓ = min W_ℓ at w₀, ℓ = 2..L.
        sigma_prime_lower: s_ℓ, ℓ = 1..L.
        kappa: κ.
    """

    alpha_lower_bound: float | None
    reason: str
    lambda_min: float
    d1: int
    output_min: float | None = None
    hidden_min: list[float] = field(default_factory=list)
    sigma_prime_lower: list[float] = field(default_factory=list)
    kappa: float | None = None

    def output_scale_threshold(self, f0: float, radius: float) -> float | None:
        """The M above which 4F(w₀) < r²α is certified: r + sqrt(F(w₀)/(r² λ_min d₁)) / κ (None if κ ≤ 0).

        Written as r + sqrt(F(w₀)/(λ_min d₁)) / (r κ) so that a tiny r does not underflow r² to 0; the result is
        ``inf`` when it overflows float64 (a radius or κ so small that no representable M certifies).
        """
        if self.kappa is None or self.kappa <= 0.0:
            return None
        with np.errstate(over="ignore", divide="ignore"):
            root = np.float64(math.sqrt(f0 / (self.lambda_min * self.d1)))
            scale = root / np.float64(radius) / np.float64(self.kappa)
        return float(radius + scale)


def first_layer_bound(
    params: dict[str, torch.Tensor], X: torch.Tensor, radius: float, activation: Activation, depth: int,
    bias: bool, lambda_min: float,
) -> FirstLayerBound:
    """Certified α(w₀, r) lower bound of docs/theory.md §2.3 for one member (params without the members dim, float64).

    Examples:
        >>> from zeroloss.activations import get_activation
        >>> X = torch.eye(2, dtype=torch.float64)
        >>> b = first_layer_bound({"v": torch.ones(2, dtype=torch.float64)}, X, 0.5, get_activation("tanh"),
        ...                       depth=0, bias=False, lambda_min=1.0)
        >>> b.alpha_lower_bound
        4.0
    """
    if depth == 0:
        return FirstLayerBound(4.0 * lambda_min, "linear model: δ_i = 1, α ≥ 4 λ_min(XXᵀ)", lambda_min, 1,
                               kappa=1.0)
    d1 = params["W1"].shape[0]
    hidden_min = [float(params[f"W{ell}"].min()) for ell in range(2, depth + 1)]
    M = float(params["v"].min())
    base = FirstLayerBound(None, "", lambda_min, d1, M, hidden_min)
    low = [(ell, c) for ell, c in zip(range(2, depth + 1), hidden_min, strict=True) if c <= radius]
    if low:
        ell, c = low[0]
        base.reason = f"no certified bound: min W{ell} = {c:.3g} is not above the radius {radius:.3g}"
        return base
    if M <= radius:
        base.reason = f"no certified bound: min v = {M:.3g} is not above the radius {radius:.3g}"
        return base
    ranges = preactivation_ranges(params, X, radius, activation, depth, bias)
    s = [sigma_prime_lower(activation, lo, hi) for lo, hi in ranges]
    kappa = math.prod(s)
    for ell, c in zip(range(2, depth + 1), hidden_min, strict=True):
        kappa *= (c - radius) * params[f"W{ell}"].shape[0]
    base.sigma_prime_lower, base.kappa = s, kappa
    base.alpha_lower_bound = 4.0 * lambda_min * d1 * (M - radius) ** 2 * kappa**2
    base.reason = "first-layer bound: α ≥ 4 λ_min(XXᵀ) d₁ (M − r)² κ² (docs/theory.md §2.3, derived)"
    zero = [ell for ell, value in enumerate(s, start=1) if value <= 0.0]
    if zero:
        ell = zero[0]
        lo, hi = ranges[ell - 1]
        reach = max(abs(float(lo.min())), abs(float(hi.max())))
        base.reason = (
            f"no useful bound (α ≥ 0): {activation.name}′ has no positive lower bound on layer {ell}'s pre-activations "
            f"reachable in B(w₀, r), which span up to |z| = {reach:.3g} (σ′ rounds to 0 there in float64); the range "
            "grows with the radius and with hidden weight × width — lower the radius or the hidden weights"
        )
    elif kappa < _TINY:
        base.reason += f"; κ = {kappa:.3g} underflows float64"
    return base
