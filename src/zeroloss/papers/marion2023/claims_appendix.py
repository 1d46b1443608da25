"""Claims of ``marion2023.appendix``: two-timescale GD against the standard regime, decided by a rank test over the
repeats, with the paper's medians printed beside the lab's (docs/theory.md §3.4).

Examples:
    >>> [round(p, 3) for p in rank_test(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))]
    [0.05, 1.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.marion2023.claims import _MARION, DESCENT_RATIO, _descending, _high, runs_table


def _setting(row) -> str:
    return f"{row['model']} d={int(row['d'])}"


#: The paper's medians of the two-timescale regime's final criterion in its appendix figures, as read off them
#: (two digits, ≈; issue 20), with the sample size n they were taken at: printed beside the lab's (compared only at
#: the same n), not used by any verdict.
PAPER_APPENDIX_MEDIANS = {"additive d=2": (1000, 0.0039), "additive d=10": (10_000, 0.005), "relu d=1": (1000, 3.7e-4)}
#: Level of the one-sided Mann–Whitney rank test over the repeats (scipy.stats.mannwhitneyu, exact): a comparison is
#: decided when p ≤ ALPHA. Lab choice (the usual 5 %). With 3 repeats per regime the smallest attainable p is 1/20 =
#: 0.05: a decision then takes a complete separation of the two groups.
ALPHA = 0.05


def rank_test(lower: np.ndarray, higher: np.ndarray) -> tuple[float, float]:
    """One-sided Mann–Whitney p-values (p for "lower < higher", p for "lower > higher"); NaN (diverged) reads +inf.

    Examples:
        >>> [round(p, 3) for p in rank_test(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))]
        [0.05, 1.0]
    """
    from scipy.stats import mannwhitneyu  # deferred: scipy's import is a third of a second

    lo = np.where(np.isnan(lower), np.inf, lower)
    hi = np.where(np.isnan(higher), np.inf, higher)
    if lo.size == 0 or hi.size == 0:
        return float("nan"), float("nan")
    less = float(mannwhitneyu(lo, hi, alternative="less", method="auto").pvalue)
    greater = float(mannwhitneyu(lo, hi, alternative="greater", method="auto").pvalue)
    return less, greater


def appendix_claims(df: pd.DataFrame) -> list[Claim]:
    """``marion2023.appendix``, per setting: two-timescale GD ends lower than the standard regime (equal epochs),
    decided by a one-sided Mann–Whitney test over the repeats (:data:`ALPHA`): PASS when the two-timescale criteria
    rank lower (p ≤ α), FAIL when they rank higher (the reverse test p ≤ α), INCONCLUSIVE when neither (the groups
    overlap) — and, as before, INCONCLUSIVE when the group that should end higher (a PASS) or lower (a FAIL) is still
    descending. The paper's medians are printed beside the lab's."""
    runs = runs_table(df)
    runs["setting"] = runs.apply(_setting, axis=1)
    claims = []
    for setting, group in runs.groupby("setting"):
        two, std = group[group["regime"] == "two-timescale"], group[group["regime"] == "standard"]
        if two.empty or std.empty:
            continue
        two_vals = two["final_criterion"].to_numpy(dtype=np.float64)
        std_vals = std["final_criterion"].to_numpy(dtype=np.float64)
        med_two = float(np.median(_high(two["final_criterion"])))
        med_std = float(np.median(_high(std["final_criterion"])))
        p_less, p_greater = rank_test(two_vals, std_vals)
        descents = [_descending(g, "plateau_criterion", "mid_criterion") for g in (two, std)]
        if p_less <= ALPHA:
            verdict, reason = PASS, ""
            if descents[1] < DESCENT_RATIO:
                verdict, reason = INCONCLUSIVE, (f"two-timescale ranks lower (p = {p_less:.3g}), but the standard "
                                                 f"regime is still descending (late/middle {descents[1]:.2f})")
        elif p_greater <= ALPHA:
            verdict, reason = FAIL, ""
            if descents[0] < DESCENT_RATIO:
                verdict, reason = INCONCLUSIVE, (f"two-timescale ranks higher (p = {p_greater:.3g}), but it is still "
                                                 f"descending (late/middle {descents[0]:.2f})")
        else:
            verdict = INCONCLUSIVE
            reason = (f"the rank test decides neither way at α = {ALPHA:g} (p = {p_less:.3g} for lower, "
                      f"{p_greater:.3g} for higher, {len(two)} and {len(std)} repeats): the groups overlap")
        at_300 = std["criterion_at_300"].to_numpy(dtype=np.float64)
        paper_protocol = (f"; at the official code's 300 standard epochs: {np.median(at_300):.4g}"
                          if np.isfinite(at_300).any() else "")
        paper_n, paper = PAPER_APPENDIX_MEDIANS.get(setting, (None, None))
        n = int(group["n"].iloc[0]) if "n" in group else None
        if paper is None:
            paper_text = ""
        elif n == paper_n:
            paper_text = (f"; the paper's two-timescale median ≈ {paper:.2g} (read off its figure), the lab's "
                          f"{med_two:.4g} ({med_two / paper:.2f}×)")
        else:
            paper_text = f"; the paper's two-timescale median ≈ {paper:.2g} is at n = {paper_n} (not comparable here)"
        epochs = int(group["epochs"].max())
        claims.append(Claim("marion2023.appendix",
                            f"{setting}: two-timescale GD ends with a lower criterion than the standard regime",
                            f"{med_two:.4g} vs {med_std:.4g} (p = {p_less:.3g})",
                            f"two-timescale ranks lower, one-sided Mann–Whitney p ≤ {ALPHA:g} (medians at {epochs} "
                            "epochs)", verdict,
                            f"median ‖ŷ − y‖₂/n over {len(two)} and {len(std)} repeats, both regimes {epochs} epochs"
                            f"{paper_protocol}; late/middle-fifth criterion (median; < {DESCENT_RATIO:g} is still "
                            f"descending) two-timescale {descents[0]:.2f}, standard {descents[1]:.2f}{paper_text}",
                            provenance=Provenance("paper", f"{_MARION}, Appendix (2-D, 10-D and ReLU figures): the "
                                                           "two-timescale regime ends lower; the rank test and "
                                                           f"α = {ALPHA:g} [lab]"),
                            reason=reason))
    return claims
