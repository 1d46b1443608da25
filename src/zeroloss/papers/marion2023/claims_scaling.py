"""Claims of ``marion2023.eta_scaling``: the final risk against η, its fitted slope and constant (docs/theory.md §3.3).

Examples:
    >>> x = np.log(np.array([1e-3, 2e-3, 4e-3, 8e-3]))
    >>> slope, half, dof = slope_fit(x, x + np.log(29 / 28) + np.array([0, .01, -.01, 0]), np.zeros(4))
    >>> round(slope, 2), dof
    (1.0, 2)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.marion2023.claims import _MARION, _high, runs_table
from zeroloss.papers.marion2023.twotimescale import floor_risk, target_preset

#: The O(η) claim: the fitted slope of log(final risk) against log η must be 1 within this. Lab choice: the floor
#: Σ Δf² η/28 is exactly linear in η [derived]; a*(u) shaves up to 6 % off it when a second neuron sits within η of a
#: jump (measured), which over the factor 8 of the η grid moves a slope by ≤ 0.03; an uncovered jump adds an
#: η-independent Δf² d term that pulls the slope towards 0. 0.2 separates the two by far.
SLOPE_TOL = 0.2


def slope_fit(log_eta: np.ndarray, log_risk: np.ndarray, groups: np.ndarray) -> tuple[float, float, int]:
    """Least-squares slope of log_risk on log_eta with one intercept per group (seed fixed effects): (slope, 95 %
    half-width from Student's t, residual degrees of freedom). Half-width NaN when there are no degrees of freedom.

    Examples:
        >>> x = np.log(np.array([1.0, 2.0, 4.0, 1.0, 2.0, 4.0])); g = np.array([0, 0, 0, 1, 1, 1])
        >>> slope, half, dof = slope_fit(x, 2 * x + g + np.array([0, .01, 0, 0, -.01, 0]), g)
        >>> round(slope, 3), dof
        (2.0, 3)
    """
    from scipy import stats  # deferred

    xt, yt = log_eta.astype(np.float64).copy(), log_risk.astype(np.float64).copy()
    for g in np.unique(groups):
        sel = groups == g
        xt[sel] -= xt[sel].mean()
        yt[sel] -= yt[sel].mean()
    sxx = float(np.sum(xt * xt))
    slope = float(np.sum(xt * yt) / sxx)
    dof = len(xt) - len(np.unique(groups)) - 1
    if dof < 1:
        return slope, float("nan"), dof
    se = float(np.sqrt(np.sum((yt - slope * xt) ** 2) / dof / sxx))
    return slope, float(stats.t.ppf(0.975, dof) * se), dof


def eta_claims(df: pd.DataFrame) -> list[Claim]:
    """``marion2023.eta_scaling``: the final risk is O(η) with slope 1 (fixed-effects fit over seeds, 95 % interval).

    PASS when the interval lies within 1 ± :data:`SLOPE_TOL`; INCONCLUSIVE when the local slopes between neighbouring
    η (medians over seeds) differ by more than 2·SLOPE_TOL — the grid is then partly outside the range where the
    fixed ε and h are small enough for η (the theorem asks ε small enough *for each* η), a pre-asymptotic slope —,
    or when the interval straddles the band; FAIL when the interval lies outside it with the local slopes settled.
    The fitted constant C (risk ≈ C η at the largest η) is printed beside Σ Δf²/28."""
    runs = runs_table(df)
    risk = _high(runs["plateau_risk"])
    etas = runs["eta"].to_numpy(dtype=np.float64)
    grid = np.sort(np.unique(etas))
    if grid.size < 2:
        return []
    slope, half, dof = slope_fit(np.log(etas), np.log(risk), runs["seed"].to_numpy())
    medians = np.array([np.median(risk[etas == e]) for e in grid])
    local = np.diff(np.log(medians)) / np.diff(np.log(grid))
    const = medians / grid
    derived = floor_risk(target_preset(runs["target"].iloc[0]), 1.0)
    low, high = slope - half, slope + half
    band = (1 - SLOPE_TOL, 1 + SLOPE_TOL)
    moving = bool(local.max() - local.min() > 2 * SLOPE_TOL)
    if not np.isfinite(half):
        verdict, reason = INCONCLUSIVE, "too few runs for an interval"
    elif band[0] <= low and high <= band[1]:
        verdict, reason = PASS, ""
    elif moving:
        verdict = INCONCLUSIVE
        reason = ("pre-asymptotic: the local slopes between neighbouring η still move ("
                  + ", ".join(f"{v:.2f}" for v in local) + "), so at this ε and h the smallest η are outside the "
                  "range where the fixed ε, h are small enough for η")
    elif high < band[0] or low > band[1]:
        verdict, reason = FAIL, ""
    else:
        verdict = INCONCLUSIVE
        reason = f"the interval [{low:.2f}, {high:.2f}] straddles the band {band[0]:g}–{band[1]:g}"
    return [Claim(
        "marion2023.eta_scaling", "the final risk is O(η): slope 1 of log risk against log η",
        f"{slope:.3f} ± {half:.3f}", f"95 % interval within 1 ± {SLOPE_TOL:g}", verdict,
        f"{len(runs)} runs, η = " + ", ".join(f"{e:g}" for e in grid) + f", ε = {runs['eps'].iloc[0]:g}, "
        f"h = {runs['h'].iloc[0]:g}, label noise {runs['noise'].iloc[0] if 'noise' in runs else 1:g}; seed fixed "
        f"effects, {dof} residual dof; local slopes " + ", ".join(f"{v:.2f}" for v in local)
        + "; risk/η (median) " + ", ".join(f"{c:.3g}" for c in const) + f" beside Σ Δf²/28 = {derived:.4g} "
        f"(ratio at the largest η {const[-1] / derived:.3f})",
        provenance=Provenance("derived", f"{_MARION}, Theorem (loss O(η)) [theorem]; the floor Σ Δf² η/28 is linear "
                                         f"in η (docs/theory.md §3.3) [derived]; tolerance {SLOPE_TOL:g} [lab]"),
        reason=reason)]
