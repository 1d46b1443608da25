"""Appendix full-batch GD with two optimisers (docs/theory.md §3.4): σ, hand-written gradients, the regimes."""

import numpy as np
import pytest
import torch

from zeroloss.activations import get_activation
from zeroloss.errors import ZerolossInputError
from zeroloss.papers.marion2023.twotimescale import two_optimizer_gd
from zeroloss.papers.marion2023.twotimescale.gd import (
    Workspace,
    additive_forward,
    criterion_and_grad,
    cubic_step_poly,
    cubic_step_poly_d1,
    gd_per_seed,
    make_data,
    relu_forward,
    weighted_features,
    weighted_sum,
)


def test_polynomial_cubic_step_equals_the_registered_activation():
    z = torch.linspace(-1.0, 1.0, 20_001, dtype=torch.float64)
    act = get_activation("cubic_step")
    # Same cubic, expanded: the two evaluations differ by round-off of O(1) numbers only.
    torch.testing.assert_close(cubic_step_poly(z), act.fn(z), rtol=0, atol=1e-15)
    torch.testing.assert_close(cubic_step_poly_d1(z), act.d1(z), rtol=0, atol=1e-14)


@pytest.mark.parametrize("model,d", [("additive", 3), ("relu", 1)])
def test_hand_written_gradient_matches_autograd(model, d):
    x_np, y_np = make_data(model, d, 200, seed=1)
    x, y = torch.tensor(x_np), torch.tensor(y_np)
    rng = np.random.default_rng(2)
    shape = (2, 5, d) if model == "additive" else (2, 5)
    a = torch.tensor(3 * rng.random(shape), requires_grad=True)
    u = torch.tensor(rng.random(shape), requires_grad=True)
    eta = 0.05  # wide enough that many samples fall on the cubic pieces of σ
    pred = additive_forward(a, u, x, eta) if model == "additive" else relu_forward(a, u, x)
    (pred - y).norm(dim=1).sum().div(x.shape[0]).backward()
    crit, grad_a, grad_u = criterion_and_grad(model, a.detach(), u.detach(), x, y, eta)
    torch.testing.assert_close(crit, (pred - y).detach().norm(dim=1) / x.shape[0], rtol=1e-13, atol=0)
    # Both are exact formulas for the same derivative, summed in different orders: agreement to round-off.
    torch.testing.assert_close(grad_a, a.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(grad_u, u.grad, rtol=1e-10, atol=1e-14)


def test_two_timescale_gd_beats_the_standard_regime_on_the_2d_target():
    std = two_optimizer_gd("additive", d=2, n=400, lr_a=1.0, lr_u=1.0, epochs=300, repeats=3, seed=0, logs=5)
    two = two_optimizer_gd("additive", d=2, n=400, lr_a=1.0, lr_u=0.01, epochs=3000, repeats=3, seed=0, logs=5)
    assert std.criterion.shape == (6, 3) and not two.diverged.any()
    assert np.all(two.criterion[-1] < two.criterion[0])  # descends
    # The appendix's finding (same initialisations: member k from seed k): a lower median final criterion. Only
    # the direction the paper reports is asserted, no margin (measured medians here: 0.011 vs 0.020).
    assert np.median(two.final_criterion) < np.median(std.final_criterion)


def test_relu_model_is_univariate():
    with pytest.raises(ZerolossInputError, match="d: the ReLU model is univariate"):
        two_optimizer_gd("relu", d=2, n=10, lr_a=1.0, lr_u=0.01, epochs=1)


def test_a_reused_workspace_gives_the_fresh_allocation_result():
    """The buffers of a Workspace carry nothing from one call to the next: every entry is overwritten."""
    x_np, y_np = make_data("additive", 3, 300, seed=1)
    x, y = torch.tensor(x_np), torch.tensor(y_np)
    rng = np.random.default_rng(4)
    work = Workspace()
    for _ in range(2):  # a second call with other parameters reuses the first call's buffers
        a, u = torch.tensor(3 * rng.random((2, 5, 3))), torch.tensor(rng.random((2, 5, 3)))
        reused = criterion_and_grad("additive", a, u, x, y, 0.05, work)
        fresh = criterion_and_grad("additive", a, u, x, y, 0.05)
        for r, f in zip(reused, fresh, strict=True):
            torch.testing.assert_close(r, f, rtol=0, atol=0)


@pytest.mark.parametrize("model,d", [("additive", 2), ("relu", 1)])
def test_a_seed_trained_beside_others_is_the_same_run_as_alone(model, d):
    """gd_per_seed's member k (its own sample and initialisation) is two_optimizer_gd(repeats=1, seed=seeds[k]),
    bit for bit; the standard regime (lr_u = 1) is the one most sensitive to round-off."""
    together = gd_per_seed(model, d, 300, 1.0, 1.0, 200, [3, 0, 7], logs=10)
    for k, seed in enumerate([3, 0, 7]):
        alone = two_optimizer_gd(model, d, 300, 1.0, 1.0, 200, repeats=1, seed=seed, logs=10)
        np.testing.assert_array_equal(together.criterion[:, k], alone.criterion[:, 0])
        np.testing.assert_array_equal(together.a[k], alone.a[0])
        np.testing.assert_array_equal(together.u[k], alone.u[0])
        np.testing.assert_array_equal(together.x[k], alone.x)


def test_the_batched_products_are_einsums_bit_for_bit():
    rng = np.random.default_rng(5)
    phi, a, g = (torch.tensor(rng.random(shape)) for shape in ((3, 400, 10, 4), (3, 10, 4), (3, 400)))
    torch.testing.assert_close(weighted_features(a, phi), torch.einsum("rjk,rnjk->rn", a, phi), rtol=0, atol=0)
    torch.testing.assert_close(weighted_sum(g, phi), torch.einsum("rn,rnjk->rjk", g, phi), rtol=0, atol=0)
    torch.testing.assert_close(weighted_sum(g, phi[..., 0].contiguous()),
                               torch.einsum("rn,rnj->rj", g, phi[..., 0]), rtol=0, atol=0)


def test_the_sample_grid_follows_its_sample():
    """The workspace's x repeated over the neurons is rebuilt for another sample and after an in-place change."""
    work = Workspace()
    x = torch.tensor(np.random.default_rng(6).random((2, 50, 3)))
    torch.testing.assert_close(work.sample_grid(x, 4), x[:, :, None, :].expand(2, 50, 4, 3), rtol=0, atol=0)
    x.mul_(2.0)
    torch.testing.assert_close(work.sample_grid(x, 4), x[:, :, None, :].expand(2, 50, 4, 3), rtol=0, atol=0)
    other = x[:1].clone()
    assert work.sample_grid(other, 5).shape == (1, 50, 5, 3)
