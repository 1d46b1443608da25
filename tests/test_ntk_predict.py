"""predict_gd_mse: closed-form GD / gradient flow on the linearised model against explicit iterations.

References used here: explicit gradient descent on the linear model f = f₀ + J(θ − θ₀) written with matrices
(J drawn directly, so rank-deficient kernels are covered), explicit GD on ``zeroloss.linearize`` of a real network
(J from ``torch.func.jacrev``, an independent route to Θ = J Jᵀ), kernel regression by ``torch.linalg.solve``, and a
numpy transcription of Neural Tangents' ``predict.gradient_descent_mse`` (no jax needed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.linearize import linearize
from zeroloss.ntk.predict import predict_gd_mse, residual_factor

F64 = torch.float64


def linear_problem(n=6, m=4, p=10, k=None, seed=0):
    """A linear model's Jacobians J (n, p) and J_test (m, p) (with k outputs: (n, k, p)), labels, f₀."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, p) if k is None else (n, k, p)
    J = torch.randn(*shape, generator=g, dtype=F64) / math.sqrt(p)
    Jt = torch.randn(*((m, p) if k is None else (m, k, p)), generator=g, dtype=F64) / math.sqrt(p)
    y = torch.randn(*((n,) if k is None else (n, k)), generator=g, dtype=F64)
    f0 = 0.3 * torch.randn(*y.shape, generator=g, dtype=F64)
    f0t = 0.3 * torch.randn(*((m,) if k is None else (m, k)), generator=g, dtype=F64)
    return J, Jt, y, f0, f0t


def explicit_gd(J, Jt, y, f0, f0t, lr, steps):
    """GD on L = ½‖f₀ + J δ − y‖², δ = θ − θ₀: every step's (train, test) outputs, (steps + 1, ...)."""
    Jm, Jtm = J.reshape(-1, J.shape[-1]), Jt.reshape(-1, Jt.shape[-1])
    delta = torch.zeros(J.shape[-1], dtype=F64)
    train, test = [], []
    for _ in range(steps + 1):
        f = f0.reshape(-1) + Jm @ delta
        train.append(f.reshape(y.shape))
        test.append((f0t.reshape(-1) + Jtm @ delta).reshape(f0t.shape))
        delta = delta - lr * Jm.T @ (f - y.reshape(-1))
    return torch.stack(train), torch.stack(test)


@pytest.mark.parametrize("p", [10, 4])  # p < n = 6: Θ = J Jᵀ has a 2-dimensional null space
def test_gd_matches_explicit_linear_gd_step_by_step(p):
    J, Jt, y, f0, f0t = linear_problem(p=p)
    K, Kt = J @ J.T, Jt @ J.T
    lr = 1.0 / float(torch.linalg.eigvalsh(K)[-1])
    steps = 40
    ref_train, ref_test = explicit_gd(J, Jt, y, f0, f0t, lr, steps)
    pred = predict_gd_mse(K, y, lr, steps=list(range(steps + 1)), k_test_train=Kt, f0_train=f0, f0_test=f0t)
    # float64 round-off: each of the 40 explicit steps adds ~eps·‖Θ‖·‖r‖ ≈ 1e-16; 1e-12 leaves a margin of 10⁴/40
    assert torch.allclose(pred.train, ref_train, rtol=0, atol=1e-12)
    assert torch.allclose(pred.test, ref_test, rtol=0, atol=1e-12)
    assert torch.allclose(pred.loss, 0.5 * (ref_train - y).pow(2).sum(dim=1), rtol=1e-12, atol=0)
    assert pred.null == max(0, 6 - p)


def test_null_directions_stay_put_at_infinity():
    J, Jt, y, f0, f0t = linear_problem(p=4)
    K, Kt = J @ J.T, Jt @ J.T
    lr = 1.0 / float(torch.linalg.eigvalsh(K)[-1])
    pred = predict_gd_mse(K, y, lr, steps=[math.inf], k_test_train=Kt, f0_train=f0, f0_test=f0t)
    # GD on the linear model converges to the minimum-norm move: δ = J⁺ (y − f₀)
    delta = torch.linalg.pinv(J) @ (y - f0)
    assert torch.allclose(pred.train[0], f0 + J @ delta, atol=1e-12)
    assert torch.allclose(pred.test[0], f0t + Jt @ delta, atol=1e-12)
    # the residual keeps exactly its component in the null space of Jᵀ (and nothing else)
    U, S, _ = torch.linalg.svd(J, full_matrices=True)
    null = U[:, 4:]
    r0 = f0 - y
    assert torch.allclose(pred.train[0] - y, null @ (null.T @ r0), atol=1e-12)
    # the same at t = ∞ of the flow
    flow = predict_gd_mse(K, y, lr, time=math.inf, k_test_train=Kt, f0_train=f0, f0_test=f0t)
    assert torch.allclose(flow.train, pred.train, atol=1e-14) and torch.allclose(flow.test, pred.test, atol=1e-14)


def test_infinity_is_kernel_regression_and_ridge():
    J, Jt, y, f0, f0t = linear_problem(p=20)
    K, Kt = J @ J.T, Jt @ J.T
    pred = predict_gd_mse(K, y, 0.1, steps=math.inf, k_test_train=Kt, f0_train=f0, f0_test=f0t)
    expected = f0t + Kt @ torch.linalg.solve(K, y - f0)
    assert torch.allclose(pred.test[0], expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(pred.train[0], y, atol=1e-12)
    rho = 0.3
    ridge = predict_gd_mse(K, y, 0.1, steps=math.inf, k_test_train=Kt, f0_train=f0, f0_test=f0t, ridge=rho)
    expected = f0t + Kt @ torch.linalg.solve(K + rho * torch.eye(6, dtype=F64), y - f0)
    assert torch.allclose(ridge.test[0], expected, rtol=1e-10, atol=1e-12)
    # ridge predictions on the training points: pass the training kernel as the "test" kernel
    on_train = predict_gd_mse(K, y, 0.1, steps=math.inf, k_test_train=K, f0_train=f0, f0_test=f0, ridge=rho)
    assert torch.allclose(on_train.test[0], f0 + K @ torch.linalg.solve(K + rho * torch.eye(6, dtype=F64), y - f0))


def test_long_gd_run_reaches_the_infinite_time_prediction():
    J, Jt, y, f0, f0t = linear_problem(p=20)
    K, Kt = J @ J.T, Jt @ J.T
    lam = torch.linalg.eigvalsh(K)
    lr = 1.0 / float(lam[-1])
    # (1 − ηλ_min)^k ≤ 1e-14 after k = log(1e-14)/log(1 − ηλ_min) steps
    k = int(math.ceil(math.log(1e-14) / math.log1p(-lr * float(lam[0]))))
    pred = predict_gd_mse(K, y, lr, steps=[k, math.inf], k_test_train=Kt, f0_train=f0, f0_test=f0t)
    scale = float((y - f0).norm())
    assert torch.allclose(pred.test[0], pred.test[1], atol=1e-12 * scale * 10)


def test_flow_is_the_limit_of_small_steps():
    """e^{−ηΘt} against GD with step η/N for N·t steps: for each mode x = ηλt, 0 ≤ e^{−x} − (1 − x/N)^N ≤ x²e^{−x}/N
    ≤ (4/e²)/N, so the error is below 0.55‖r₀‖/N and halves when N doubles."""
    J, Jt, y, f0, f0t = linear_problem(p=20)
    K, Kt = J @ J.T, Jt @ J.T
    lr, t = 0.5, 3.0
    flow = predict_gd_mse(K, y, lr, time=t, k_test_train=Kt, f0_train=f0, f0_test=f0t)
    errors = []
    for N in (200, 400):
        train, _ = explicit_gd(J, Jt, y, f0, f0t, lr / N, int(t * N))
        errors.append(float((train[-1] - flow.train[0]).norm()))
        assert errors[-1] <= 0.55 * float((f0 - y).norm()) / N
    assert errors[1] / errors[0] == pytest.approx(0.5, abs=0.02)  # first order in the step: O(1/N)


def test_multi_output_full_kernel_matches_explicit_gd():
    J, Jt, y, f0, f0t = linear_problem(n=5, m=3, p=12, k=2)
    K = torch.einsum("iap,jbp->ijab", J, J)  # (n, n, k, k), the full kernel
    Kt = torch.einsum("iap,jbp->ijab", Jt, J)
    lr = 0.5 / float(torch.linalg.eigvalsh(K.permute(0, 2, 1, 3).reshape(10, 10))[-1])
    ref_train, ref_test = explicit_gd(J, Jt, y, f0, f0t, lr, 25)
    pred = predict_gd_mse(K, y, lr, steps=range(26), k_test_train=Kt, f0_train=f0, f0_test=f0t)
    assert pred.train.shape == (26, 5, 2) and pred.test.shape == (26, 3, 2)
    assert torch.allclose(pred.train, ref_train, atol=1e-12) and torch.allclose(pred.test, ref_test, atol=1e-12)


def test_trace_kernel_is_kernel_times_identity():
    """A (n, n) kernel with y (n, k) is Θ ⊗ I_k: equal to the full kernel built that way, column by column."""
    J, Jt, y, f0, f0t = linear_problem(n=5, m=3, p=12)
    K, Kt = J @ J.T, Jt @ J.T
    Y = torch.stack([y, -2 * y + 1], dim=1)
    F0, F0t = torch.stack([f0, f0], dim=1), torch.stack([f0t, 0 * f0t], dim=1)
    eye = torch.eye(2, dtype=F64)
    full = predict_gd_mse(torch.einsum("ij,ab->ijab", K, eye), Y, 0.2, steps=[3, 50],
                          k_test_train=torch.einsum("ij,ab->ijab", Kt, eye), f0_train=F0, f0_test=F0t)
    trace = predict_gd_mse(K, Y, 0.2, steps=[3, 50], k_test_train=Kt, f0_train=F0, f0_test=F0t)
    col = predict_gd_mse(K, Y[:, 1], 0.2, steps=[3, 50], k_test_train=Kt, f0_train=F0[:, 1], f0_test=F0t[:, 1])
    assert torch.allclose(full.train, trace.train, atol=1e-13) and torch.allclose(full.test, trace.test, atol=1e-13)
    assert torch.allclose(trace.train[..., 1], col.train, atol=1e-14)
    assert torch.allclose(trace.test[..., 1], col.test, atol=1e-14)


def nt_gradient_descent_mse(k, y, lr_nt, t, f0, f0t, kt):
    """numpy transcription of neural_tangents/_src/predict.py ``gradient_descent_mse`` (trace_axes=(-1,),
    diag_reg=0; commit c17e770b): finite t through ``_make_expm1_fn``/``_make_inv_expm1_fn`` with normalisation
    y.size, t = None through ``cho_solve``."""
    n_norm = y.size
    evals, evecs = np.linalg.eigh(k)
    if t is None:
        dfx = kt @ np.linalg.solve(k, y - f0)  # cho_solve of (y − f₀), contracted with k_test_train
        return y, f0t + dfx
    t = np.asarray(t, dtype=np.float64).reshape(-1, 1) * lr_nt
    expm1 = np.expm1(-np.maximum(evals, 0.0)[None, :] * t / n_norm)  # (T, n)
    inv_expm1 = expm1 / np.abs(evals)[None, :]
    rhs = f0 - y
    dfx_train = np.einsum("ji,ti,ki,k...->tj...", evecs, expm1, evecs, rhs)
    dfx_test = np.einsum("ji,ti,ki,k...->tj...", evecs, inv_expm1, evecs, rhs)
    return f0[None] + dfx_train, f0t[None] + np.einsum("mj,tj...->tm...", kt, dfx_test)


@pytest.mark.parametrize("outputs", [1, 3])
def test_against_neural_tangents_formula_with_mapped_learning_rate(outputs):
    """Ours with η equals NT's with lr_NT = N·η, N = y.size (NT's loss is the mean ½‖f − y‖²/N)."""
    J, Jt, y, f0, f0t = linear_problem(n=6, m=4, p=15, k=None if outputs == 1 else outputs)
    if outputs > 1:  # the trace kernel of the shared-J model: Θ ⊗ I_k
        J, Jt = J[:, 0], Jt[:, 0]
    K, Kt = J @ J.T, Jt @ J.T
    eta, times = 0.05, [0.0, 1.0, 7.5, 100.0]
    ours = predict_gd_mse(K, y, eta, time=times, k_test_train=Kt, f0_train=f0, f0_test=f0t)
    nt_train, nt_test = nt_gradient_descent_mse(K.numpy(), y.numpy(), eta * y.numel(), times, f0.numpy(),
                                                f0t.numpy(), Kt.numpy())
    assert np.allclose(ours.train.numpy(), nt_train, rtol=0, atol=1e-12)
    assert np.allclose(ours.test.numpy(), nt_test, rtol=0, atol=1e-12)
    inf = predict_gd_mse(K, y, eta, time=math.inf, k_test_train=Kt, f0_train=f0, f0_test=f0t)
    nt_inf_train, nt_inf_test = nt_gradient_descent_mse(K.numpy(), y.numpy(), 1.0, None, f0.numpy(), f0t.numpy(),
                                                        Kt.numpy())
    assert np.allclose(inf.train[0].numpy(), nt_inf_train, atol=1e-12)
    assert np.allclose(inf.test[0].numpy(), nt_inf_test, atol=1e-10)


def test_tiny_eigenvalues_keep_their_digits():
    """ηλ = 1e-20: the naive (1 − ηλ)^k − 1 is exactly 0 in float64; the expm1/log1p form keeps −kηλ."""
    lam = torch.tensor([1e-20, 3e-20], dtype=F64)
    h = residual_factor(lam, 1.0, torch.tensor([5.0, 1e6]), "gd")
    assert torch.allclose(h, -torch.tensor([[5.0], [1e6]], dtype=F64) * lam, rtol=1e-12, atol=0)
    K = torch.diag(lam)
    y = torch.ones(2, dtype=F64)
    pred = predict_gd_mse(K, y, 1.0, steps=7, k_test_train=K, f0_test=torch.zeros(2, dtype=F64))
    assert pred.null == 0
    assert torch.allclose(pred.train[0], 7 * lam, rtol=1e-12, atol=0)
    assert torch.allclose(pred.test[0], 7 * lam, rtol=1e-12, atol=0)  # k_test_train = k_train: the same outputs


def test_diverging_step_is_not_clipped():
    K = torch.diag(torch.tensor([1.0, 3.0], dtype=F64))
    y = torch.ones(2, dtype=F64)
    pred = predict_gd_mse(K, y, 1.0, steps=[0, 1, 2, math.inf])  # ηλ = 3 > 2: that mode multiplies by −2
    assert pred.train[1, 1] == pytest.approx(1 - (-2.0)), pred.train
    assert pred.train[2, 1] == pytest.approx(1 - 4.0)
    assert torch.isnan(pred.train[3]).all()  # no limit at t = ∞ (NaN reaches every output through V)


def test_steps_of_a_real_linearised_network():
    """Explicit GD with torch on linearize(net) — J from torch.func.jacrev gives Θ independently."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 24), torch.nn.Tanh(), torch.nn.Linear(24, 1)).double()
    X = torch.randn(7, 3, dtype=F64)
    Xt = torch.randn(4, 3, dtype=F64)
    y = torch.randn(7, dtype=F64)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def jac(x):
        J = jacrev(lambda p: functional_call(net, p, (x,)).squeeze(-1))(params)
        return torch.cat([J[k].reshape(x.shape[0], -1) for k in params], dim=1)

    J, Jt = jac(X), jac(Xt)
    K, Kt = J @ J.T, Jt @ J.T
    lr = 1.0 / float(torch.linalg.eigvalsh(K)[-1])
    lin = linearize(net)
    opt = torch.optim.SGD(lin.parameters(), lr=lr)
    train, test = [], []
    for _ in range(31):
        out = lin(X).squeeze(-1)
        with torch.no_grad():
            train.append(out.detach().clone())
            test.append(lin(Xt).squeeze(-1))
        opt.zero_grad()
        (0.5 * (out - y).pow(2).sum()).backward()
        opt.step()
    f0, f0t = train[0], test[0]
    pred = predict_gd_mse(K, y, lr, steps=range(31), k_test_train=Kt, f0_train=f0, f0_test=f0t)
    # float64 round-off in the 31 jvp/backward passes and in Θ's two Jacobian routes: ~1e-15 each
    assert torch.allclose(pred.train, torch.stack(train), atol=1e-11)
    assert torch.allclose(pred.test, torch.stack(test), atol=1e-11)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lr": -1.0, "steps": 1}, "lr"),
        ({"lr": 0.1}, "steps/time"),
        ({"lr": 0.1, "steps": 1, "time": 1.0}, "steps/time"),
        ({"lr": 0.1, "steps": 1.5}, "steps"),
        ({"lr": 0.1, "steps": [-1]}, "steps"),
        ({"lr": 0.1, "time": [math.nan]}, "time"),
        ({"lr": 0.1, "steps": 1, "ridge": -1.0}, "ridge"),
        ({"lr": 0.1, "steps": 1, "f0_train": torch.zeros(4)}, "f0_train"),
        ({"lr": 0.1, "steps": 1, "k_test_train": torch.zeros(2, 5)}, "k_test_train"),
        ({"lr": 0.1, "steps": 1, "k_test_train": torch.zeros(2, 3), "f0_test": torch.zeros(3)}, "f0_test"),
        ({"lr": 0.1, "steps": 1, "f0_test": torch.zeros(3)}, "f0_test"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(kwargs, field):
    K, y = torch.eye(3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(ZerolossInputError) as info:
        predict_gd_mse(K, y, **kwargs)
    assert str(info.value).startswith(f"{field}:") and "\n" not in str(info.value)


def test_bad_kernels():
    y = torch.ones(3, dtype=F64)
    for K, field in ((torch.ones(3, 2), "k_train"), (torch.ones(3), "k_train"), (torch.ones(2, 2), "y_train"),
                     (torch.diag(torch.tensor([1.0, -0.5, 1.0])), "k_train"),
                     (torch.full((3, 3), math.nan), "k_train")):
        with pytest.raises(ZerolossInputError, match=f"^{field}:"):
            predict_gd_mse(K, y, 0.1, steps=1)
