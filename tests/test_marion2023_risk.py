"""Exact population risk, its gradient, the fast problem, and the Δf²η/28 floor (docs/theory.md §3.2–3.3)."""

import numpy as np
import pytest
from scipy import integrate

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.marion2023.twotimescale import (
    PiecewiseConstant,
    exact_risk,
    forward,
    optimal_outer,
    risk_and_grad,
    target_preset,
)

ETA = 0.05  # wide enough that σ's cubic pieces matter, small enough that several neurons sit inside [0, 1]


def _random_params(seed: int, m: int = 6):
    rng = np.random.default_rng(seed)
    u = np.sort(rng.random((2, m)), axis=1)
    a = rng.normal(size=(2, m + 1)) * 2
    return a, u


def _quad_risk(a, u, target, eta):
    breaks = np.concatenate([target.jumps, u - eta / 2, u, u + eta / 2])
    breaks = np.unique(np.clip(breaks, 0, 1))

    def integrand(x):
        return (forward(a[None], u[None], np.array([x]), eta)[0, 0] - target(np.array([x]))[0]) ** 2

    value, _ = integrate.quad(integrand, 0.0, 1.0, points=breaks, limit=500, epsabs=1e-13, epsrel=1e-12)
    return value


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("preset", ["paper", "code"])
def test_exact_risk_matches_adaptive_quadrature(seed, preset):
    target = target_preset(preset)
    a, u = _random_params(seed)
    exact = exact_risk(a, u, ETA, target)
    reference = [_quad_risk(a[r], u[r], target, ETA) for r in range(2)]
    # Gauss–Legendre is exact per cell (degree 6 ≤ 7); scipy's adaptive rule is asked for 1e-12 relative.
    np.testing.assert_allclose(exact, reference, rtol=1e-9)


def test_gradient_matches_central_differences():
    target = target_preset("paper")
    a, u = _random_params(3)
    _, grad_a, grad_u = risk_and_grad(a, u, ETA, target)
    step = 1e-6
    for which, grad in (("a", grad_a), ("u", grad_u)):
        base = a if which == "a" else u
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[idx] += step
            minus[idx] -= step
            args_p = (plus, u) if which == "a" else (a, plus)
            args_m = (minus, u) if which == "a" else (a, minus)
            numeric[idx] = (exact_risk(*args_p, ETA, target)[idx[0]] - exact_risk(*args_m, ETA, target)[idx[0]]) / (
                2 * step)
        # central differences of a C¹ piecewise polynomial: O(step²) truncation plus round-off ~1e-16/step ≈ 1e-10
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


def test_one_neuron_on_a_jump_leaves_exactly_delta_f_squared_eta_over_28():
    jump = 3.0
    target = PiecewiseConstant(np.array([0.5]), np.array([1.0, 1.0 + jump]))
    u = np.array([[0.5]])
    a = np.array([[1.0, jump]])
    expected = jump**2 * ETA / 28
    np.testing.assert_allclose(exact_risk(a, u, ETA, target), [expected], rtol=1e-12)
    # The fast problem's optimum at that position can only do better, and barely: on [0, 1] the bias and the
    # neuron trade a little error between the two sides (about 1 % here), so the floor is Δf²η/28 up to that.
    best = exact_risk(optimal_outer(u, ETA, target), u, ETA, target)[0]
    assert expected * 0.98 <= best <= expected


def test_optimal_outer_minimises_the_risk():
    target = target_preset("paper")
    _, u = _random_params(5)
    a_star = optimal_outer(u, ETA, target)
    best = exact_risk(a_star, u, ETA, target)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert (exact_risk(a_star + 1e-3 * rng.normal(size=a_star.shape), u, ETA, target) >= best).all()
    _, grad_a, _ = risk_and_grad(a_star, u, ETA, target)
    assert np.abs(grad_a).max() < 1e-9


def test_reduced_gradient_is_optimal_outer_then_risk_and_grad_bit_for_bit():
    """The limit's velocity shares one evaluation of the integrands between a*(u) and ∇_u L: the same numbers."""
    from zeroloss.papers.marion2023.twotimescale.risk import reduced_gradient

    target = target_preset("paper")
    _, u = _random_params(5, m=20)
    a_star, grad_u = reduced_gradient(u, 4e-3, target)
    expected_a = optimal_outer(u, 4e-3, target)
    np.testing.assert_array_equal(a_star, expected_a)
    np.testing.assert_array_equal(grad_u, risk_and_grad(expected_a, u, 4e-3, target)[2])


def test_bad_target_names_the_field():
    with pytest.raises(ZerolossInputError, match="jumps: strictly increasing"):
        PiecewiseConstant(np.array([0.6, 0.4]), np.array([0.0, 1.0, 2.0]))
