"""SGD update, ε → 0 limits, validity, regimes, CLI (MATH §3.3–3.4)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroloss.cli import app
from zeroloss.errors import ZerolossInputError
from zeroloss.twotimescale import (
    PiecewiseConstant,
    check_validity,
    general_limit,
    init_positions,
    online_sgd,
    sharp_closing_time,
    sharp_limit,
    target_preset,
)
from zeroloss.twotimescale.model import features, sigma_d1
from zeroloss.twotimescale.sgd import sgd_on_samples


@pytest.mark.parametrize("derivative", ["exact", "box"])
def test_compiled_sgd_step_matches_the_update_rule(derivative):
    rng = np.random.default_rng(0)
    eta, h, eps = 0.05, 0.01, 0.3
    u = np.sort(rng.random((1, 5)), axis=1)
    a = rng.normal(size=(1, 6))
    x, y = np.array([[u[0, 2] + 0.01]]), np.array([[2.5]])
    a_new, u_new = sgd_on_samples(a, u, x, y, h, eps, eta, derivative)
    phi = features(u, x[0], eta)[0, 0]  # (m + 1,)
    g = 2.0 * (y[0, 0] - phi @ a[0])
    d = x[0, 0] - u[0]
    dphi = sigma_d1(d / eta) / eta if derivative == "exact" else (np.abs(d) <= eta / 2) / eta
    np.testing.assert_allclose(a_new[0], a[0] + h * g * phi, rtol=1e-14)
    np.testing.assert_allclose(u_new[0], u[0] - h * eps * g * a[0, 1:] * dphi, rtol=1e-14)


def test_sharp_flow_closes_a_jump_in_the_closed_form_time():
    target = PiecewiseConstant(np.array([0.5]), np.array([0.0, 2.0]))
    d_left, d_right = 0.08, 0.05
    u0 = np.array([[0.1, 0.5 - d_left, 0.5 + d_right, 0.9]])
    T = sharp_closing_time(d_left, d_right, 2.0)
    n_steps = 20_000
    run = sharp_limit(u0, target, t_max=2 * T, n_steps=n_steps, logs=n_steps)
    on_jump = np.isclose(run.u[:, 0, :], 0.5, atol=0).any(axis=1)
    first = run.tau[np.argmax(on_jump)]
    # Euler with dτ = 2T/20000 and snapping: the arrival time is off by O(dτ); 5e-3 relative allows ~50 steps.
    assert first == pytest.approx(T, rel=5e-3)
    assert run.risk[-1, 0] == 0.0 and run.risk[0, 0] > 0


def test_symmetric_pair_closes_in_4d_over_jump_squared():
    assert sharp_closing_time(0.1, 0.1, 2.0) == pytest.approx(0.1)


def test_validity_condition_names_the_piece():
    target = target_preset("paper")
    u = np.array([[0.05, 0.1, 0.25, 0.3, 0.4, 0.45, 0.55, 0.7, 0.75, 0.85, 0.9]])  # [0.35, 0.5) has 2, [.5,.65) 1
    with pytest.raises(ZerolossInputError, match=r"u0: the constant piece \[0.5, 0.65\) of the target holds 1 neuron"):
        check_validity(u, target)
    with pytest.raises(ZerolossInputError, match="at least 2"):
        general_limit(u, 4e-3, target, 0.01)


def test_two_timescale_sgd_tracks_the_limit_and_eps_one_ends_higher():
    """MATH §3.4 quick config vs the ε → 0 limit from the same u₀, and ε = 1 with the paper's h = 10⁻⁵."""
    target = target_preset("paper")
    u0 = np.concatenate([init_positions(20, 1, s, valid_for=target) for s in range(3)])
    two = online_sgd(target, eps=2e-5, h=1e-3, steps=1_750_000, u0=u0, seed=0, logs=20)
    limit = general_limit(u0, 4e-3, target, 0.035, n_steps=1000, logs=20)
    one = online_sgd(target, eps=1.0, h=1e-5, steps=1_000_000, u0=u0, seed=0, logs=20)
    ratio = two.final_risk / limit.final_risk
    # At τ = 0.035 the SGD risk is the limit's plus label-noise fluctuation (h = 10⁻³): within a factor 1.5 per
    # seed (we measured 1.02–1.13); a failure of tracking is an order of magnitude, not tens of per cent.
    assert np.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio
    # ε = 1 plateaus higher: a factor 2 on the median separates the regimes beyond the seed-to-seed spread.
    assert np.median(one.final_risk) >= 2 * np.median(two.final_risk)


def test_cli_json_and_atomic_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["two-timescale", "--eps", "1", "--h", "1e-3", "--t-max", "1", "--repeats", "2",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(record["final_risk"]) == 2 and record["steps"] == 1000 and record["seconds"] >= 0
    assert {p.name for p in out.iterdir()} == {"spec.json", "metrics.parquet", "summary.json"}
    bad = runner.invoke(app, ["two-timescale", "--target", "nope", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
