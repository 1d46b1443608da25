"""The quantities the marion2023 claims rest on (docs/theory.md §3.3): the O(η) floor, the closing time and the
horizon built from it, the general limit's Euler step, and the O(h) label-noise excess of online SGD."""

from __future__ import annotations

import numpy as np
import pytest

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.marion2023.experiments import two_timescale_horizon
from zeroloss.papers.marion2023.twotimescale import (
    euler_steps,
    exact_risk,
    floor_risk,
    general_limit,
    init_positions,
    label_noise_excess,
    latest_closing_time,
    limit_horizon,
    online_sgd,
    optimal_outer,
    sharp_limit,
    target_preset,
)
from zeroloss.papers.marion2023.twotimescale.limit import HORIZON_MARGIN


@pytest.mark.parametrize("name", ["paper", "code"])
def test_floor_is_the_risk_of_one_neuron_on_every_jump(name):
    target = target_preset(name)
    eta = 4e-3
    u = target.jumps[None, :]  # one neuron exactly on each jump, 0.15 ≫ η apart
    a = np.concatenate([[target.values[0]], target.jump_sizes])[None, :]  # a₀ = f*(0), a_j = Δf_j
    # Exact quadrature on both sides: equal to round-off.
    assert exact_risk(a, u, eta, target)[0] == pytest.approx(floor_risk(target, eta), rel=1e-12)
    assert floor_risk(target, eta) == pytest.approx(np.sum(target.jump_sizes**2) * eta / 28)
    with pytest.raises(ZerolossInputError, match="eta"):
        floor_risk(target, -1.0)


def test_latest_closing_time_is_when_the_sharp_flow_covers_every_jump():
    target = target_preset("code")
    u0 = init_positions(20, 2, 3, valid_for=target)
    T = latest_closing_time(u0, target)
    assert T.shape == (2,) and np.all(T > 0)
    for r in range(2):
        run = sharp_limit(u0[r : r + 1], target, t_max=1.2 * T[r], n_steps=12_000, logs=12_000)
        first_zero = run.tau[np.argmax(run.risk[:, 0] == 0.0)]
        # Euler with dτ = 10⁻⁴ T and snapping: the last arrival is off by O(dτ); 5·10⁻³ allows 50 steps.
        assert run.risk[-1, 0] == 0.0 and first_zero == pytest.approx(T[r], rel=5e-3)


def test_the_smoothed_limit_reaches_the_floor_at_the_horizon_and_not_much_before_the_closing_time():
    """The sharp (η → 0) closing time predicts the general flow at η = 4·10⁻³: short of it the limit is well above
    the floor; at the horizon it is at the floor, up to neurons near a jump that shave a little off it."""
    target = target_preset("code")
    u0 = init_positions(20, 1, 3, valid_for=target)
    floor = floor_risk(target, 4e-3)
    T = float(latest_closing_time(u0, target)[0])
    early = general_limit(u0, 4e-3, target, 0.8 * T, n_steps=euler_steps(0.8 * T), logs=1)
    at = general_limit(u0, 4e-3, target, float(limit_horizon(u0, target)[0]),
                       n_steps=euler_steps(HORIZON_MARGIN * T), logs=1)
    # Measured: 2.8× the floor at 0.8 T, 0.997× at 1.5 T. The floor is the one-neuron-per-jump risk; a*(u) with a
    # second neuron within η of a jump can do slightly better, hence the lower bound 0.9, not 1.
    assert early.final_risk[0] > 1.5 * floor
    assert 0.9 * floor <= at.final_risk[0] <= 1.05 * floor


def test_euler_step_stays_the_papers_for_longer_horizons():
    assert euler_steps(0.035) == 1000 and euler_steps(0.35) == 10_000 and euler_steps(1e-9) == 1


def test_spec_horizon_is_the_margin_times_the_closing_time_of_the_seed():
    for name in ("paper", "code"):
        target = target_preset(name)
        u0 = init_positions(20, 1, 2, valid_for=target)
        expected = HORIZON_MARGIN * latest_closing_time(u0, target)[0]
        assert two_timescale_horizon(name, 2) == pytest.approx(expected, rel=1e-3)  # rounded to 4 digits


def test_label_noise_excess_matches_sgd_at_frozen_positions():
    """ε = 10⁻¹² freezes u; starting from a*(u), the time-averaged risk above L(a*(u), u) is the LMS excess."""
    target = target_preset("paper")
    u = init_positions(20, 4, 0, valid_for=target)
    a = optimal_outer(u, 4e-3, target)
    h = 3e-3
    run = online_sgd(target, eps=1e-12, h=h, steps=1_000_000, u0=u, a0=a, seed=0, logs=200)
    measured = run.risk[20:].mean(axis=0) - exact_risk(a, u, 4e-3, target)
    predicted = label_noise_excess(u, 4e-3, h, 1.0, target)
    # First order in h: the next order adds ≈ h·E|Φ|⁴/E|Φ|² ≈ 4 % here; each member's time average over 10⁶ steps
    # scatters by ±15 %, ±5–8 % pooled over 4 (measured pooled ratios 1.03–1.10 over 6 draws). A formula off by a
    # factor (say, without the misfit term, or σ_ξ² = 1 instead of 1/3) lands far outside [0.85, 1.25].
    assert 0.85 < measured.sum() / predicted.sum() < 1.25


@pytest.mark.slow
def test_the_horizon_margin_holds_on_held_out_calibration_seeds():
    """HORIZON_MARGIN was calibrated on CALIBRATION_SEEDS, which no claim uses; re-check two of them: short of the
    closing time the limit is above the floor, from 1.0× on it is at it (measured 0.99–1.06× over the 20 pairs)."""
    from zeroloss.papers.marion2023.twotimescale.limit import CALIBRATION_SEEDS, calibrate_horizon

    assert min(CALIBRATION_SEEDS) > 42  # above every seed the experiments use (0–19 and the official 42)
    ratios = calibrate_horizon(target_preset("code"), seeds=CALIBRATION_SEEDS[2:4],
                               fractions=(0.8, 1.0, HORIZON_MARGIN))
    assert np.all(ratios[:, 0] > 1.5)  # 0.8 T: measured 4.5 and 15.5
    assert np.all((ratios[:, 1:] > 0.9) & (ratios[:, 1:] < 1.1))
