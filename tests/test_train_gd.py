import warnings

import numpy as np
import pytest
import torch
from tests.conftest import make_net

import zeroloss.train.gd as gd_module
from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram
from zeroloss.nets import FeedForward, FullyConnected
from zeroloss.spectra import lambda_max
from zeroloss.train.gd import train_gd
from zeroloss.train.history import LOSS_CHUNK_ROWS, LossHistory, member_status
from zeroloss.train.step import UnstableStepWarning


def test_ensemble_with_per_member_lr_equals_separate_runs():
    X, y = sphere_data(n=8, d=4, seed=0)
    lrs = [0.05, 0.2, 0.4]
    net = FullyConnected(4, 64, 2, "softplus", members=3, seed=7, dtype=torch.float64)
    with pytest.warns(UnstableStepWarning, match="member 2's step 0.4"):  # above 2/λ_max ≈ 0.25: kept on purpose
        run = train_gd(net, X, y, lr=lrs, steps=30, probes=["loss"], progress=False)
    for k, lr in enumerate(lrs):
        single = FullyConnected(4, 64, 2, "softplus", members=1, seed=7 + k, dtype=torch.float64)
        with warnings.catch_warnings():  # the lone copy of member 2 is just as unstable (warned above)
            warnings.simplefilter("ignore", UnstableStepWarning)
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
    # erf: G(0) is well conditioned (λ_max/λ_min ≈ 9), so the default step 1/λ_max(G(0)) reaches the target in
    # about 60 steps; softplus's G(0) here is ~40× worse conditioned (≈ 330) and needs ~1300 (too slow for a test).
    net = FullyConnected(10, 512, 2, "erf", members=1, seed=0, dtype=torch.float64)
    run = train_gd(net, X, y, steps=3000, target_loss=1e-6, probes=["loss"], progress=False)
    assert run.losses[-1, 0] <= 1e-6 and 0 in run.reached_target_at


def test_pl_ratio_lies_between_gram_extremes(net_kind):
    """‖∇L‖² = rᵀ G r for the squared loss, so λ_min(G) ≤ ‖∇L‖²/(2L) ≤ λ_max(G) (docs/theory.md §1.3)."""
    net, X, y = make_net(net_kind, members=2, width=24)
    run = train_gd(net, X, y, lr=1e-3, steps=5, probe_every=1, probes=["pl_ratio"], progress=False)
    from zeroloss.kernels.empirical import gram
    from zeroloss.spectra import eigenvalues

    eig = eigenvalues(gram(net, X))
    last = run.metric("pl_ratio").iloc[-1].to_numpy()
    # float64 throughout: 1e-10 relative slack covers round-off in the eigenvalues and the gradient norm.
    assert (last >= eig[:, 0].numpy() * (1 - 1e-10)).all()
    assert (last <= eig[:, -1].numpy() * (1 + 1e-10)).all()


def test_divergent_member_is_recorded_and_frozen_others_continue():
    X, y = sphere_data(n=8, d=4, seed=0)
    net = FullyConnected(4, 64, 2, "softplus", members=3, seed=0, dtype=torch.float64)
    with pytest.warns(UnstableStepWarning, match="member 1's step 1e\\+04"):
        run = train_gd(net, X, y, lr=[0.1, 1e4, 0.1], steps=40, probes=["loss", "movement"], progress=False)
    assert list(run.diverged_at) == [1]
    assert np.isnan(run.losses[-1, 1]) and np.isfinite(run.losses[-1, [0, 2]]).all()
    assert (run.losses[-1, [0, 2]] < run.losses[0, [0, 2]]).all()
    assert run.summary().loc[1, "diverged_at"] == run.diverged_at[1]
    assert run.summary()["status"].tolist()[1] == "diverged"
    # Frozen at the step it diverged: its weights are those of a lone copy stopped at that same step.
    k = run.diverged_at[1]
    alone = FullyConnected(4, 64, 2, "softplus", members=1, seed=1, dtype=torch.float64)
    with pytest.warns(UnstableStepWarning):
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
    ({"lr": "0.1"}, "lr: must be a positive number or one per member"),  # issue 15.7: was a TypeError
    ({"lr": ["0.1", "0.2"]}, "lr: must be a positive number or one per member"),
    ({"lr": {"a": 1}}, "lr: must be a positive number or one per member"),
    ({"steps": 0}, "steps: must be a positive integer"),
    ({"steps": 2.0}, "steps: must be a positive integer"),
    ({"probes": ["nope"]}, "probes: must be among"),
    ({"probe_every": 0}, "probe_every: must be a positive integer"),
    ({"divergence_factor": 0}, "divergence_factor: must be a number > 1"),  # 15.7: every member diverged at step 0
    ({"divergence_factor": 1.0}, "divergence_factor: must be a number > 1"),  # any rise above L(0) would "diverge"
    ({"divergence_factor": float("nan")}, "divergence_factor: must be a number > 1"),
    ({"target_loss": -1.0}, "target_loss: must be None or a finite number ≥ 0"),
    ({"target_loss": "0"}, "target_loss: must be None or a finite number ≥ 0"),
    ({"backprop": "fast"}, "backprop: must be one of"),
])
def test_bad_arguments(kwargs, match):
    net, X, y = make_net("fc", members=2)
    args = {"lr": 0.01, "steps": 2, **kwargs}
    with pytest.raises(ZerolossInputError, match=match):
        train_gd(net, X, y, progress=False, **args)


@pytest.mark.parametrize("X, match", [
    (torch.tensor([[float("nan"), 0.0, 0.0, 1.0]] * 3, dtype=torch.float64),
     r"X: contains NaN or inf \(first in row 0\)"),
    (torch.empty(0, 4, dtype=torch.float64), r"X: must hold at least one input, got shape \(0, 4\)"),
    (torch.zeros(3, 5, dtype=torch.float64), r"X: must have shape \(n, 4\)"),
    ("inputs.npy", "X: must be an array of numbers"),
])
def test_bad_inputs_name_X_in_one_line(X, match):
    """Issue 15.7: NaN in X used to be blamed on "G", an empty X was an IndexError."""
    net, _, _ = make_net("fc", members=2)
    y = torch.zeros(max(1, len(X)) if isinstance(X, torch.Tensor) else 3, dtype=torch.float64)
    with pytest.raises(ZerolossInputError, match=match) as caught:
        train_gd(net, X, y, lr=0.01, steps=2, progress=False)
    assert "\n" not in str(caught.value)


def test_numpy_integer_steps_are_accepted():
    net, X, y = make_net("fc", members=2)
    run = train_gd(net, X, y, lr=0.01, steps=np.int64(3), probes=["loss"], progress=False)
    assert run.steps == 3 and run.losses.shape == (4, 2)


def test_a_plain_module_is_refused_naming_entk_and_diagnose():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X, y = sphere_data(n=5, d=4, seed=0)
    for call in (lambda: train_gd(model, X, y, lr=0.1, steps=2), lambda: gram(model, X)):
        with pytest.raises(ZerolossInputError, match=r"^net: .* got Sequential; .*zeroloss\.entk.*zeroloss\.diagnose"):
            call()


def test_default_step_is_one_over_lambda_max_of_the_initial_gram_per_member():
    """lr=None: η_s = 1/λ_max(G_s(0)) (float64, full Gram), the descent lemma's step (zeroloss.train.step)."""
    X, y = sphere_data(n=8, d=8, seed=0)
    net = FullyConnected(8, 128, 2, "erf", members=3, seed=0, dtype=torch.float64)
    expected = 1.0 / lambda_max(gram(net, X)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default step never warns: it is half the bound
        run = train_gd(net, X, y, steps=400, target_loss=1e-10, probes=["loss"], progress=False)
    np.testing.assert_allclose(run.lr, expected, rtol=1e-12)  # same Gram, same eigen-solver: round-off only
    np.testing.assert_allclose(run.summary()["stable_below"], 2.0 * expected, rtol=1e-12)
    assert len(set(run.lr)) == 3  # one step per member, from its own Gram
    assert (run.summary()["status"] == "reached target").all() and (run.final_loss <= 1e-10).all()
    assert (np.diff(run.losses, axis=0) < 0).all()  # η = 1/λ_max: monotone descent here, every step


def test_default_step_works_for_chatterjees_net_too():
    X, y = sphere_data(n=6, d=8, seed=2)
    net = FeedForward(8, [32], "tanh", members=2, seed=0, dtype=torch.float64)
    expected = 1.0 / lambda_max(gram(net, X)).numpy()  # biases and output bias included in G
    run = train_gd(net, X, y, steps=2000, target_loss=1e-8, probes=["loss"], progress=False)
    np.testing.assert_allclose(run.lr, expected, rtol=1e-12)
    assert (run.summary()["status"] == "reached target").all()


def test_a_step_above_two_over_lambda_max_warns_once_per_member_naming_it():
    X, y = sphere_data(n=6, d=4, seed=1)
    net = FullyConnected(4, 64, 2, "erf", members=3, seed=0, dtype=torch.float64)
    bound = 2.0 / lambda_max(gram(net, X)).numpy()
    lrs = bound * np.array([0.9, 1.1, 3.0])  # only members 1 and 2 are above their own bound
    with pytest.warns(UnstableStepWarning) as caught:
        train_gd(net, X, y, lr=lrs, steps=1, probes=["loss"], progress=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all(issubclass(w.category, UserWarning) for w in caught)
    for s, message in zip((1, 2), messages, strict=True):
        assert f"member {s}'s step {lrs[s]:.4g}" in message and f"2/λ_max(G(0)) = {bound[s]:.4g}" in message


def test_summary_says_which_members_reached_the_target_stalled_decreased_or_diverged():
    X, y = sphere_data(n=8, d=8, seed=0)
    net = FullyConnected(8, 64, 2, "erf", members=4, seed=0, dtype=torch.float64)
    lam = lambda_max(gram(net, X)).numpy()
    # member 0: the default step; 1: a step so small nothing moves (stalled); 2: 1/100 of the default (still
    # decreasing when the budget ends); 3: 10⁴ × the bound (diverges).
    lrs = np.array([1.0, 1e-9, 0.01, 2e4]) / lam
    with pytest.warns(UnstableStepWarning, match="member 3's step"):
        run = train_gd(net, X, y, lr=lrs, steps=200, target_loss=1e-8, probes=["loss"], progress=False)
    summary = run.summary()
    assert summary["status"].tolist() == ["reached target", "stalled", "decreasing", "diverged"]
    assert run.status == summary["status"].tolist()
    assert summary.loc[0, "reached_target_at"] is not None and summary.loc[3, "diverged_at"] is not None
    assert np.isnan(summary.loc[3, "final_loss"])
    # the run went on to its budget because member 1 and 2 never reached the target
    assert run.steps == 200


def test_member_status_definitions():
    eps = float(np.finfo(np.float64).eps)
    assert member_status(np.array([1.0, 1e-25]), False, False, eps) == "converged"  # below (1e4 eps)² L(0)
    assert member_status(np.array([1.0, 1e-20]), False, False, eps) == "decreasing"
    assert member_status(np.array([1.0, 0.5, 0.499, 0.498]), False, False, eps) == "stalled"  # < 1 % in 2nd half
    assert member_status(np.array([1.0, 0.5, 0.45, 0.44]), False, False, eps) == "decreasing"
    assert member_status(np.array([1.0, 2.0, 4.0]), False, False, eps) == "stalled"  # rising: no progress
    assert member_status(np.array([1.0]), False, False, eps) == "stalled"  # zero steps
    assert member_status(np.array([1.0, np.nan]), True, False, eps) == "diverged"
    assert member_status(np.array([1.0, 0.1]), False, True, eps) == "reached target"


def test_a_huge_step_budget_allocates_nothing_up_front(monkeypatch):
    """Issue 15.4: steps=10¹² used to preallocate a (10¹² + 1, S) loss table (8 TB) before the first step."""
    biggest = []

    class Recording(LossHistory):
        def append(self, row):
            super().append(row)
            biggest.append(self.allocated_rows)

    monkeypatch.setattr(gd_module, "LossHistory", Recording)
    X, y = sphere_data(n=8, d=8, seed=0)
    net = FullyConnected(8, 64, 2, "erf", members=2, seed=0, dtype=torch.float64)
    run = train_gd(net, X, y, steps=10**12, target_loss=1e-6, probes=["loss"], progress=False)
    assert run.steps < 1000 and run.losses.shape == (run.steps + 1, 2)
    assert max(biggest) == LOSS_CHUNK_ROWS  # one chunk, whatever the budget
    assert sorted(run.history["step"].unique()) == [0, run.steps]  # probes every 10¹⁰ steps: first and last only


def test_loss_history_grows_in_chunks_and_keeps_every_row():
    history = LossHistory(members=3, device=torch.device("cpu"), chunk_rows=4)
    rows = [torch.arange(3, dtype=torch.float64) + k for k in range(10)]
    for row in rows:
        history.append(row)
    assert history.allocated_rows == 12
    np.testing.assert_array_equal(history.numpy(), torch.stack(rows).numpy())


def test_default_step_with_a_non_finite_member_leaves_it_frozen_and_the_others_exact():
    """lr=None needs λ_max(G(0)) per member: a member with an infinite weight has no finite Gram; it gets η = 0, is
    marked diverged at step 0 and kept bit for bit, and the others take their own default step (issue 15.3's rule:
    one bad member never costs the others)."""
    X, y = sphere_data(n=8, d=8, seed=0)
    # softplus: an infinite pre-activation gives an infinite prediction (erf would saturate at a finite one)
    net = FullyConnected(8, 32, 2, "softplus", members=3, seed=0, dtype=torch.float64)
    alone = FullyConnected(8, 32, 2, "softplus", members=1, seed=2, dtype=torch.float64)
    with torch.no_grad():
        net.W1[1, 0, 0] = float("inf")
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    run = train_gd(net, X, y, steps=20, probes=["loss"], progress=False)
    assert run.diverged_at == {1: 0} and run.lr[1] == 0.0 and np.isnan(run.lambda_max0[1])
    assert run.status[1] == "diverged"
    for name, p in net.named_parameters():
        assert torch.equal(p[1], before[name][1]), name
    reference = train_gd(alone, X, y, steps=20, probes=["loss"], progress=False)
    assert run.lr[2] == reference.lr[0]
    np.testing.assert_allclose(run.losses[:, 2], reference.losses[:, 0], rtol=1e-10)  # batched round-off only


def test_check_step_false_takes_the_step_as_given_without_computing_g0(monkeypatch):
    """check_step=False: no Gram at the start (initial_lambda_max would raise), no warning for a step past the
    bound, the same trajectory as the checked run, and the summary's bound NaN."""
    X, y = sphere_data(n=6, d=5, seed=0)

    def net():
        return FullyConnected(d=5, width=32, depth=2, members=2, dtype=torch.float64)

    lrs = [0.05, 10.0]  # the second above 2/λ_max(G(0)) for this net
    with pytest.warns(UnstableStepWarning):
        checked = train_gd(net(), X, y, lrs, steps=20, probes=["loss"], progress=False)

    def no_gram(*args, **kwargs):
        raise AssertionError("G(0) computed although check_step=False")

    monkeypatch.setattr(gd_module, "initial_lambda_max", no_gram)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstableStepWarning)
        unchecked = train_gd(net(), X, y, lrs, steps=20, probes=["loss"], progress=False, check_step=False)
    np.testing.assert_array_equal(unchecked.losses, checked.losses)
    assert np.isnan(unchecked.summary()["stable_below"]).all()
    assert np.isfinite(checked.summary()["stable_below"]).all()
