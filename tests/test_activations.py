import math

import pytest
import torch

from zeroloss.activations import ACTIVATIONS, get_activation
from zeroloss.errors import ZerolossInputError

# Grid avoiding the kinks of relu (0) and of the cubic step (−½, 0, ½), where σ′ or σ″ jump.
GRID = torch.linspace(-3.1, 3.1, 401, dtype=torch.float64)
GRID = GRID[(GRID.abs() > 1e-3) & ((GRID.abs() - 0.5).abs() > 1e-3)]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_derivatives_match_autograd(name):
    act = ACTIVATIONS[name]
    z = GRID.clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(act.fn(z).sum(), z)
    z2 = GRID.clone().requires_grad_(True)
    slope = act.d1(z2)
    # relu's σ′ is a step (no graph): its σ″ is 0 away from the kink.
    d2 = torch.autograd.grad(slope.sum(), z2)[0] if slope.requires_grad else torch.zeros_like(GRID)
    # float64 autograd of the same closed forms: agreement to round-off (1e-12 is ~1e4 ulps of O(1) values).
    assert torch.allclose(act.d1(GRID), d1, atol=1e-12, rtol=1e-12)
    assert torch.allclose(act.d2(GRID), d2, atol=1e-11, rtol=1e-11)


def test_c_sigma_reference_values():
    # docs/theory.md §1.1 states c_σ(softplus) ≈ 1.0854865 (7 significant digits given there).
    assert ACTIVATIONS["softplus"].c_sigma == pytest.approx(1.0854865, abs=5e-8)
    assert ACTIVATIONS["relu"].c_sigma == 2.0
    # erf: E[erf(z)²] = (2/π) arcsin(2/3) exactly; Gauss–Hermite of a smooth function agrees to round-off.
    erf = ACTIVATIONS["erf"]
    gh = type(erf)("erf-gh", erf.fn, erf.d1, erf.d2, True, True, True, 0.0)
    assert gh.second_moment == pytest.approx((2 / math.pi) * math.asin(2 / 3), rel=1e-12)


def test_cubic_step_shape():
    act = ACTIVATIONS["cubic_step"]
    z = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    assert act.fn(z).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    # ∫σ′ = 1 (docs/theory.md §3.1): trapezoid on a fine grid, error O(h²) ≈ 1e-8.
    t = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)
    assert torch.trapezoid(act.d1(t), t).item() == pytest.approx(1.0, abs=1e-7)


def test_facts():
    assert not ACTIVATIONS["relu"].smooth
    assert all(ACTIVATIONS[k].strictly_increasing for k in ("softplus", "tanh", "sigmoid", "erf"))
    assert not ACTIVATIONS["gelu"].strictly_increasing
    assert ACTIVATIONS["softplus"].sigma0 == pytest.approx(math.log(2))


def test_unknown_activation_names_the_field():
    with pytest.raises(ZerolossInputError, match="activation: must be one of .*softplus"):
        get_activation("swish")
