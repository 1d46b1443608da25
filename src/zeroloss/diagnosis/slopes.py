"""Log-log slopes against width: the fit :func:`zeroloss.diagnose_widths` reports and its figure draws.

A lazy-training bound of O(m^(−1/2)) (docs/theory.md §1.5) is read off as the slope of log(value) against
log(width); :data:`BOUND_EXPONENT` is that exponent, drawn as the reference line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The quantities whose width slopes are fitted (maxima over the run, see :class:`zeroloss.diagnosis.Verdict`).
SLOPE_METRICS = ("movement", "drift", "gap")

#: The lazy-training bound's exponent, drawn as a reference line in the figure (module docstring).
BOUND_EXPONENT = -0.5


@dataclass
class Slope:
    """Least-squares fit log(value) = slope·log(width) + intercept over every (width, repeat) point.

    Attributes:
        slope, intercept: the fit.
        stderr: the slope's standard error from the residuals (NaN with fewer than 3 points): the scatter of the
            repeats and the curvature of the law both show up in it.
        points: how many finite, positive values entered the fit.
    """

    slope: float
    intercept: float
    stderr: float
    points: int


def fit_slope(widths: Sequence[float], values: Sequence[float]) -> Slope:
    """Log-log least squares of ``values`` against ``widths`` (non-finite or non-positive values are left out).

    Examples:
        >>> s = fit_slope([100, 400, 1600], [0.1, 0.05, 0.025])
        >>> round(s.slope, 6), s.points
        (-0.5, 3)
    """
    w = np.asarray(widths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(w) & (w > 0)
    x, z = np.log(w[ok]), np.log(v[ok])
    n = int(ok.sum())
    if n < 2 or np.ptp(x) == 0:
        return Slope(math.nan, math.nan, math.nan, n)
    slope, intercept = np.polyfit(x, z, 1)
    stderr = math.nan
    if n > 2:
        resid = z - (slope * x + intercept)
        stderr = float(math.sqrt(resid @ resid / (n - 2) / ((x - x.mean()) @ (x - x.mean()))))
    return Slope(float(slope), float(intercept), stderr, n)
