"""diagnose_widths: the coord-check slopes of a two-layer net in the NTK parametrisation against the theory, with the
mean-field parametrisation of the same net as the negative control (it does not become lazy with width).

Expected exponents (docs/theory.md §1.5 and the module docstring of zeroloss.diagnosis.widths): the lazy-training
theorems bound movement, drift and gap by O(m^{-1/2}); movement is exactly of that order (‖θ_t − θ₀‖ = O(1),
‖θ₀‖ ∝ √m), while drift and gap fall like m^{-1} at leading order (their first-order terms are linear in the
zero-mean output weights and average out over the m neurons).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zeroloss.data import sphere_data
from zeroloss.diagnosis import diagnose, diagnose_widths
from zeroloss.diagnosis.widths import build, fit_slope
from zeroloss.errors import ZerolossInputError


class TwoLayer(nn.Module):
    """f(x) = aᵀ tanh(Wx)·scale, W, a ~ N(0, 1) from torch's global generator; scale 1/√m (NTK) or 1/m (mean field)."""

    def __init__(self, m: int, mean_field: bool = False) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(m, 8, dtype=torch.float64))
        self.a = nn.Parameter(torch.randn(m, dtype=torch.float64))
        self.scale = 1.0 / m if mean_field else 1.0 / math.sqrt(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.W.T) @ self.a * self.scale


@pytest.mark.slow
def test_gap_drift_and_movement_fall_with_width_at_the_theory_rates():
    """Tolerances: over three disjoint seed sets (seeds 0–1, 10–11, 20–21) these fits gave movement −0.45…−0.56
    (standard error 0.02–0.04), drift −0.94…−0.99 (s.e. 0.04–0.08), gap −0.80…−1.03 (s.e. 0.11–0.14). The bands
    below are about 3 standard errors around the predicted exponent; the gap's upper end is the theorems' own
    −1/2 bound (the gap approaches its m^{-1} law from above at these widths: −0.65 between 256 and 1024)."""
    X, y = sphere_data(n=16, d=8, seed=0)
    sweep = diagnose_widths(TwoLayer, [512, 1024, 2048, 4096], X, y, steps=200, repeats=2, probe_every=50,
                            threads=1, progress=False)
    s = sweep.slopes
    assert abs(s["movement"].slope + 0.5) <= 0.12, str(sweep)
    assert abs(s["drift"].slope + 1.0) <= 0.2, str(sweep)
    assert -1.4 <= s["gap"].slope <= -0.5, str(sweep)
    assert sweep.table["lazy"].all() and len(sweep.table) == 8
    # the sweep reports what diagnose measures: rerun two of its rows independently
    for width, repeat in ((512, 1), (4096, 0)):
        d = diagnose(build(TwoLayer, width, repeat), X, y, steps=200, probe_every=50, alpha=False, threads=1,
                     progress=False)
        row = sweep.table[(sweep.table.width == width) & (sweep.table.repeat == repeat)].iloc[0]
        assert d.verdict.gap == row["gap"] and d.verdict.drift == row["drift"]
    fig = sweep.figure()
    assert len(fig.axes) == 1 and "movement" in str(sweep)


def test_mean_field_family_does_not_become_lazy():
    """Negative control: the same net with the 1/m output scale (mean field). Its default step 1/λ_max grows ∝ m, the
    neurons move O(1) at every width, and nothing falls with width (measured slopes −0.03…0.0, every run not
    lazy); the threshold −0.25 is half-way to the lazy family's slowest exponent."""
    X, y = sphere_data(n=16, d=8, seed=0)
    sweep = diagnose_widths(lambda m: TwoLayer(m, mean_field=True), [128, 512, 2048], X, y, steps=200,
                            probe_every=50, threads=1, progress=False)
    for name in ("movement", "drift", "gap"):
        assert sweep.slopes[name].slope > -0.25, str(sweep)
    assert not sweep.table["lazy"].any()


def test_fit_slope_reference():
    s = fit_slope([10, 100, 1000, 10000], [3.0, 0.3, 0.03, 0.003])
    assert s.slope == pytest.approx(-1.0, abs=1e-12) and s.stderr == pytest.approx(0.0, abs=1e-12)
    s = fit_slope([1, 2, 4], [1.0, math.nan, 0.25])  # non-finite values are left out
    assert s.slope == pytest.approx(-1.0) and s.points == 2 and math.isnan(s.stderr)
    assert math.isnan(fit_slope([1, 2], [0.0, -1.0]).slope)
    g = np.random.default_rng(0)
    w = np.repeat([100.0, 400.0, 1600.0], 20)
    v = w**-0.5 * np.exp(0.1 * g.standard_normal(w.size))
    s = fit_slope(w, v)
    assert abs(s.slope + 0.5) < 4 * s.stderr  # the standard error covers the scatter


def test_small_sweep_and_bad_input():
    X, y = sphere_data(n=8, d=8, seed=0)
    sweep = diagnose_widths(TwoLayer, [32, 128], X, y, steps=5, probe_every=5, threads=1, progress=False,
                            keep=False)
    assert list(sweep.table["width"]) == [32, 128] and sweep.diagnoses == []
    assert set(sweep.summary()) == {f"slope_{m}{e}" for m in ("movement", "drift", "gap") for e in ("", "_stderr")}
    for widths, match in (([64], "widths: needs at least two"), ("64,128", "widths: must be a list"),
                          ([64, 0], "widths: must be a positive integer")):
        with pytest.raises(ZerolossInputError, match=match):
            diagnose_widths(TwoLayer, widths, X, y, steps=2)
    with pytest.raises(ZerolossInputError, match=r"^factory: factory\(64\) raised ValueError: no"):
        diagnose_widths(lambda m: (_ for _ in ()).throw(ValueError("no")), [64, 128], X, y, steps=2)
    with pytest.raises(ZerolossInputError, match=r"^factory: factory\(64\) must return a torch.nn.Module"):
        diagnose_widths(lambda m: 3, [64, 128], X, y, steps=2)
    # the factory is called under seed + repeat, and torch's global generator is left as it was
    state = torch.random.get_rng_state()
    a, b = build(TwoLayer, 16, 3), build(TwoLayer, 16, 3)
    assert torch.equal(a.W, b.W) and torch.equal(torch.random.get_rng_state(), state)
