import numpy as np
import pytest
import torch
from tests.conftest import make_net

from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.nets import FullyConnected
from zeroloss.train.gd import train_gd


def test_ensemble_with_per_member_lr_equals_separate_runs():
    X, y = sphere_data(n=8, d=4, seed=0)
    lrs = [0.05, 0.2, 0.4]
    net = FullyConnected(4, 64, 2, "softplus", members=3, seed=7, dtype=torch.float64)
    run = train_gd(net, X, y, lr=lrs, steps=30, probes=["loss"], progress=False)
    for k, lr in enumerate(lrs):
        single = FullyConnected(4, 64, 2, "softplus", members=1, seed=7 + k, dtype=torch.float64)
        alone = train_gd(single, X, y, lr=lr, steps=30, probes=["loss"], progress=False)
        # Same arithmetic per member; batched matmuls may sum in another order: float64 round-off only.
        np.testing.assert_allclose(run.losses[:, k], alone.losses[:, 0], rtol=1e-10)


def test_losses_are_half_squared_residuals():
    net, X, y = make_net("resnet", members=2)
    run = train_gd(net, X, y, lr=0.01, steps=3, probes=["loss"], progress=False)
    with torch.no_grad():
        expected = 0.5 * (net(X) - y).pow(2).sum(dim=1)
    # The last recorded loss is at the final parameters (the loop stops before updating after it).
    np.testing.assert_allclose(run.losses[-1], expected.numpy(), rtol=1e-12)


def test_gradient_descent_reaches_zero_loss_on_a_wide_net():
    X, y = sphere_data(n=10, d=10, seed=1)
    net = FullyConnected(10, 512, 2, "softplus", members=1, seed=0, dtype=torch.float64)
    run = train_gd(net, X, y, lr=1.0, steps=3000, target_loss=1e-6, probes=["loss"], progress=False)
    assert run.losses[-1, 0] <= 1e-6 and 0 in run.reached_target_at


def test_pl_ratio_lies_between_gram_extremes(net_kind):
    """‖∇L‖² = rᵀ G r for the squared loss, so λ_min(G) ≤ ‖∇L‖²/(2L) ≤ λ_max(G) (MATH §1.3)."""
    net, X, y = make_net(net_kind, members=2, width=24)
    run = train_gd(net, X, y, lr=1e-3, steps=5, probe_every=1, probes=["pl_ratio"], progress=False)
    from zeroloss.kernels.empirical import gram
    from zeroloss.spectrum import eigenvalues

    eig = eigenvalues(gram(net, X))
    last = run.metric("pl_ratio").iloc[-1].to_numpy()
    # float64 throughout: 1e-10 relative slack covers round-off in the eigenvalues and the gradient norm.
    assert (last >= eig[:, 0].numpy() * (1 - 1e-10)).all()
    assert (last <= eig[:, -1].numpy() * (1 + 1e-10)).all()


def test_divergent_member_is_recorded_and_frozen_others_continue():
    X, y = sphere_data(n=8, d=4, seed=0)
    net = FullyConnected(4, 64, 2, "softplus", members=3, seed=0, dtype=torch.float64)
    run = train_gd(net, X, y, lr=[0.1, 1e4, 0.1], steps=40, probes=["loss", "movement"], progress=False)
    assert list(run.diverged_at) == [1]
    assert np.isnan(run.losses[-1, 1]) and np.isfinite(run.losses[-1, [0, 2]]).all()
    assert (run.losses[-1, [0, 2]] < run.losses[0, [0, 2]]).all()
    assert run.summary().loc[1, "diverged_at"] == run.diverged_at[1]
    # Frozen at the step it diverged: its weights are those of a lone copy stopped at that same step.
    k = run.diverged_at[1]
    alone = FullyConnected(4, 64, 2, "softplus", members=1, seed=1, dtype=torch.float64)
    train_gd(alone, X, y, lr=1e4, steps=k, probes=["loss"], progress=False)
    assert torch.allclose(net.W1[1], alone.W1[0], rtol=1e-10, equal_nan=True)


def test_member_with_non_finite_gradients_stays_frozen_and_harmless():
    """A member whose forward pass is non-finite has NaN gradients: they must be masked, not multiplied by 0.

    Member 1 starts with one infinite weight, so it diverges at step 0; 0 · NaN would still write NaN into its
    parameters, so the test fails unless the update masks the stopped member's gradient. The others must train
    exactly as they would alone.
    """
    X, y = sphere_data(n=8, d=4, seed=0)
    net = FullyConnected(4, 32, 2, "softplus", members=3, seed=0, dtype=torch.float64)
    with torch.no_grad():
        net.W1[1, 0, 0] = float("inf")
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    run = train_gd(net, X, y, lr=0.1, steps=20, probes=["loss"], progress=False)
    assert run.diverged_at == {1: 0}
    for name, p in net.named_parameters():
        assert torch.equal(p[1], before[name][1]), name  # bit for bit, the infinite entry included
    alone = FullyConnected(4, 32, 2, "softplus", members=1, seed=2, dtype=torch.float64)
    train_gd(alone, X, y, lr=0.1, steps=20, probes=["loss"], progress=False)
    assert torch.allclose(net.W2[2], alone.W2[0], rtol=1e-12, atol=0)


def test_probes_history_is_tidy_and_complete():
    net, X, y = make_net("fc", members=2, width=32)
    run = train_gd(net, X, y, lr=0.05, steps=10, probe_every=5, progress=False)
    assert list(run.history.columns) == ["step", "member", "metric", "value"]
    metrics = set(run.history["metric"])
    assert {"loss", "lambda_min", "lambda_min_last", "gram_drift", "pl_ratio", "movement_W1", "movement_a"} <= metrics
    assert sorted(run.history["step"].unique()) == [0, 5, 10]
    drift0 = run.metric("gram_drift").loc[0]
    assert (drift0 == 0).all()
    move = run.metric("movement_W2")
    assert (move.loc[0] == 0).all() and (move.loc[10] > 0).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": [0.1, 0.2, 0.3]}, "lr: must be a scalar or one value per member"),
    ({"lr": -1.0}, "lr: every step size must be positive"),
    ({"steps": 0}, "steps: must be a positive integer"),
    ({"probes": ["nope"]}, "probes: must be among"),
])
def test_bad_arguments(kwargs, match):
    net, X, y = make_net("fc", members=2)
    args = {"lr": 0.1, "steps": 2, **kwargs}
    with pytest.raises(ZerolossInputError, match=match):
        train_gd(net, X, y, progress=False, **args)
