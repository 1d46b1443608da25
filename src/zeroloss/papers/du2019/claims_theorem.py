"""Claims on Du et al.'s theorems as stated: the inequality with λ₀, the proofs' two lemmas, the n-dependence.

Every function reads a one-row-per-run table (:func:`zeroloss.papers.du2019.runs.runs_table`) and returns
:class:`Claim` s; the tests feed each synthetic tables with the claimed effect present (PASS), absent (FAIL) and
censored (INCONCLUSIVE).

- :func:`theorem_claim` (``du2019.theorem``): L(k) ≤ (1 − ηλ₀/2)^k L(0) at every step of the window, λ₀ = λ_min(K^(H))
  from :func:`zeroloss.limit_kernel`, on a ladder of steps from 1/λ_max(G(0)) down to the theorem's step
  η_thm (:func:`zeroloss.papers.du2019.theory.theorem_step`); per width the largest rung at which it holds, and the
  smallest width from which it holds at η_thm.
- :func:`lemma_lambda_claim` (``du2019.kernel`` at η = 1/λ_max(G(0)), ``du2019.theorem`` at η_thm):
  λ_min(G^(H)(k)) ≥ λ₀/2 at every step from some width on.
- :func:`lemma_limit_claim` (``du2019.kernel``): ‖G^(H)(0) − K^(H)‖_F/‖K^(H)‖_F falls like m^(−1/2) (the one slope
  rule of :func:`zeroloss.papers.du2019.claims.slope_claim`), and the width from which ‖G^(H)(0) − K^(H)‖₂ ≤ λ₀/4.
- :func:`samples_claim` (``du2019.samples``): the width needed to track the kernel to τ grows with n no faster than
  the theorem's m ∝ n⁴/λ₀⁴.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.du2019.claims import (
    TRACK_TOL,
    _check_columns,
    _fmt,
    describe_needed_width,
    needed_width,
    slope_claim,
)
from zeroloss.papers.du2019.theory import THEOREM_DEPTH_BASE, THEOREM_STEP_CONSTANT

#: The lemma's threshold: Du et al.'s proofs keep λ_min(G^(H)(k)) ≥ λ₀/2 along training.
LEMMA_FRACTION = 0.5
#: The proofs' requirement on the initial Gram: ‖G^(H)(0) − K^(H)‖₂ ≤ λ₀/4 (then λ_min(G^(H)(0)) ≥ ¾λ₀).
INIT_FRACTION = 0.25

THEOREM_SOURCE = Provenance(
    "theorem", "Du et al. 2019, Thms 5.1 (FC) and 6.1 (ResNet): L(k) ≤ (1 − ηλ₀/2)^k L(0), λ₀ = λ_min(K^(H)), for "
               "η = O(λ₀/(n²·2^{O(H)})) (FC) or O(λ₀H²/n²) (ResNet) and m large; the hidden constants taken as "
               f"{THEOREM_STEP_CONSTANT:g} and 2^{{O(H)}} = {THEOREM_DEPTH_BASE:g}^H (docs/theory.md §1.5: the largest "
               "step of the theorem's form); no tolerance: an inequality between float64 numbers, checked until the "
               "loss or the bound falls below (10⁴·eps)²·L(0)")
LEMMA_LAMBDA_SOURCE = Provenance(
    "theorem", "Du et al. 2019, the induction in the proofs of Thms 5.1/6.1: λ_min(G^(H)(k)) ≥ λ₀/2 for every k once "
               "m is large; checked in du2019.kernel at every step of runs at η = 1/λ_max(G(0)), a step above the "
               "theorem's range, and in du2019.theorem at η_thm itself (every step of a window of ≤ 2000 steps, "
               "else 2000 evenly spaced ones); no tolerance: λ_min of the float64 Gram")
LEMMA_LIMIT_SOURCE = Provenance(
    "theorem", "Du et al. 2019, the initialisation lemmas of Thms 5.1/6.1: G^(H)(0) concentrates around K^(H) with "
               "‖G^(H)(0) − K^(H)‖ = O(m^(−1/2)) (an average of m i.i.d. terms), and the proofs need "
               "‖G^(H)(0) − K^(H)‖₂ ≤ λ₀/4; K^(H) from zeroloss.limit_kernel (kind 'du'), never the runs' Grams; the "
               "one slope rule (docs/theory.md §1.5)")
SAMPLES_SOURCE = Provenance(
    "theorem", "Du et al. 2019, Thms 5.1/6.1: m = Ω(n⁴/λ₀⁴ · …) — a sufficient width, so the width actually needed "
               "may grow more slowly but the bound says nothing if it grows faster; the theorem's growth exponent "
               "d log(n⁴/λ₀(n)⁴)/d log n from the measured λ₀(n); the needed width read off the grid of widths "
               f"(τ = {TRACK_TOL:g}), its exponent an interval from the grid's resolution")


def _holding_tail(holds: pd.Series) -> int | None:
    """The smallest width from which every wider width holds (``holds`` indexed by sorted width); None if the widest
    does not."""
    widths = list(holds.index)
    m_star = None
    for width in reversed(widths):
        if not holds[width]:
            break
        m_star = int(width)
    return m_star


# --------------------------------------------------------------------------------------------- the theorem

def ladder_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (width, rung): ``eta_lambda_max`` (ηλ_max(G(0)), seed mean), ``holds`` (no violation in any
    seed), ``censored`` (some seed's window cut), ``theorem`` (the rung is η_thm)."""
    rows = []
    for (width, rung), cell in runs.groupby([runs["width"], runs["rung"].astype(str)], sort=True):
        rows.append({"width": int(width), "rung": rung, "theorem": rung == "theorem",
                     "eta_lambda_max": float(cell["eta_lambda_max"].mean()),
                     "holds": bool((cell["violations"] == 0).all() and (cell["steps_checked"] > 0).all()),
                     "censored": bool(cell["censored"].astype(bool).any())})
    return pd.DataFrame(rows)


def largest_holding_step(table: pd.DataFrame) -> pd.Series:
    """Per width: the largest ηλ_max(G(0)) of the ladder at which the inequality holds at every step of every seed
    (NaN when it holds at none)."""
    held = table[table["holds"]]
    out = held.groupby("width")["eta_lambda_max"].max()
    return out.reindex(sorted(table["width"].unique()))


def theorem_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """L(k) ≤ (1 − ηλ₀/2)^k L(0) at every step at the theorem's step η_thm, from some width on (the widest tried)."""
    _check_columns(runs, ("width", "rung", "eta_lambda_max", "lambda0", "violations", "steps_checked", "censored",
                          "worst_log_excess"))
    table = ladder_table(runs)
    thm = table[table["theorem"]].set_index("width").sort_index()
    text = f"{net}: L(k) ≤ (1 − ηλ₀/2)^k L(0) at every step at the theorem's step η_thm, from some width on"
    expected = "0 steps above the bound at the widest width"
    largest = largest_holding_step(table)
    details = ("largest ηλ_max(G(0)) on the ladder at which it holds, per width — "
               + ", ".join(f"m={w}: {_fmt(v) if np.isfinite(v) else 'none'}" for w, v in largest.items())
               + f"; λ₀ = {_fmt(float(runs['lambda0'].mean()))}")
    kw = {"provenance": THEOREM_SOURCE}
    if thm.empty:
        return Claim(experiment, text, "n/a", expected, INCONCLUSIVE, details=details, **kw,
                     reason="no run at the theorem's step")
    details += f"; at η_thm (ηλ_max ≈ {_fmt(float(thm['eta_lambda_max'].mean()))}): " + ", ".join(
        f"m={w}: {'holds' if r.holds else 'fails'}{' (censored)' if r.censored else ''}" for w, r in thm.iterrows())
    m_star = _holding_tail(thm["holds"])
    details += f"; smallest width from which it holds at η_thm: {m_star if m_star else 'none tried'}"
    at_thm = runs[runs["rung"].astype(str) == "theorem"]
    wide = at_thm[at_thm["width"] == at_thm["width"].max()]
    bad = int(wide["violations"].sum())
    measured = f"{bad} of {int(wide['steps_checked'].sum())} steps above (worst log(L/bound) " \
               f"{_fmt(float(wide['worst_log_excess'].max()))})"
    kw["details"] = details
    if bad:  # an observed violation is decided, censored or not
        return Claim(experiment, text, measured, expected, FAIL, **kw)
    if wide["censored"].astype(bool).any():
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                     reason="max_steps cut the widest width's window at η_thm: its later steps are unchecked")
    return Claim(experiment, text, measured, expected, PASS, **kw)


# ----------------------------------------------------------------------------------------------- the lemmas

def lemma_lambda_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """λ_min(G^(H)(k)) ≥ λ₀/2 at every step of every seed, from some width on (the widest tried, at least)."""
    _check_columns(runs, ("width", "lambda0", "lambda_min_GH_min", "lemma_steps", "censored", "diverged"))
    ratio = runs["lambda_min_GH_min"].astype(float) / runs["lambda0"].astype(float)
    per_width = ratio.groupby(runs["width"]).min().sort_index()
    holds = (per_width >= LEMMA_FRACTION) & (runs.groupby("width")["lemma_steps"].min().sort_index() > 0)
    m_star = _holding_tail(holds)
    widest = int(per_width.index[-1])
    text = f"{net}: λ_min(G^(H)(k)) ≥ λ₀/2 at every step, from some width on"
    details = ("min over steps and seeds of λ_min(G^(H)(k))/λ₀ per width — "
               + ", ".join(f"m={int(w)}: {_fmt(v)}" for w, v in per_width.items())
               + f"; smallest width from which it holds: {m_star if m_star else 'none tried'}; "
               f"λ₀ = {_fmt(float(runs['lambda0'].mean()))}")
    if "lemma_every" in runs.columns and (runs["lemma_every"] > 1).any():
        details += f"; probed every {int(runs['lemma_every'].max())} steps at most (long windows)"
    measured = float(per_width.iloc[-1])
    expected = f"≥ {LEMMA_FRACTION:g} at m = {widest}"
    kw = {"provenance": LEMMA_LAMBDA_SOURCE, "details": details}
    wide = runs[runs["width"] == widest]
    if not holds.iloc[-1] or wide["diverged"].astype(bool).any():
        return Claim(experiment, text, measured, expected, FAIL, **kw)
    if wide["censored"].astype(bool).any():
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                     reason="max_steps cut a run at the widest width: its later steps are unchecked")
    return Claim(experiment, text, measured, expected, PASS, **kw)


def lemma_limit_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """‖G^(H)(0) − K^(H)‖_F/‖K^(H)‖_F falls like m^(−1/2) (the one slope rule); the details add the smallest width
    from which every seed has ‖G^(H)(0) − K^(H)‖₂ ≤ λ₀/4."""
    _check_columns(runs, ("width", "gram_limit_error", "gram_limit_op"))
    at_init = runs.assign(censored=False)  # measured at initialisation: no window to cut
    claim = slope_claim(experiment, net, at_init, "gram_limit_error", "‖G^(H)(0) − K^(H)‖_F / ‖K^(H)‖_F",
                        provenance=LEMMA_LIMIT_SOURCE, rate="like")
    op = runs.groupby("width")["gram_limit_op"].max().astype(float).sort_index()
    m_star = _holding_tail(op <= INIT_FRACTION)
    extra = ("; max over seeds of ‖G^(H)(0) − K^(H)‖₂/λ₀ per width — "
             + ", ".join(f"m={int(w)}: {_fmt(v)}" for w, v in op.items())
             + f"; smallest width from which it is ≤ {INIT_FRACTION:g}: {m_star if m_star else 'none tried'}")
    return dataclasses.replace(claim, details=claim.details + extra)


# -------------------------------------------------------------------------------------------- n-dependence

def samples_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (net, n): ``lo``, ``hi`` (log₂ of the needed width, :func:`needed_width`), ``lambda0``."""
    rows = []
    for (net, n), group in runs.groupby(["net", "n"]):
        lo, hi = needed_width(group)
        rows.append({"net": net, "n": int(n), "lo": lo, "hi": hi, "lambda0": float(group["lambda0"].mean())})
    return pd.DataFrame(rows)


def samples_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """The needed width's growth exponent in n (an interval from the grid) is no larger than the theorem's
    exponent of n⁴/λ₀(n)⁴ between the smallest and the largest n."""
    _check_columns(runs, ("net", "n", "width", "kernel_deviation", "censored", "lambda0"))
    table = samples_table(runs).sort_values("n")
    widths = np.sort(runs["width"].unique().astype(float))
    text = f"{net}: the width needed to track the kernel (τ = {TRACK_TOL:g}) grows with n no faster than n⁴/λ₀⁴"
    cells = "; ".join(f"n={r.n}: m* {describe_needed_width(r.lo, r.hi, widths[-1])}, λ₀ {_fmt(r.lambda0)}"
                      for r in table.itertuples())
    kw = {"provenance": SAMPLES_SOURCE}
    if len(table) < 2:
        return Claim(experiment, text, "n/a", "exponent ≤ the theorem's", INCONCLUSIVE, details=cells, **kw,
                     reason="an exponent needs at least two n")
    a, b = table.iloc[0], table.iloc[-1]
    span = math.log2(b["n"] / a["n"])
    theorem = (4 * span + 4 * math.log2(a["lambda0"] / b["lambda0"])) / span
    lo, hi = (b["lo"] - a["hi"]) / span, (b["hi"] - a["lo"]) / span
    lo = -math.inf if math.isnan(lo) else lo
    hi = math.inf if math.isnan(hi) else hi
    finite = table[np.isfinite(table["lo"]) & np.isfinite(table["hi"])]
    fit = ""
    if len(finite) >= 3:
        slope = np.polyfit(np.log2(finite["n"].astype(float)), (finite["lo"] + finite["hi"]) / 2, 1)[0]
        fit = f"; least-squares exponent over the pinned cells {slope:.2f}"
    details = cells + f"; theorem's exponent between n = {a['n']} and {b['n']}: {theorem:.2f}{fit}"
    measured = f"[{_fmt(lo)}, {_fmt(hi)}]"
    expected = f"≤ {theorem:.2f} (the theorem's n⁴/λ₀⁴)"
    kw["details"] = details
    if hi <= theorem:
        return Claim(experiment, text, measured, expected, PASS, **kw)
    if lo > theorem:
        return Claim(experiment, text, measured, expected, FAIL, **kw)
    return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                 reason="the needed width is censored or too coarsely resolved at the end n's: the exponent's interval "
                        "contains the theorem's")
