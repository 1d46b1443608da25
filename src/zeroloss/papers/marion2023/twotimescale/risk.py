"""Exact population risk L(a, u) = ∫₀¹ (f(x; a, u) − f*(x))² dx, its gradient, and the fast problem's a*(u).

docs/theory.md §3.2: σ is piecewise polynomial (cubic, with breaks at z = −½, 0, ½) and f* piecewise constant, so on
every cell of [0, 1] cut by all breakpoints — 0, 1, the jumps v_i, and u_j − η/2, u_j, u_j + η/2 for every neuron — the
integrand (f − f*)² is a polynomial of degree ≤ 6. A 4-point Gauss–Legendre rule (exact to degree 7) per cell
therefore gives the integral exactly, up to round-off, with no adaptive quadrature; the same nodes integrate the
gradient integrands (degree ≤ 5) and the normal equations of the least-squares problem (degree ≤ 6) exactly.
Everything is vectorised over members and cells.

    L(a, u)      = Σ_cells Σ_q w_q (f(x_q) − f*(x_q))²
    ∂L/∂a_j      = 2 ∫ (f − f*) φ_j,             φ_0 = 1, φ_j = σ((x − u_j)/η)
    ∂L/∂u_j      = −(2 a_j/η) ∫ (f − f*) σ′((x − u_j)/η)
    a*(u)        = argmin_a L(a, u) = G⁺ b,      G = ∫ Φ Φᵀ,  b = ∫ Φ f*

:func:`label_noise_excess` is the O(h) risk online SGD keeps above L(a*(u), u) at frozen u (from the same G).

(The boundary terms of Leibniz's rule vanish: the integrand is continuous across the moving breakpoints.)

References:
    Marion & Berthier, NeurIPS 2023, §3 (population risk, fast problem); docs/theory.md §3.2–3.3.

Examples:
    >>> from zeroloss.papers.marion2023.twotimescale.targets import target_preset
    >>> f = target_preset("paper"); u = np.array([[0.2]]); a = np.array([[1.0, 3.0]])
    >>> # one neuron on a jump of 3 with a = 3, f* = 1 then 4 beyond .35: the rest is the missed jumps
    >>> float(exact_risk(a, u, 0.01, f)[0]) > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zeroloss.papers.marion2023.twotimescale.model import check_params, features, sigma_d1

#: Gauss–Legendre order per cell: 4 nodes integrate polynomials of degree ≤ 7 exactly; (f − f*)² has degree 6.
GL_ORDER = 4
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(GL_ORDER)


@dataclass(frozen=True)
class Quadrature:
    """Nodes and weights, per member, of the exact cell-wise rule on [0, 1]: x (R, Q), w (R, Q)."""

    x: np.ndarray
    w: np.ndarray


def quadrature(u: np.ndarray, eta: float, target, order: int = GL_ORDER) -> Quadrature:
    """The exact rule for f, f* with positions u (R, m): cells cut at 0, 1, the jumps and u_j + η·{−½, 0, ½};
    ``order`` Gauss–Legendre nodes per cell integrate piecewise polynomials of degree ≤ 2·order − 1 exactly."""
    u = np.asarray(u, dtype=np.float64)
    R = u.shape[0]
    cuts = np.concatenate([u - eta / 2, u, u + eta / 2], axis=1)
    fixed = np.broadcast_to(np.concatenate([[0.0, 1.0], target.jumps]), (R, len(target.jumps) + 2))
    points = np.sort(np.clip(np.concatenate([cuts, fixed], axis=1), 0.0, 1.0), axis=1)
    left, right = points[:, :-1], points[:, 1:]
    half = (right - left)[:, :, None] / 2.0
    mid = (right + left)[:, :, None] / 2.0
    nodes, weights = (_GL_NODES, _GL_WEIGHTS) if order == GL_ORDER else np.polynomial.legendre.leggauss(order)
    x = (mid + half * nodes).reshape(R, -1)
    w = (half * weights).reshape(R, -1)
    return Quadrature(x, w)


@dataclass(frozen=True)
class Integrands:
    """What every integral at positions u is made of: the exact rule ``q`` (:func:`quadrature`), the features
    Φ = [1, σ((x − u_j)/η)] at its nodes (R, Q, m + 1) and f* there (R, Q). Built once (:func:`integrands`), they
    serve both the fast problem and the gradient of one step of the limit (:func:`reduced_gradient`)."""

    q: Quadrature
    phi: np.ndarray
    fstar: np.ndarray


def integrands(u: np.ndarray, eta: float, target) -> Integrands:
    """:class:`Integrands` at positions u (R, m)."""
    q = quadrature(u, eta, target)
    return Integrands(q, features(u, q.x, eta), target(q.x))


def exact_risk(a: np.ndarray, u: np.ndarray, eta: float, target) -> np.ndarray:
    """L(a, u) = ∫₀¹ (f − f*)² dx, exactly. a (R, m + 1), u (R, m) → (R,)."""
    a, u = check_params(a, u, eta)
    at = integrands(u, eta, target)
    resid = _residual(a, at)
    return np.sum(at.q.w * resid**2, axis=1)


def _residual(a: np.ndarray, at: Integrands) -> np.ndarray:
    """f − f* at the nodes of the rule: (R, Q)."""
    return (at.phi @ a[:, :, None])[:, :, 0] - at.fstar


def risk_and_grad(a: np.ndarray, u: np.ndarray, eta: float, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L (R,), ∂L/∂a (R, m + 1), ∂L/∂u (R, m)), all exact (see the module docstring)."""
    a, u = check_params(a, u, eta)
    return _risk_and_grad(a, u, eta, integrands(u, eta, target))


def _risk_and_grad(a: np.ndarray, u: np.ndarray, eta: float, at: Integrands) -> tuple[np.ndarray, ...]:
    """:func:`risk_and_grad` from the integrands at u."""
    resid = _residual(a, at)
    wr = (at.q.w * resid)[:, None, :]
    risk = (wr @ resid[:, :, None])[:, 0, 0]
    grad_a = 2.0 * (wr @ at.phi)[:, 0, :]
    dphi = sigma_d1((at.q.x[:, :, None] - u[:, None, :]) / eta)
    grad_u = -(2.0 / eta) * a[:, 1:] * (wr @ dphi)[:, 0, :]
    return risk, grad_a, grad_u


def normal_equations(u: np.ndarray, eta: float, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G (R, m+1, m+1), b (R, m+1), c (R,)) with L(a, u) = aᵀGa − 2bᵀa + c, all exact."""
    u = np.asarray(u, dtype=np.float64)
    return _normal_equations(integrands(u, eta, target))


def _normal_equations(at: Integrands) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`normal_equations` from the integrands at u."""
    weighted = np.swapaxes(at.phi * at.q.w[:, :, None], 1, 2)
    G = weighted @ at.phi
    b = (weighted @ at.fstar[:, :, None])[:, :, 0]
    c = np.sum(at.q.w * at.fstar**2, axis=1)
    return G, b, c


#: Relative cut-off of G's eigenvalues in the pseudo-inverse: G is singular when two neurons coincide or a neuron
#: leaves [−η/2, 1 + η/2]; 1e-12 of the largest eigenvalue is far above float64 round-off (~1e-16 · cond) and far
#: below any genuine direction (the smallest genuine eigenvalues here are ≳ 1e-8 for positions ≥ 1e-6 apart).
PINV_RCOND = 1e-12


def optimal_outer(u: np.ndarray, eta: float, target) -> np.ndarray:
    """a*(u) = argmin_a L(a, u) (the fast problem, docs/theory.md §3.3), minimum-norm when not unique.

    u: (R, m) → a*: (R, m + 1)."""
    G, b, _ = normal_equations(u, eta, target)
    return _least_squares(G, b)


def _least_squares(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimum-norm minimiser G⁺b of aᵀGa − 2bᵀa: G (R, m+1, m+1), b (R, m+1) → (R, m+1)."""
    return (np.linalg.pinv(G, rcond=PINV_RCOND, hermitian=True) @ b[:, :, None])[:, :, 0]


def reduced_gradient(u: np.ndarray, eta: float, target) -> tuple[np.ndarray, np.ndarray]:
    """(a*(u) (R, m + 1), ∇_u L(a*(u), u) (R, m)): the fast problem's solution and the gradient the ε → 0 limit
    descends (by the envelope theorem, ∂_u L at a = a*; docs/theory.md §3.3).

    The same numbers as :func:`optimal_outer` then :func:`risk_and_grad`, from one evaluation of the integrands
    (the rule, Φ and f* at its nodes are the two calls' common, and costliest, part)."""
    u = np.asarray(u, dtype=np.float64)
    at = integrands(u, eta, target)
    G, b, _ = _normal_equations(at)
    a, u = check_params(_least_squares(G, b), u, eta)
    return a, _risk_and_grad(a, u, eta, at)[2]


def label_noise_excess(u: np.ndarray, eta: float, h: float, noise: float, target) -> np.ndarray:
    """The risk online SGD keeps above L(a*(u), u) because of its sampling noise, to first order in h, per member.

    With u frozen (it moves hε ≪ h), the fast weights follow least-mean-squares with step μ = 2h: their error
    e = a − a*(u) obeys e ← (I − μΦΦᵀ)e + μνΦ, with ν = y − a*ᵀΦ = ξ + m(x) the label noise plus the misfit
    m = f* − f_{a*}, E[νΦ] = 0. At stationarity, to first order in μ, the covariance P of e solves the Lyapunov
    equation G P + P G = μ N with G = ∫ΦΦᵀ (:func:`normal_equations`) and N = E[ν² ΦΦᵀ] = σ_ξ² G + ∫ m² ΦΦᵀ; its
    trace gives the expected excess risk E[eᵀGe] = tr(GP) = (μ/2) tr N exactly, whatever the shape of P:

        excess = h (σ_ξ² tr G + ∫₀¹ m(x)² |Φ(x)|² dx),      σ_ξ² = noise²/3 for ξ ∼ U[−noise, noise].

    [derived; first order in h, valid while h·λ_max(G) ≪ 1: ≤ 2·10⁻² for h ≤ 10⁻³, m = 20.] The misfit term matters
    while jumps are uncovered (L(a*, u) is then comparable to σ_ξ²) and is ≈ 1 % of the first once every jump carries
    a neuron. The integrand m²|Φ|² is a piecewise polynomial of degree 12: 7 Gauss–Legendre nodes per cell.

    Args:
        u: (R, m) positions.
        eta: smoothing width η.
        h: the fast step size.
        noise: the label-noise half-width (1 in the paper).
        target: the piecewise-constant f*.

    Returns:
        (R,) the excess risk.

    Examples:
        >>> from zeroloss.papers.marion2023.twotimescale.targets import PiecewiseConstant
        >>> flat = PiecewiseConstant(np.array([0.5]), np.array([1.0, 1.0]))   # no misfit: only the label noise
        >>> u = np.array([[0.25, 0.5, 0.75]])   # tr G = 1 + Σ_j ∫₀¹σ² = 1 + Σ_j (1 − u_j − 5η/56)
        >>> excess = label_noise_excess(u, 0.004, 1e-3, 1.0, flat)
        >>> round(float(excess[0]) / (1e-3 / 3), 6), round(2.5 - 3 * 5 * 0.004 / 56, 6)
        (2.498929, 2.498929)
    """
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    G, b, _ = normal_equations(u, eta, target)
    a_star = _least_squares(G, b)
    q = quadrature(u, eta, target, order=7)
    phi = features(u, q.x, eta)
    misfit = target(q.x) - (phi @ a_star[:, :, None])[:, :, 0]
    misfit_term = np.sum(q.w * misfit**2 * np.sum(phi**2, axis=2), axis=1)
    return float(h) * (float(noise) ** 2 / 3.0 * np.trace(G, axis1=1, axis2=2) + misfit_term)
