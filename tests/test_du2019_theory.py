"""Du et al.'s predictions: contraction bound, stable step, scalings, and a real GD run against the bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from zeroloss import (
    compare_contraction,
    contraction_bound,
    gram,
    lambda0,
    lambda_max,
    largest_stable_step,
    sphere_data,
    step_scaling,
    train_gd,
    width_scaling,
)
from zeroloss.errors import ZerolossInputError
from zeroloss.nets import FullyConnected
from zeroloss.papers.du2019.theory import (
    kernel_deviation,
    kernel_loss_prediction,
    kernel_steps_to,
    per_step_contraction,
)
from zeroloss.train.gd import GDRun
from zeroloss.train.step import UnstableStepWarning

pytestmark = pytest.mark.usefixtures("one_thread")


def test_contraction_bound_and_its_validation():
    assert contraction_bound(0.1, 0.4) == pytest.approx(0.98, abs=1e-15)
    with pytest.raises(ZerolossInputError, match="lambda0"):
        contraction_bound(0.1, 0.0)
    with pytest.raises(ZerolossInputError, match="lr"):
        contraction_bound(-1.0, 0.3)


def test_largest_stable_step_is_two_over_lambda_max():
    G = torch.diag(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64))
    assert largest_stable_step(G) == pytest.approx(0.5, abs=1e-15)
    stack = torch.stack([G, 2 * G])
    assert torch.allclose(largest_stable_step(stack), torch.tensor([0.5, 0.25], dtype=torch.float64))


def test_scalings_follow_the_table_and_never_invent_constants():
    base = dict(n=20, depth=3, lambda0=0.1)
    # ResNet step ∝ λH²/n²: doubling H multiplies it by 4; doubling n divides it by 4
    r = step_scaling("resnet", **base, constant=1.0)
    assert step_scaling("resnet", n=20, depth=6, lambda0=0.1, constant=1.0) == pytest.approx(4 * r)
    assert step_scaling("resnet", n=40, depth=3, lambda0=0.1, constant=1.0) == pytest.approx(r / 4)
    # FC: 2^{O(H)} = depth_base^H, one more layer multiplies the width by depth_base and divides the step by it
    w3 = width_scaling("fc", **base, delta=0.1, constant=1.0, depth_base=3.0)
    w4 = width_scaling("fc", n=20, depth=4, lambda0=0.1, delta=0.1, constant=1.0, depth_base=3.0)
    assert w4 == pytest.approx(3.0 * w3)
    assert w3 == pytest.approx(27.0 * 20**4 / 0.1**4)  # n⁴/λ⁴ dominates the max here
    # conv-ResNet = ResNet × poly(p) for the width, ÷ poly(p) for the step
    wr = width_scaling("resnet", **base, delta=0.1, constant=2.0)
    assert width_scaling("conv-resnet", **base, delta=0.1, constant=2.0, poly_p=5.0) == pytest.approx(5 * wr)
    assert step_scaling("conv-resnet", **base, constant=1.0, poly_p=5.0) == pytest.approx(r / 5)
    # the hidden constants are required, never defaulted
    with pytest.raises(ZerolossInputError, match="depth_base"):
        width_scaling("fc", **base, delta=0.1, constant=1.0)
    with pytest.raises(ZerolossInputError, match="poly_p"):
        step_scaling("conv-resnet", **base, constant=1.0)
    with pytest.raises(TypeError):
        step_scaling("resnet", **base)  # constant is keyword-only and required


def _fake_run(losses: np.ndarray, lr: float) -> GDRun:
    net = FullyConnected(2, 4, 1, "softplus", losses.shape[1], 0, torch.float64)
    return GDRun(net=net, history=pd.DataFrame(), losses=losses, lr=np.full(losses.shape[1], lr))


def test_compare_contraction_on_known_losses():
    k = np.arange(11)[:, None]
    losses = np.hstack([0.9**k, 0.99**k])  # member 0 contracts by 0.9, member 1 by 0.99 per step
    table = compare_contraction(_fake_run(losses, lr=0.1), lambda0=1.0)  # bound = 1 − 0.05 = 0.95
    assert table["bound"].tolist() == pytest.approx([0.95, 0.95])
    assert table["worst_ratio"].tolist() == pytest.approx([0.9, 0.99])
    assert table["geometric_mean_ratio"].tolist() == pytest.approx([0.9, 0.99])
    assert table["holds"].tolist() == [True, False]
    assert table["steps_used"].tolist() == [10, 10]


def test_compare_contraction_stops_at_the_round_off_floor():
    losses = np.array([[1.0], [0.5], [0.25], [1e-40], [2e-40]])
    table = compare_contraction(_fake_run(losses, lr=0.1), lambda0=1.0)
    assert table["steps_used"][0] == 2  # the 1e-40 step is below (1e4·eps)² ≈ 5e-24 of L(0): not used
    assert table["worst_ratio"][0] == pytest.approx(0.5)


def test_wide_fc_net_contracts_at_least_as_fast_as_du_bound():
    """Linear rate (docs/theory.md §1.5): L(k+1) ≤ (1 − ηλ₀/2) L(k) for a wide net and a small step.

    Width 512 and η = 0.5/λ_max(G(0)) (a quarter of the largest stable step 2/λ_max): Du et al.'s theorem
    needs λ_min(G(k)) ≥ λ₀/2 along the run and η small enough for the second-order term, both satisfied here
    with room to spare (the full Gram's λ_min is ~3× λ₀ since every layer contributes). The bound is compared
    with no slack: the loss is computed in float64 and the run stops being measured once L falls to
    (1e4·eps)² L(0), so round-off in the ratios is below 1e-10, far under the margin ηλ₀/2 ≈ 1e-4.
    """
    X, y = sphere_data(n=6, d=4, seed=0)
    lam0 = lambda0(X, net="fc", depth=2, activation="softplus")
    net = FullyConnected(4, 512, 2, "softplus", members=2, seed=0, dtype=torch.float64)
    eta = 0.5 / lambda_max(gram(net, X))  # (S,) per-member steps
    run = train_gd(net, X, y, lr=eta, steps=120, probes=["loss"], progress=False)
    table = compare_contraction(run, lam0)
    assert (table["steps_used"] == 120).all()
    assert table["holds"].all(), table
    assert (table["geometric_mean_ratio"] <= table["bound"]).all()
    # the comparison can fail: λ₀ = 1/η would claim that the loss halves at every step, which it does not
    assert not compare_contraction(run, 1.0 / float(eta.max()))["holds"].any()


def test_step_beyond_two_over_lambda_max_does_not_contract():
    """η = 1.2 × 2/λ_max grows the top eigen-mode by |1 − 2.4| = 1.4 per step; 0.8 × 2/λ_max shrinks every mode.

    Below the limit every mode of the linearised dynamics shrinks, so the loss decreases at every step. Above
    it the loss must rise at some step; it may come back down afterwards (the "catapult" of Lewkowycz et al.
    2020: the spike lowers λ_max until the step is stable), so the test asks for the spike, not for divergence.
    """
    X, y = sphere_data(n=6, d=4, seed=1)
    net = FullyConnected(4, 512, 2, "softplus", members=2, seed=5, dtype=torch.float64)
    limit = largest_stable_step(gram(net, X))
    scale = torch.tensor([0.8, 1.2], dtype=torch.float64)
    with pytest.warns(UnstableStepWarning, match="member 1's step") as caught:  # 1.2 × the bound, and only it
        run = train_gd(net, X, y, lr=scale * limit, steps=20, probes=["loss"], progress=False)
    assert len(caught) == 1
    stable, unstable = run.losses[:, 0], run.losses[:, 1]
    assert (np.diff(stable) < 0).all()
    assert np.nanmax(unstable) > unstable[0] or not np.isfinite(unstable).all()


# ------------------------------------------------------------------------------------- kernel dynamics

def test_kernel_prediction_is_exact_for_linear_dynamics():
    """Reference problem: for r(k+1) = (I − ηG) r(k) (a linear model, G fixed) the loss is exactly L̂_k."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 7))
    G = torch.tensor(A @ A.T)
    r0 = torch.tensor(rng.standard_normal(5))
    eta = 1.0 / float(torch.linalg.eigvalsh(G)[-1])
    r, direct = r0.numpy(), []
    for _ in range(31):
        direct.append(0.5 * float(r @ r))
        r = r - eta * (G.numpy() @ r)
    predicted = kernel_loss_prediction(G, r0, eta, 30)
    # 1e-12 relative: 30 float64 matrix-vector products against an eigendecomposition, both backward stable
    np.testing.assert_allclose(predicted, direct, rtol=1e-12)
    stacked = kernel_loss_prediction(torch.stack([G, 2 * G]), torch.stack([r0, r0]), [eta, eta / 2], 30)
    np.testing.assert_allclose(stacked[:, 0], predicted, rtol=1e-14)  # η/2 on 2G: the same dynamics
    np.testing.assert_allclose(stacked[:, 1], predicted, rtol=1e-12)


def test_kernel_steps_to_is_the_first_step_below_the_fraction():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    G = torch.tensor(A @ A.T + 0.05 * np.eye(6))
    r0 = torch.tensor(rng.standard_normal(6))
    eta = 1.0 / float(torch.linalg.eigvalsh(G)[-1])
    curve = kernel_loss_prediction(G, r0, eta, 20000)
    for fraction in (0.5, 1e-2, 1e-4):
        k = int(kernel_steps_to(G, r0, eta, fraction))
        assert curve[k] <= fraction * curve[0] < curve[k - 1]
    assert int(kernel_steps_to(G, r0, eta, 1e-4, max_steps=3)) == -1  # not within the limit
    with pytest.raises(ZerolossInputError, match="fraction"):
        kernel_steps_to(G, r0, eta, 1.5)


def test_kernel_deviation_measures_the_gap_in_residual_norms():
    L = np.array([4.0, 1.0, 0.25])
    assert kernel_deviation(L, L) == 0.0
    assert kernel_deviation(L, np.array([4.0, 0.25, 0.0])) == pytest.approx(0.25)  # |1 − 0.5| / 2
    assert kernel_deviation(np.array([4.0, np.nan, 1.0]), L) == np.inf  # a diverged run does not track
    assert kernel_deviation(100 * L, 100 * np.array([4.0, 0.25, 0.0])) == pytest.approx(0.25)  # scale-free


def test_per_step_contraction_uses_each_steps_lambda_min_and_stops_at_round_off():
    L = np.array([1.0, 0.5, 0.3, 0.2, 1e-40, 1e-41])
    lam = np.array([4.0, 4.0, 2.0, 2.0, 2.0, 2.0])
    table = per_step_contraction(L, 0.25, lam)  # bounds 0.5, 0.5, 0.75, 0.75
    assert table["steps_checked"].item() == 3  # step 3 → 4 lands below (1e4·eps)² L(0): not checked
    assert table["violations"].item() == 1  # 0.3/0.5 = 0.6 > 0.5
    assert table["worst_excess"].item() == pytest.approx(0.1)
    with pytest.raises(ZerolossInputError, match="lambda_min"):
        per_step_contraction(L, 0.25, lam[:3])


def test_a_wide_net_contracts_at_every_step_and_tracks_its_kernel_better_than_a_narrow_one():
    """λ_min(G(k)) probed at every step; η = 1/λ_max(G(0)). The per-step bound holds at m = 512 with no slack
    (float64 ratios, round-off ≪ the margin 1.5ηλ_min ≈ 1e-2); the kernel deviation is below 0.05 there and
    larger at m = 16 (seed means over 3 seeds)."""
    X, y = sphere_data(n=6, d=8, seed=0)
    deviation = {}
    for m in (16, 512):
        net = FullyConnected(8, m, 2, "softplus", members=3, seed=0, dtype=torch.float64)
        G0 = gram(net, X)
        eta = 1.0 / lambda_max(G0)
        with torch.no_grad():
            r0 = net(X) - y
        run = train_gd(net, X, y, lr=eta, steps=150, probe_every=1, probes=["loss", "lambda_min"],
                       progress=False)
        predicted = kernel_loss_prediction(G0, r0, eta, run.steps)
        deviation[m] = kernel_deviation(run.losses, predicted)
        if m == 512:
            table = per_step_contraction(run.losses, eta.numpy(), run.metric("lambda_min").to_numpy())
            assert (table["steps_checked"] == 150).all() and (table["violations"] == 0).all(), table
            # negative control: λ_min = 1/η would claim that the loss halves at every step, which it does not
            halving = np.broadcast_to(1.0 / eta.numpy(), run.losses.shape)
            assert (per_step_contraction(run.losses, eta.numpy(), halving)["violations"] > 0).all()
    assert deviation[512].max() < 0.05
    assert deviation[512].mean() < deviation[16].mean() / 3
