"""Marion & Berthier's two-timescale regime (NeurIPS 2023): the univariate lab (docs/theory.md §3).

- :mod:`targets`: piecewise-constant f* (presets ``paper`` and ``code``), the sum-of-steps and ReLU teachers.
- :mod:`model`: f(x) = a₀ + Σ a_j σ((x − u_j)/η) with the cubic smoothed step; u₀ draws; neurons per piece.
- :mod:`risk`: the exact population risk ∫₀¹(f − f*)², its gradient, and a*(u) (cell-wise Gauss–Legendre).
- :mod:`sgd`: online SGD with label noise, numba-compiled, repeats side by side.
- :mod:`limit`: the ε → 0 limit, general (least squares + ODE) and sharp-step (closed form with snapping); the
  closing time, the horizon built from it and the O(η) floor Σ Δf² η/28.
- :mod:`gd`: full-batch GD with two optimisers (the appendix's additive and ReLU models).
- :mod:`population`: two-timescale GD on the exact population risk (no sample, no label noise), SGD's deterministic
  twin.

Examples:
    >>> from zeroloss import twotimescale as tt
    >>> run = tt.online_sgd(tt.target_preset("paper"), eps=2e-5, h=1e-3, steps=1000, repeats=2, seed=0)
    >>> run.risk.shape[1]
    2
"""

from zeroloss.papers.marion2023.twotimescale.gd import GDRunTT, two_optimizer_gd
from zeroloss.papers.marion2023.twotimescale.limit import (
    LimitRun,
    calibrate_horizon,
    check_validity,
    euler_steps,
    floor_risk,
    general_limit,
    latest_closing_time,
    limit_horizon,
    sharp_closing_time,
    sharp_limit,
    sharp_risk,
)
from zeroloss.papers.marion2023.twotimescale.model import forward, init_positions, neurons_per_piece
from zeroloss.papers.marion2023.twotimescale.population import PopulationRun, population_gd
from zeroloss.papers.marion2023.twotimescale.risk import exact_risk, label_noise_excess, optimal_outer, risk_and_grad
from zeroloss.papers.marion2023.twotimescale.targets import PiecewiseConstant, relu_teacher, sum_of_steps, target_preset

#: Names served by the numba module :mod:`~zeroloss.papers.marion2023.twotimescale.sgd`, imported on first use so that
#: ``import zeroloss`` does not pay numba's import (~0.4 s) when the online SGD is not used.
_LAZY = dict.fromkeys(("SGDRun", "online_sgd"), "zeroloss.papers.marion2023.twotimescale.sgd")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "GDRunTT",
    "LimitRun",
    "PiecewiseConstant",
    "PopulationRun",
    "SGDRun",
    "calibrate_horizon",
    "check_validity",
    "euler_steps",
    "exact_risk",
    "floor_risk",
    "forward",
    "general_limit",
    "init_positions",
    "label_noise_excess",
    "latest_closing_time",
    "limit_horizon",
    "neurons_per_piece",
    "online_sgd",
    "optimal_outer",
    "population_gd",
    "relu_teacher",
    "risk_and_grad",
    "sharp_closing_time",
    "sharp_limit",
    "sharp_risk",
    "sum_of_steps",
    "target_preset",
    "two_optimizer_gd",
]
