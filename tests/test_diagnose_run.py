"""diagnose: the wide net follows the kernel prediction; the narrow net and the large step are not lazy (each other's
negative controls); reference problems with known answers (the linear model); divergence recorded; bad input.

Every run uses ``threads=1``: the tensors are tiny, and on a shared CPU a second intra-op thread makes each op wait.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zeroloss.data import sphere_data
from zeroloss.diagnosis import DRIFT_MAX, GAP_MAX, diagnose
from zeroloss.diagnosis.verdict import RATE_TOLERANCE, decide
from zeroloss.errors import ZerolossInputError
from zeroloss.papers.base import RunOutput
from zeroloss.store import RunStore, load

F64 = torch.float64


class TwoLayer(nn.Module):
    """f(x) = aᵀ tanh(Wx)/√m with W, a ~ N(0, 1) (NTK parametrisation, no PyTorch default initialiser)."""

    def __init__(self, m: int, d: int = 8, k: int = 1, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(m, d, generator=g, dtype=F64))
        self.a = nn.Parameter(torch.randn(m, k, generator=g, dtype=F64))
        self.m, self.k = m, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(x @ self.W.T) @ self.a / math.sqrt(self.m)
        return out.squeeze(-1) if self.k == 1 else out


@pytest.fixture(scope="module")
def data():
    return sphere_data(n=16, d=8, seed=0)


def run(model, X, y, **kwargs):
    kwargs.setdefault("alpha", False)
    return diagnose(model, X, y, threads=1, progress=False, **kwargs)


def test_wide_net_follows_the_closed_form_prediction(data):
    X, y = data
    d = run(TwoLayer(4096), X, y, steps=200, probe_every=50)
    v = d.verdict
    # measured gap ≈ 7e-4 and drift ≈ 4e-3 at this width (tests/test_diagnose_widths.py): an order of magnitude
    # inside the thresholds, so the verdict does not rest on where a threshold sits
    assert v.lazy and v.gap < GAP_MAX / 10 and v.drift < DRIFT_MAX / 10, str(v)
    assert v.rate_matches is True and abs(math.log(v.rate_measured) / math.log(v.rate_predicted) - 1) < 0.02
    # the linearised model, trained by torch, equals the closed form to float64 round-off over 200 steps
    assert d.metric("gap_predicted")["value"].max() < 1e-10
    real, pred = d.metric("loss_real")["value"].to_numpy(), d.metric("loss_predicted")["value"].to_numpy()
    assert np.max(np.abs(real - pred) / real[0]) < 2e-3  # the loss curves agree to the gap's order
    assert pred[-1] < 0.01 * pred[0]  # and it did train
    # identity of docs/theory.md §1.3: λ_min(Θ_t) ≤ ‖∇L‖²/(2L) ≤ λ_max(Θ_t) at every probe (round-off 1e-12)
    pl, lo, hi = (d.metric(m)["value"].to_numpy() for m in ("pl_ratio", "lambda_min", "lambda_max"))
    assert np.all(lo <= pl * (1 + 1e-12)) and np.all(pl <= hi * (1 + 1e-12))
    assert set(d.history.columns) == {"step", "metric", "value", "module"}
    assert set(d.metric("movement", "(all)")["step"]) == {0, 50, 100, 150, 200}
    assert {"(root)", "(all)"} == set(d.history.loc[d.history.metric == "movement", "module"])


def test_narrow_net_is_not_lazy(data):
    X, y = data
    d = run(TwoLayer(8), X, y, steps=200, probe_every=50)
    v = d.verdict
    # measured drift 0.6–1.2 over three seeds at width 8 (six times the threshold and more)
    assert not v.lazy and v.drift > DRIFT_MAX and any(r.startswith("drift") for r in v.reasons), str(v)
    assert v.diverged_real is None and v.diverged_linear is None  # not lazy, yet it trains


def test_large_step_is_not_lazy_and_warns(data):
    X, y = data
    net = TwoLayer(4096)
    edge = run(net, X, y, steps=1).verdict.lr_edge
    with pytest.warns(UserWarning, match="exceeds 2/λ_max"):
        d = run(net, X, y, steps=200, probe_every=50, lr=1.5 * edge)
    v = d.verdict
    assert not v.lazy and v.diverged_linear is not None, str(v)
    assert v.drift > DRIFT_MAX  # the catapult moves the kernel: measured ≈ 0.5
    # the real model keeps training after the linearised one diverged: recorded, not raised
    assert d.metric("loss_real")["step"].max() == 200 and d.metric("loss_linear")["step"].max() < 200
    assert d.summary()["diverged"] is False


def test_both_diverging_is_recorded_not_raised(data):
    X, y = data
    net = TwoLayer(64)
    edge = run(net, X, y, steps=1).verdict.lr_edge
    with pytest.warns(UserWarning):
        d = run(net, X, y, steps=300, lr=20 * edge)
    v = d.verdict
    assert v.diverged_real is not None and v.diverged_linear is not None and not v.lazy
    assert d.summary()["diverged"] is True and "diverged" in str(v)
    assert d.metric("loss_predicted")["step"].max() == 300  # the closed form is complete


def test_linear_model_reference_problem():
    """f(x) = wᵀx with XXᵀ = I: Θ = I, the linearisation is exact (gap 0, drift 0), ‖∇L‖²/(2L) = 1, the residual
    contracts by exactly 1 − η per step, and α = inf ‖∇F‖²/F = 4 everywhere."""
    X = torch.eye(5, dtype=F64)
    y = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.3], dtype=F64)
    net = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        net.weight.zero_()
    d = diagnose(net, X, y, steps=10, lr_fraction=0.25, alpha=True, alpha_samples=8, alpha_starts=2,
                 alpha_steps=3, threads=1, progress=False)
    v = d.verdict
    assert v.lr == pytest.approx(0.5) and v.lambda_min0 == pytest.approx(1.0) and v.lambda_max0 == pytest.approx(1.0)
    assert v.gap < 1e-15 and v.drift < 1e-15 and v.rate_bound == pytest.approx(0.5)
    assert np.allclose(d.metric("contraction")["value"], 0.5, rtol=1e-12)
    assert v.rate_measured == pytest.approx(0.5, rel=1e-12) and v.rate_matches is True
    assert np.allclose(d.metric("pl_ratio")["value"], 1.0, rtol=1e-12)
    assert v.alpha == pytest.approx(4.0, rel=1e-9)
    # θ₀ = 0: relative movement has no scale and is reported as inf, the distance is finite
    assert math.isinf(v.movement) and d.metric("distance")["value"].iloc[-1] > 0


def test_multi_output_model_uses_the_full_kernel(data):
    X, _ = data
    Y = torch.stack([torch.sin(3 * X[:, 0]), X[:, 1] - X[:, 2]], dim=1)
    d = run(TwoLayer(256, k=2), X, Y, steps=60, probe_every=30)
    assert d.spectrum0.shape == (32,)  # n·k eigenvalues of the (n·k, n·k) full kernel
    assert d.metric("gap_predicted")["value"].max() < 1e-10
    pl, lo, hi = (d.metric(m)["value"].to_numpy() for m in ("pl_ratio", "lambda_min", "lambda_max"))
    assert np.all(lo <= pl * (1 + 1e-12)) and np.all(pl <= hi * (1 + 1e-12))


def test_test_set_and_other_optimisers(data):
    X, y = data
    Xt, yt = sphere_data(n=6, d=8, seed=1)
    d = run(TwoLayer(512), X, y, steps=40, probe_every=20, X_test=Xt, y_test=yt)
    lin, pred = d.metric("test_loss_linear")["value"], d.metric("test_loss_predicted")["value"]
    assert np.allclose(lin, pred, rtol=1e-9) and not math.isnan(d.verdict.test_gap)
    adam = run(TwoLayer(512), X, y, steps=20, optimizer="adam", lr=1e-3)
    assert "loss_predicted" not in set(adam.history["metric"]) and adam.verdict.rate_matches is None
    sgd = run(TwoLayer(512), X, y, steps=5, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9))
    assert sgd.info["optimizer"] == "<lambda>"


def test_token_model_and_user_model_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0)).double()
    tokens = torch.randint(0, 10, (9, 3))
    y = torch.randn(9, dtype=F64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    d = run(net, tokens, y, steps=10)
    assert d.metric("loss_real")["value"].iloc[-1] < d.metric("loss_real")["value"].iloc[0]
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_history_round_trips_through_the_store(data, tmp_path):
    X, y = data
    d = run(TwoLayer(128), X, y, steps=10, probe_every=5)
    RunStore(tmp_path).write("diagnose", {"width": 128}, RunOutput(d.history, d.summary()))
    df = load(tmp_path)
    assert len(df) == len(d.history) and df["width"].eq(128).all()
    assert bool(df["lazy"].iloc[0]) == d.verdict.lazy and not bool(df["diverged"].iloc[0])


def test_decide_thresholds_and_negative_inputs():
    lazy, rate, reasons = decide(0.05, 0.05, 0.1, None, None, 0.99, 0.99, True)
    assert lazy and rate is True and reasons == []
    lazy, _, reasons = decide(0.2, 0.05, 0.1, None, None, 0.99, 0.99, True)
    assert not lazy and reasons == ["gap 0.2 > 0.1"]
    lazy, _, reasons = decide(math.nan, 0.05, 0.1, None, None, 0.99, 0.99, True)
    assert not lazy and reasons == ["gap not measured"]
    lazy, _, _ = decide(0.01, 0.01, 0.1, None, 7, 0.99, 0.99, True)
    assert not lazy
    # rates: exponents log ρ compared with a relative tolerance of RATE_TOLERANCE
    lp = math.log(0.99)
    inside, outside = math.exp(lp * (1 + 0.9 * RATE_TOLERANCE)), math.exp(lp * (1 + 1.1 * RATE_TOLERANCE))
    assert decide(0.01, 0.01, 0.1, None, None, inside, 0.99, True)[1] is True
    assert decide(0.01, 0.01, 0.1, None, None, outside, 0.99, True)[1] is False
    assert decide(0.01, 0.01, 0.1, None, None, 0.99, 0.99, False)[1] is None


class IntParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 1).double()
        self.count = nn.Parameter(torch.zeros(1, dtype=torch.int64), requires_grad=False)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 1).double()

    def forward(self, x):
        return self.lin(x).squeeze(-1).detach()


@pytest.mark.parametrize(
    ("make", "kwargs", "start"),
    [
        (lambda X, y: ("net", X, y), {}, "model: must be a torch.nn.Module"),
        (lambda X, y: (TwoLayer(16), X.long(), y), {}, "X: integer inputs (torch.int64) but the model"),
        (lambda X, y: (TwoLayer(16), X[:, :5], y), {}, "X: the model cannot be applied"),
        (lambda X, y: (TwoLayer(16), X, y[:5]), {}, "y: must have shape (16,) or (16, 1)"),
        (lambda X, y: (TwoLayer(16).requires_grad_(False), X, y), {}, "model: the model has no trainable"),
        (lambda X, y: (IntParam(), X, y), {}, "model: parameter 'count' is not floating point"),
        (lambda X, y: (Detached(), X, y), {}, "model: the output does not depend differentiably"),
        (lambda X, y: (TwoLayer(16), X, y), {"lr": -1.0}, "lr: must be a positive finite number"),
        (lambda X, y: (TwoLayer(16), X, y), {"steps": 0}, "steps: must be a positive integer"),
        (lambda X, y: (TwoLayer(16), X, y), {"optimizer": "sgd"}, "optimizer: must be one of gd, adam"),
        (lambda X, y: (TwoLayer(16), X, y), {"lr_fraction": 2.0}, "lr_fraction: must be in (0, 1]"),
        (lambda X, y: (TwoLayer(16), X, y), {"X_test": torch.zeros(3, 5)}, "test X: per-sample shape"),
        (lambda X, y: (TwoLayer(16), X, y), {"y_test": torch.zeros(3)}, "test y: given without test inputs"),
        (lambda X, y: (TwoLayer(16), X, TwoLayer(16)(X).detach()), {}, "y: equals the model's outputs"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(data, make, kwargs, start):
    X, y = data
    model, Xb, yb = make(X, y)
    with pytest.raises(ZerolossInputError) as info:
        diagnose(model, Xb, yb, **{"steps": 5, **kwargs})
    assert str(info.value).startswith(start) and "\n" not in str(info.value), str(info.value)
