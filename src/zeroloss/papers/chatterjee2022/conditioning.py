"""The ``chatterjee2022.conditioning`` claims: the positive init's speed is set by κ(XXᵀ) (docs/theory.md §2.5).

Without hidden biases the positive initialisation is GD on least squares in x, so its step count is a function of
the data alone; the baselines' counts are not. The experiment varies the data's conditioning — centred, uncentred,
whitened and synthetic spectra — at one network, and checks (i) the reduction, to the step
(:func:`~zeroloss.papers.chatterjee2022.claims.reduction_claim`), and (ii) that the positive/best-baseline step ratio
rises with κ(XXᵀ) (:func:`kappa_trend_claim`).

Examples:
    >>> import pandas as pd
    >>> runs = pd.DataFrame([dict(hidden_bias=False, data="synthetic", centred=True, kappa=k, widths=(8, 8),
    ...                           init=i, seed=0, reached=True, steps_to_target=s, budget=1000, kappa_xx=k)
    ...                      for k in (1, 10, 100, 300, 1000)
    ...                      for i, s in (("positive", 5 * k), ("kaiming", 400))])
    >>> [c.verdict for c in kappa_trend_claim(runs, CONDITIONING)]
    ['PASS']
"""

from __future__ import annotations

import math

import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.chatterjee2022.claims import (
    CONDITIONING,
    comparisons,
    flag,
    median_interval,
    point_ratio,
    reduction_claim,
    runs_table,
)

#: The κ-trend claim's significance level (one-sided Spearman test) and the fewest distinct condition numbers.
TREND_LEVEL = 0.05
TREND_MIN_POINTS = 5


def ratio_by_kappa(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct problem without hidden biases: κ(XXᵀ), the positive count, the best baseline's and the
    median baseline's (point values; NaN where a count is censored) and their ratios."""
    table = comparisons(runs[~runs["hidden_bias"].map(flag)]) if "hidden_bias" in runs else pd.DataFrame()
    if table.empty:
        return pd.DataFrame(columns=["problem", "kappa_xx", "ratio_best", "ratio_median"])
    rows = []
    for problem, sub in table.groupby("problem", sort=True):
        p = median_interval(list(sub["positive"]))
        best, med = median_interval(list(sub["best_baseline"])), median_interval(list(sub["median_baseline"]))
        rows.append({"problem": problem, "data": sub["data"].iloc[0], "centred": sub["centred"].iloc[0],
                     "whitened": flag(sub["whitened"].iloc[0]) if "whitened" in sub else False,
                     "kappa_xx": float(sub["kappa_xx"].iloc[0]), "positive": p[0] if p[0] == p[1] else math.nan,
                     "ratio_best": point_ratio(p, best), "ratio_median": point_ratio(p, med)})
    return pd.DataFrame(rows).sort_values("kappa_xx").reset_index(drop=True)


def kappa_trend_claim(runs: pd.DataFrame, experiment: str) -> list[Claim]:
    """The positive/best-baseline step ratio rises with κ(XXᵀ): one-sided Spearman test over distinct problems."""
    from scipy import stats

    table = ratio_by_kappa(runs)
    observed = table.dropna(subset=["ratio_best"])
    points = observed["kappa_xx"].nunique()
    rho = p = math.nan
    if points >= 2 and observed["ratio_best"].nunique() > 1:
        res = stats.spearmanr(observed["kappa_xx"], observed["ratio_best"], alternative="greater")
        rho, p = float(res.statistic), float(res.pvalue)
    if len(observed) < len(table):
        verdict, reason = INCONCLUSIVE, f"{len(table) - len(observed)} of {len(table)} problems have a censored count"
    elif points < TREND_MIN_POINTS:
        verdict, reason = INCONCLUSIVE, f"{points} distinct κ(XXᵀ), fewer than {TREND_MIN_POINTS}"
    elif math.isnan(rho) or rho <= 0:  # NaN: a constant ratio (or constant κ), which does not rise either
        verdict, reason = FAIL, ""
    elif p < TREND_LEVEL:
        verdict, reason = PASS, ""
    else:
        verdict, reason = INCONCLUSIVE, f"Spearman ρ = {rho:.2f} > 0 but one-sided p = {p:.3g} ≥ {TREND_LEVEL}"
    pairs = ", ".join(f"κ {k:.3g}: {r:.2f}" for k, r in zip(observed["kappa_xx"], observed["ratio_best"],
                                                            strict=True))
    return [Claim(
        experiment, "without hidden biases, the positive/best-baseline step ratio rises with κ(XXᵀ) (preprocessing, "
                    "not the network, decides the comparison)",
        rho, f"Spearman ρ > 0, one-sided p < {TREND_LEVEL} over ≥ {TREND_MIN_POINTS} condition numbers", verdict,
        details=f"p = {p:.3g}; {len(observed)} problems (ratio at κ): {pairs}",
        provenance=Provenance("lab", "issue 20's finding that κ(XXᵀ) decides the comparison, made a test: the "
                                     "positive count is the least-squares count (docs/theory.md §2.5); 5 points and "
                                     "5 % fixed before running"),
        reason=reason)]


def conditioning_claims(df: pd.DataFrame) -> list[Claim]:
    """The ``chatterjee2022.conditioning`` claims: the reduction to least squares, and the ratio's trend in κ."""
    runs = runs_table(df)
    return reduction_claim(runs, CONDITIONING) + kappa_trend_claim(runs, CONDITIONING)
