"""Exact population risk L(a, u) = ∫₀¹ (f(x; a, u) − f*(x))² dx, its gradient, and the fast problem's a*(u).

MATH §3.2: σ is piecewise polynomial (cubic, with breaks at z = −½, 0, ½) and f* piecewise constant, so on every
cell of [0, 1] cut by all breakpoints — 0, 1, the jumps v_i, and u_j − η/2, u_j, u_j + η/2 for every neuron — the
integrand (f − f*)² is a polynomial of degree ≤ 6. A 4-point Gauss–Legendre rule (exact to degree 7) per cell
therefore gives the integral exactly, up to round-off, with no adaptive quadrature; the same nodes integrate the
gradient integrands (degree ≤ 5) and the normal equations of the least-squares problem (degree ≤ 6) exactly.
Everything is vectorised over members and cells.

    L(a, u)      = Σ_cells Σ_q w_q (f(x_q) − f*(x_q))²
    ∂L/∂a_j      = 2 ∫ (f − f*) φ_j,             φ_0 = 1, φ_j = σ((x − u_j)/η)
    ∂L/∂u_j      = −(2 a_j/η) ∫ (f − f*) σ′((x − u_j)/η)
    a*(u)        = argmin_a L(a, u) = G⁺ b,      G = ∫ Φ Φᵀ,  b = ∫ Φ f*

(The boundary terms of Leibniz's rule vanish: the integrand is continuous across the moving breakpoints.)

References:
    Marion & Berthier, NeurIPS 2023, §3 (population risk, fast problem); MATH §3.2–3.3.

Example:
    >>> from zeroloss.twotimescale.targets import target_preset
    >>> f = target_preset("paper"); u = np.array([[0.2]]); a = np.array([[1.0, 3.0]])
    >>> # one neuron on a jump of 3 with a = 3, f* = 1 then 4 beyond .35: the rest is the missed jumps
    >>> float(exact_risk(a, u, 0.01, f)[0]) > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zeroloss.twotimescale.model import check_params, features, sigma_d1

#: Gauss–Legendre order per cell: 4 nodes integrate polynomials of degree ≤ 7 exactly; (f − f*)² has degree 6.
GL_ORDER = 4
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(GL_ORDER)


@dataclass(frozen=True)
class Quadrature:
    """Nodes and weights, per member, of the exact cell-wise rule on [0, 1]: x (R, Q), w (R, Q)."""

    x: np.ndarray
    w: np.ndarray


def quadrature(u: np.ndarray, eta: float, target) -> Quadrature:
    """The exact rule for f, f* with positions u (R, m): cells cut at 0, 1, the jumps and u_j + η·{−½, 0, ½}."""
    u = np.asarray(u, dtype=np.float64)
    R = u.shape[0]
    cuts = np.concatenate([u - eta / 2, u, u + eta / 2], axis=1)
    fixed = np.broadcast_to(np.concatenate([[0.0, 1.0], target.jumps]), (R, len(target.jumps) + 2))
    points = np.sort(np.clip(np.concatenate([cuts, fixed], axis=1), 0.0, 1.0), axis=1)
    left, right = points[:, :-1], points[:, 1:]
    half = (right - left)[:, :, None] / 2.0
    mid = (right + left)[:, :, None] / 2.0
    x = (mid + half * _GL_NODES).reshape(R, -1)
    w = (half * _GL_WEIGHTS).reshape(R, -1)
    return Quadrature(x, w)


def exact_risk(a: np.ndarray, u: np.ndarray, eta: float, target) -> np.ndarray:
    """L(a, u) = ∫₀¹ (f − f*)² dx, exactly. a (R, m + 1), u (R, m) → (R,)."""
    a, u = check_params(a, u, eta)
    q = quadrature(u, eta, target)
    resid = (features(u, q.x, eta) @ a[:, :, None])[:, :, 0] - target(q.x)
    return np.sum(q.w * resid**2, axis=1)


def risk_and_grad(a: np.ndarray, u: np.ndarray, eta: float, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L (R,), ∂L/∂a (R, m + 1), ∂L/∂u (R, m)), all exact (see the module docstring)."""
    a, u = check_params(a, u, eta)
    q = quadrature(u, eta, target)
    phi = features(u, q.x, eta)
    resid = (phi @ a[:, :, None])[:, :, 0] - target(q.x)
    wr = (q.w * resid)[:, None, :]
    risk = (wr @ resid[:, :, None])[:, 0, 0]
    grad_a = 2.0 * (wr @ phi)[:, 0, :]
    dphi = sigma_d1((q.x[:, :, None] - u[:, None, :]) / eta)
    grad_u = -(2.0 / eta) * a[:, 1:] * (wr @ dphi)[:, 0, :]
    return risk, grad_a, grad_u


def normal_equations(u: np.ndarray, eta: float, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G (R, m+1, m+1), b (R, m+1), c (R,)) with L(a, u) = aᵀGa − 2bᵀa + c, all exact."""
    u = np.asarray(u, dtype=np.float64)
    q = quadrature(u, eta, target)
    phi = features(u, q.x, eta)
    fstar = target(q.x)
    weighted = np.swapaxes(phi * q.w[:, :, None], 1, 2)
    G = weighted @ phi
    b = (weighted @ fstar[:, :, None])[:, :, 0]
    c = np.sum(q.w * fstar**2, axis=1)
    return G, b, c


#: Relative cut-off of G's eigenvalues in the pseudo-inverse: G is singular when two neurons coincide or a neuron
#: leaves [−η/2, 1 + η/2]; 1e-12 of the largest eigenvalue is far above float64 round-off (~1e-16 · cond) and far
#: below any genuine direction (the smallest genuine eigenvalues here are ≳ 1e-8 for positions ≥ 1e-6 apart).
PINV_RCOND = 1e-12


def optimal_outer(u: np.ndarray, eta: float, target) -> np.ndarray:
    """a*(u) = argmin_a L(a, u) (the fast problem, MATH §3.3), minimum-norm when not unique: (R, m) → (R, m+1)."""
    G, b, _ = normal_equations(u, eta, target)
    return (np.linalg.pinv(G, rcond=PINV_RCOND, hermitian=True) @ b[:, :, None])[:, :, 0]
