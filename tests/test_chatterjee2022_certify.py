"""Chatterjee's local PL criterion (docs/theory.md §2): linear model reference, positive init certificates, GD
trajectory, the probabilistic corollary, and the ``zeroloss certify`` command."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.nets import FeedForward
from zeroloss.papers.chatterjee2022.init import initialise
from zeroloss.papers.chatterjee2022.runs import run_certified_gd
from zeroloss.papers.chatterjee2022.theory import (
    Certificate,
    binomial_interval,
    certify,
    criterion_probability,
    trajectory_check,
)


def _linear_problem():
    X, y = sphere_data(n=6, d=10, seed=0)
    net = FeedForward(10, [], "tanh", dtype=torch.float64, output_bias=False, init="lecun")  # f = vᵀx
    lam = float(torch.linalg.eigvalsh(X @ X.T)[0])
    w0 = net.v.detach()[0]
    w_star = w0 + X.T @ torch.linalg.solve(X @ X.T, y - X @ w0)  # nearest zero of F
    return net, X, y, lam, float((w_star - w0).norm())


def test_linear_model_alpha_is_four_lambda_min():
    """F = ‖Xw − y‖²: ‖∇F‖²/F = 4 rᵀXXᵀr/‖r‖² ≥ 4λ_min(XXᵀ), with equality approached near the zero of F along the
    bottom eigenvector — inside the ball once r exceeds the distance to that zero."""
    net, X, y, lam, dist = _linear_problem()
    cert = certify(net, X, y, radius=2 * dist, samples=32, descent_starts=4, descent_steps=200)
    assert cert.alpha_lower_bound == pytest.approx(4 * lam, rel=1e-12)
    # the estimate is an infimum found by descent: never below the truth (round-off aside), and within 1 % of it
    # (200 descent steps reach 1 + 4e-7 here; 1 % leaves room for other seeds)
    assert 4 * lam * (1 - 1e-9) <= cert.alpha_estimate <= 4 * lam * 1.01
    # F(w₀) is large relative to r²α here: the criterion is honestly reported as failing or holding
    assert cert.certified == (4 * cert.f0 < cert.radius**2 * cert.alpha_lower_bound)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_positive_init_is_certified_and_gd_stays_in_the_ball_at_the_certified_rate(activation):
    X, y = sphere_data(n=6, d=10, seed=0)
    net = FeedForward(10, [16, 16], activation, dtype=torch.float64, init=None)
    info = initialise(net, "positive", X=X, y=y, radius=0.05)
    assert torch.all(net.W1 == 0) and torch.all(net.W2 > 0) and info["M"][0] > info["threshold"][0]
    if net.activation.sigma0 != 0:  # softplus: the output bias cancels the constant prediction (docs/theory.md §2.3)
        with torch.no_grad():
            assert float(net(X)[0].mean()) == pytest.approx(float(y.mean()), abs=1e-9)
    cert = certify(net, X, y, radius=0.05, samples=16, descent_starts=2, descent_steps=20)
    assert cert.certified and 4 * cert.f0 < cert.radius**2 * cert.alpha_lower_bound
    # certified ≤ true inf ≤ anything found by sampling or descent
    assert cert.alpha_lower_bound <= cert.alpha_estimate
    assert cert.alpha_lower_bound <= cert.alpha_sampled and cert.alpha_lower_bound <= cert.alpha_at_w0
    run, check = run_certified_gd(net, X, y, cert, steps=3000)
    assert check.stayed_in_ball and check.max_distance < cert.radius
    assert check.rate_ok and check.worst_ratio <= cert.certified_rate()
    assert run.losses[-1, 0] < run.losses[0, 0]


@pytest.mark.parametrize("activation, match", [("relu", "activation"), ("gelu", "strictly increasing")])
def test_certificate_refuses_activations_outside_the_theory(activation, match):
    X, y = sphere_data(n=4, d=8, seed=0)
    net = FeedForward(8, [8], activation, dtype=torch.float64)
    with pytest.raises(ZerolossInputError, match=match):
        certify(net, X, y, radius=0.1, samples=4, descent_starts=0, beta=False)


def test_certificate_refuses_linearly_dependent_inputs_and_reports_lambda_min():
    X, y = sphere_data(n=8, d=4, seed=0)  # n > d: XXᵀ is singular
    net = FeedForward(4, [8], "tanh", dtype=torch.float64)
    with pytest.raises(ZerolossInputError, match=r"λ_min\(XXᵀ\)|lambda_min|linearly independent"):
        certify(net, X, y, radius=0.1, samples=4, descent_starts=0, beta=False)


def test_binomial_interval_brackets_the_estimate():
    lo, hi = binomial_interval(7, 20)
    assert 0 <= lo < 7 / 20 < hi <= 1
    lo, hi = binomial_interval(20, 20)
    assert hi == 1.0 and lo < 1.0


def test_criterion_probability_positive_law_always_certified():
    X, y = sphere_data(n=4, d=8, seed=0)
    net = FeedForward(8, [8, 8], "tanh", members=4, dtype=torch.float64, init=None)
    initialise(net, "positive", X=X, y=y, radius=0.05)
    res = criterion_probability(net, X, y, radii=[0.05], samples=4, descent_starts=0)
    assert res.law == "positive" and res.certified == res.trials == 4
    assert res.low <= res.estimate == 1.0 <= res.high


def test_criterion_probability_counts_only_certified_trials():
    """At a large radius the *estimated* criterion can hold for a Gaussian law (α estimated from a few samples of
    the ball, an upper bound on α), but nothing is proven: the bound's count and interval must stay at zero."""
    X, y = sphere_data(n=4, d=8, seed=0)
    net = FeedForward(8, [8, 8], "tanh", members=6, dtype=torch.float64, init="kaiming")
    res = criterion_probability(net, X, y, radii=[10.0], samples=2, descent_starts=0)
    assert res.estimated > 0  # the optimistic count is non-zero here …
    assert res.certified == 0 and res.estimate == 0.0 and res.low == 0.0  # … and is not added to the bound
    assert f"{res.estimated}/6 satisfy the criterion with the α estimate" in res.basis


def test_trajectory_check_flags_a_violation_and_a_divergence():
    cert = Certificate(radius=1.0, member=0, f0=1.0, alpha_lower_bound=4.0, certified=True, reason="",
                       alpha_estimate=4.0, alpha_sampled=4.0, alpha_descent=4.0, alpha_at_w0=4.0,
                       criterion_estimated=True, beta_estimate=2.0, step_size=0.25, lr=0.5, rho=1.0, step_basis="",
                       lambda_min_xxt=1.0)
    ok = trajectory_check(cert, 0.5 ** np.arange(8), [0.0, 0.9], lr=0.5)
    assert ok.rate_ok and ok.stayed_in_ball and ok.steps_checked == 7
    slow = trajectory_check(cert, 0.6 ** np.arange(8), [0.0, 1.1], lr=0.5)
    assert slow.rate_ok is False and slow.worst_ratio == pytest.approx(0.6) and not slow.stayed_in_ball
    blown = trajectory_check(cert, [1.0, 0.5, np.inf, np.nan], [0.0], lr=0.5)
    assert blown.diverged and blown.steps_checked == 1
    with pytest.raises(ZerolossInputError, match="lr"):
        trajectory_check(cert, [1.0, 0.5], [0.0], lr=-1.0)


@pytest.fixture
def data_files(tmp_path):
    X, y = sphere_data(n=4, d=8, seed=0)
    np.save(tmp_path / "X.npy", X.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    return ["--inputs", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"), "--samples", "8",
            "--descent-steps", "10"]


def _certify(args):
    result = CliRunner().invoke(app, ["certify", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_json_fields_and_errors(data_files):
    args = ["--widths", "8,8", "--activation", "tanh", *data_files, "--json"]
    code, out, _ = _certify([*args, "--init", "positive", "--radius", "0.05"])
    assert code == 0, out
    record = json.loads(out.strip().splitlines()[-1])
    for key in ("certified", "alpha_lower_bound", "alpha_estimate", "f0", "radius", "beta_estimate", "step_size"):
        assert key in record
    assert record["certified"] is True and record["alpha_lower_bound"] > 0 and record["radius_choice"] is None
    code, out, _ = _certify([*args, "--init", "kaiming", "--radius", "0.05"])
    kaiming = json.loads(out.splitlines()[-1])
    assert kaiming["alpha_lower_bound"] is None and kaiming["certified"] is False


def test_cli_chooses_the_radius_and_says_which(data_files):
    code, out, err = _certify(["--widths", "8,8", *data_files, "--json"])
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    choice = record["radius_choice"]
    assert record["radius"] == choice["radius"] < choice["ceiling"] == pytest.approx(1 / 8)  # below 1/fan_in
    assert record["certified"] is True and "smallest certified output scale" in choice["rule"]
    assert f"chose r = {choice['radius']:.4g}" in err
    # the choice is the best of its grid: every other candidate radius needs a larger certified M
    X, y = sphere_data(n=4, d=8, seed=0)
    Ms = {}
    for j in range(1, 41):
        r = choice["ceiling"] * 2.0 ** (-j / 2)
        net = FeedForward(8, [8, 8], "tanh", dtype=torch.float64, init=None)
        Ms[r] = initialise(net, "positive", X=X, y=y, radius=r)["M"][0]
    assert min(Ms, key=Ms.get) == pytest.approx(choice["radius"])
    assert record["init_info"]["M"][0] == pytest.approx(min(Ms.values()))


def test_cli_with_a_given_output_scale_maximises_the_certified_margin(data_files):
    code, out, err = _certify(["--widths", "8,8", "--output-scale", "5000", *data_files, "--json"])
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert "largest certified margin" in record["radius_choice"]["rule"] and record["certified"] is True


@pytest.mark.parametrize("extra, field, cause", [
    # the case: 0.5 < hidden weight 1, yet refused — because tanh saturates on the ball, not the radius rule
    (["--widths", "32,32", "--hidden", "1", "--radius", "0.5"], "--radius", "no positive lower bound"),
    (["--widths", "8,8", "--radius", "1"], "--radius", "min W2 = 0.125 is not above the radius 1"),
    (["--widths", "8,8", "--radius", "1e-300"], "--radius", "underflows"),
    (["--widths", "8,8", "--radius", "1e300"], "--radius", "overflows"),
    (["--widths", "8,8", "--radius", "nan"], "--radius", "positive number"),
    (["--widths", "8,8", "--radius", "-1"], "--radius", "positive number"),
    (["--widths", "8,8", "--samples", "-1"], "--samples", "≥ 0"),
    (["--widths", "8,8", "--descent-steps", "-3"], "--descent-steps", "≥ 0"),
    (["--widths", "8,8", "--seed", str(2**70)], "--seed", "from 0 to 2**63 - 2"),
    (["--widths", "8,8", "--seed", "-1"], "--seed", "from 0 to 2**63 - 2"),
    (["--widths", "8,8", "--hidden", "nan"], "--hidden", "positive number"),
    (["--widths", "8,8", "--hidden", "-0.1"], "--hidden", "positive number"),
    (["--widths", "8,8", "--output-scale", "-2"], "--output-scale", "positive number"),
    (["--widths", "8,0"], "--widths", "positive integers"),
    (["--widths", "8,8", "--init", "kaiming"], "--radius", "no radius can be certified for init 'kaiming'"),
    (["--widths", "8", "--init", "positive"], "--radius", "fewer than 2 hidden layers"),
    (["--widths", "8,8", "--activation", "relu", "--radius", "0.01"], "--activation", "smooth"),
])
def test_cli_refusals_are_one_line_and_name_the_real_cause(data_files, extra, field, cause):
    code, out, err = _certify([*data_files, *extra])  # the later option wins
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"error: {field}: ") and cause in lines[0], lines[0]
    if "hidden" in extra and "0.5" in extra:
        assert "must be below the smallest hidden weight" not in lines[0]


def test_cli_refuses_dependent_inputs_naming_the_inputs(tmp_path):
    X, y = sphere_data(n=8, d=4, seed=0)
    np.save(tmp_path / "X.npy", X.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    code, _, err = _certify(["--widths", "8,8", "--inputs", str(tmp_path / "X.npy"), "--labels",
                             str(tmp_path / "y.npy"), "--radius", "0.01"])
    assert code == 2 and err.startswith("error: --inputs: ") and "linearly independent" in err
