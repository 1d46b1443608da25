"""The chatterjee2022 claims: the positive initialisation's speed against the baselines, and its certificate.

**Steps as intervals.** A run that reached the target has a known count t: [t, t]. A *censored* run (no grid step
reached the target within the budget T) is only known to need more: (T, ∞); a run whose every grid step diverged
says nothing: (0, ∞). An initialisation's count at one configuration (network, data, widths) is the median over its
seeds, [median of the lower ends, median of the upper ends] — the median is monotone, so the true median lies in
it. The median baseline is the median of the four baselines' intervals, the best baseline their minimum.

**A comparison is decided when every value in those intervals gives the same answer.** With the positive init's
interval [P⁻, P⁺] and the reference's [B⁻, B⁺], "P ≤ θ·B" is *yes* if P⁺ ≤ θ·B⁻, *no* if P⁻ > θ·B⁺, and
*undecided* otherwise. So a positive run that reached the target in t steps beats a reference censored at T ≥ t/θ,
and a censored positive run loses to a reference that reached the target in fewer than T/θ steps; a budget never
decides a comparison that it could have turned the other way.

**Acceleration claims** (the paper: "can substantially accelerate optimization relative to standard random
initializations at the same width"; fixed before running, lab choices):

- *substantially* = at least 2× fewer steps than the median baseline (θ = ½): a factor larger than the √2
  resolution of the step grid and than the seed-to-seed spread of a baseline's median over seeds;
- against the best baseline, θ = 1 (no more steps than the best of the four);
- over configurations (widths × depths, both positive laws), the claim holds if it holds in a strict majority of
  them: PASS when the decided *yes* exceed half, FAIL when even all the undecided turning *yes* would not, and
  INCONCLUSIVE otherwise. The paper states the acceleration without restricting width, depth or data, so a claim
  true only in a minority of settings is not what it states.

**Certificate claims** (docs/theory.md §2.1, §2.3): the positive init is certified; the α estimate is never below
the proven α_lb; GD at the certificate's step stays in B(w₀, r); and contracts F by at most 1 − ηα_lb/2 per step. A
certified run that did not reach the target within its budget is censored: the ball and rate claims are
INCONCLUSIVE then, unless some run already violated them (FAIL).

Examples:
    >>> runs = pd.DataFrame([{"init": "positive", "steps_to_target": 10, "reached": True, "budget": 100},
    ...                      {"init": "kaiming", "steps_to_target": None, "reached": False, "budget": 100}])
    >>> [steps_interval(row) for _, row in runs.iterrows()]
    [(10.0, 10.0), (100.0, inf)]
    >>> decide((10.0, 10.0), (100.0, math.inf), 0.5)   # 10 ≤ ½·B for every B > 100
    'yes'
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.chatterjee2022.runs import BASELINES, POSITIVE

NAME = "chatterjee2022.init_comparison"
#: "Substantially accelerates": the positive init needs at most this fraction of the median baseline's steps.
SUBSTANTIAL = 0.5
#: α_est ≥ α_lb is checked with this relative slack: both are float64 computations of ~10³ operations (relative
#: round-off ≲ 1e-12); a wrong bound would be off by orders of magnitude, not by 1e-9.
ALPHA_SLACK = 1e-9
CONFIG = ["hidden_bias", "data", "centred", "widths"]
YES, NO, UNDECIDED = "yes", "no", "undecided"

SUBSTANTIAL_PROVENANCE = Provenance(
    "lab", "'substantially' read as ≥ 2× fewer steps than the median baseline, fixed before running: a factor above "
    "the √2 step-grid resolution and the seed spread; holds if true in a strict majority of configurations (the "
    "paper does not restrict width, depth or data); censored runs enter as intervals")
BEST_PROVENANCE = Provenance(
    "lab", "no more steps than the best of the four baselines, in a strict majority of configurations (the paper "
    "compares with 'standard random initializations'); censored runs enter as intervals")


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (spec and summary columns) from the sweep's tidy frame (or a frame that already is one)."""
    cols = [c for c in df.columns if c not in ("step", "metric", "value")]
    key = ["run_id"] if "run_id" in df.columns else [c for c in [*CONFIG, "init", "seed"] if c in df.columns]
    runs = df[cols].drop_duplicates(key).reset_index(drop=True)
    if "widths" in runs.columns:
        runs["widths"] = runs["widths"].map(lambda w: tuple(int(v) for v in w) if isinstance(w, Iterable) else w)
    return runs


def flag(value: object) -> bool:
    """A stored boolean read safely: None and NaN (a run without that field) are False."""
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def steps_interval(row: pd.Series) -> tuple[float, float]:
    """[t, t] for a run that reached the target, (budget, ∞) for a censored one, (0, ∞) when every step diverged."""
    if flag(row.get("reached")):
        t = float(row["steps_to_target"])
        return t, t
    if flag(row.get("all_diverged")):
        return 0.0, math.inf
    return float(row["budget"]), math.inf


def median_interval(intervals: list[tuple[float, float]]) -> tuple[float, float]:
    """[median of the lower ends, median of the upper ends] (np.median: the mean of the middle two for even counts;
    with ∞ among the middle two the upper end is ∞)."""
    lows, highs = zip(*intervals, strict=True)
    return float(np.median(lows)), float(np.median(highs))


def ratio_interval(p: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Interval of P/B for P ∈ [p⁻, p⁺], B ∈ [b⁻, b⁺] (positive counts; x/∞ = 0, ∞/x = ∞, x/0 = ∞)."""
    def div(a: float, c: float) -> float:
        if math.isinf(c):
            return 0.0 if not math.isinf(a) else math.inf
        return math.inf if c == 0 else a / c

    return div(p[0], b[1]), div(p[1], b[0])


def decide(p: tuple[float, float], b: tuple[float, float], threshold: float) -> str:
    """``yes`` if P ≤ threshold·B for every value in the intervals, ``no`` if for none, else ``undecided``."""
    lo, hi = ratio_interval(p, b)
    if hi <= threshold:
        return YES
    if lo > threshold:
        return NO
    return UNDECIDED


def _point_ratio(p: tuple[float, float], ref: tuple[float, float]) -> float:
    """P/B where both counts are known exactly, else NaN."""
    return p[0] / ref[0] if p[0] == p[1] and ref[0] == ref[1] and ref[0] > 0 else math.nan


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, positive law): the intervals, the ratio to the median and best baseline (point
    value where every count involved is known, else NaN), and the two decisions."""
    rows = []
    for key, group in runs.groupby(CONFIG, sort=True, dropna=False):
        per_init = {init: median_interval([steps_interval(r) for _, r in sub.iterrows()])
                    for init, sub in group.groupby("init")}
        base = [per_init[b] for b in BASELINES if b in per_init]
        if not base:
            continue
        median_b = median_interval(base)
        best_b = (min(b[0] for b in base), min(b[1] for b in base))
        for law in POSITIVE:
            if law not in per_init:
                continue
            p = per_init[law]
            rows.append({**dict(zip(CONFIG, key, strict=True)), "law": law, "positive": p, "median_baseline": median_b,
                         "best_baseline": best_b, "ratio_median": _point_ratio(p, median_b),
                         "ratio_best": _point_ratio(p, best_b),
                         "vs_median": decide(p, median_b, SUBSTANTIAL), "vs_best": decide(p, best_b, 1.0),
                         "kappa_xx": float(group["kappa_xx"].iloc[0]) if "kappa_xx" in group else math.nan})
    return pd.DataFrame(rows)


def majority(decisions: list[str]) -> tuple[str, str]:
    """(verdict, reason) of the strict-majority rule over yes / no / undecided decisions."""
    n, yes, und = len(decisions), decisions.count(YES), decisions.count(UNDECIDED)
    if yes > n / 2:
        return PASS, ""
    if yes + und <= n / 2:
        return FAIL, ""
    return INCONCLUSIVE, (f"{und} of {n} comparisons rest on censored runs and could turn the majority either way "
                          f"({yes} yes)")


def _tally(sub: pd.DataFrame, column: str) -> str:
    parts = []
    for law in POSITIVE:
        d = sub[sub["law"] == law][column].tolist()
        if d:
            parts.append(f"{law}: {d.count(YES)} yes / {d.count(NO)} no / {d.count(UNDECIDED)} undecided")
    return "; ".join(parts)


def _median_ratio(values: pd.Series) -> str:
    finite = values.dropna()
    return f"median ratio {finite.median():.2f} over {len(finite)} fully observed" if len(finite) else "no ratio " \
        "fully observed"


def net_label(hidden_bias: bool) -> str:
    return "with hidden biases (the theorem's net)" if hidden_bias else "without hidden biases"


def data_label(data: str, centred: bool) -> str:
    return f"{data} ({'centred' if centred else 'uncentred'})"


def _edges(runs: pd.DataFrame) -> str:
    """A note on runs whose best step is the smallest or largest of the grid (a wider grid might do better)."""
    if "best_at_grid_edge" not in runs:
        return ""
    edge = runs["best_at_grid_edge"].map(flag)
    return f"; {int(edge.sum())} of {len(runs)} runs had their best step at an edge of the grid" if edge.any() else ""


def acceleration_claims(runs: pd.DataFrame) -> list[Claim]:
    """Per (network, data): ≥ 2× fewer steps than the median baseline; per network: no more than the best."""
    table = comparisons(runs)
    out: list[Claim] = []
    if table.empty:
        return out
    groups = dict(iter(table.groupby(["hidden_bias", "data", "centred"])))
    order = sorted(groups, key=lambda k: (not k[0], k[1] != "gaussian", not k[2]))  # the theorem's net first
    for bias, data, centred in order:
        sub = groups[bias, data, centred]
        decisions = sub["vs_median"].tolist()
        verdict, reason = majority(decisions)
        out.append(Claim(
            NAME, f"{data_label(data, centred)}, net {net_label(bias)}: the positive init needs ≥ 2× fewer steps "
                  "to F ≤ 1e-6·F(w₀) than the median baseline at the same width and depth",
            f"{decisions.count(YES)}/{len(decisions)} configurations", "> half (strict majority)", verdict,
            details=f"{_tally(sub, 'vs_median')}; {_median_ratio(sub['ratio_median'])} (positive/median baseline); "
                    f"κ(XXᵀ) = {sub['kappa_xx'].iloc[0]:.3g}; each init at its best step"
                    + _edges(runs[(runs["hidden_bias"] == bias) & (runs["data"] == data)
                                  & (runs["centred"] == centred)]),
            provenance=SUBSTANTIAL_PROVENANCE, reason=reason))
    for bias, sub in sorted(table.groupby("hidden_bias"), key=lambda kv: not kv[0]):
        decisions = sub["vs_best"].tolist()
        verdict, reason = majority(decisions)
        per_data = "; ".join(f"{data_label(d, c)}: {g['vs_best'].tolist().count(YES)}/{len(g)}"
                             for (d, c), g in sub.groupby(["data", "centred"]))
        out.append(Claim(
            NAME, f"net {net_label(bias)}: the positive init needs no more steps than the best baseline at the same "
                  "width and depth (all data sets)",
            f"{decisions.count(YES)}/{len(decisions)} configurations", "> half (strict majority)", verdict,
            details=f"{_tally(sub, 'vs_best')}; per data set (yes/total): {per_data}; "
                    f"{_median_ratio(sub['ratio_best'])} (positive/best baseline)",
            provenance=BEST_PROVENANCE, reason=reason))
    return out


def _positive_certified_runs(runs: pd.DataFrame) -> pd.DataFrame:
    pos = runs[runs["init"].isin(POSITIVE)] if "init" in runs else runs.iloc[:0]
    if "cert_certified" not in pos:
        return pos.iloc[:0]
    return pos[pos["cert_certified"].notna()]


def certificate_claims(runs: pd.DataFrame) -> list[Claim]:
    """The four certificate claims over the positive runs (see the module docstring)."""
    pos = _positive_certified_runs(runs)
    theorem = "Chatterjee 2022: 4F(w₀) < r²α(w₀, r) ⇒ GD with η ≤ min(1/β, 2(1 − √ρ)/β) stays in B(w₀, r) and " \
              "F_{k+1} ≤ (1 − ηα/2)F_k (docs/theory.md §2.1, derived GD form)"
    none = "no positive run with a certificate in the results"
    out = []
    certified = pos["cert_certified"].map(flag) if len(pos) else pd.Series(dtype=bool)
    out.append(Claim(
        NAME, "the positive initialisation is certified: 4F(w₀) < r²α_lb (first-layer bound, docs/theory.md §2.3)",
        f"{int(certified.sum())}/{len(pos)}", "all", INCONCLUSIVE if pos.empty else bool(certified.all()),
        details="M is set from the bound for ρ = 4F(w₀)/(r²α_lb) = 1/4; certify() recomputes F(w₀) and α_lb from the "
                "initialised net, so this checks the two computations agree (an implementation check)",
        provenance=Provenance("theorem", "Chatterjee 2022 criterion with the derived first-layer bound "
                                         "α ≥ 4λ_min(XXᵀ)d₁(M − r)²κ² (docs/theory.md §2.3)"),
        reason=none if pos.empty else ""))
    good = pos[certified] if len(pos) else pos
    if good.empty:
        ratio, verdict = math.nan, INCONCLUSIVE
    else:
        ratio = float((good["cert_alpha_estimate"] / good["cert_alpha_lower_bound"]).min())
        verdict = bool(ratio >= 1.0 - ALPHA_SLACK)
    out.append(Claim(
        NAME, "the α estimate (sampling + descent in the ball) never falls below the certified α_lb", ratio,
        f"min α_est/α_lb ≥ 1 − {ALPHA_SLACK:g}", verdict,
        details=f"{len(good)} certified runs; α_lb ≤ α ≤ every ‖∇F‖²/F attained in the ball, so a failure is a bug; "
                f"slack {ALPHA_SLACK:g} for float64 round-off",
        provenance=Provenance("theorem", "α_lb is a proven lower bound of α(w₀, r) = inf over the ball "
                                         "(docs/theory.md §2.3)"),
        reason="no certified positive run" if good.empty else ""))
    out += _trajectory_claims(good, theorem)
    return out


def _trajectory_claims(good: pd.DataFrame, theorem: str) -> list[Claim]:
    ran = good[good["certified_run_steps"].notna()] if "certified_run_steps" in good else good.iloc[:0]
    censored = int((~ran["certified_run_reached_target"].map(flag)).sum()) if len(ran) else 0
    why = (f"{censored} of {len(ran)} certified-step runs did not reach the target within their budget: the rest "
           "of their trajectory is unobserved") if censored else ""
    empty = "no certified-step run in the results"
    out = []
    if ran.empty:
        worst, verdict = math.nan, INCONCLUSIVE
    else:
        left = ~ran["certified_run_stayed_in_ball"].map(flag)
        worst = float((ran["certified_run_max_distance"] / ran["radius"]).max())
        verdict = FAIL if left.any() else (INCONCLUSIVE if censored else PASS)
    out.append(Claim(
        NAME, "GD from the positive init at the certificate's step stays in B(w₀, r)", worst,
        "max ‖w_k − w₀‖/r < 1 at every step", verdict,
        details=f"{len(ran)} runs, distance measured at every step until F ≤ 1e-6·F(w₀)",
        provenance=Provenance("theorem", theorem), reason=(empty if ran.empty else why) if verdict == INCONCLUSIVE
        else ""))
    if ran.empty:
        slowest, verdict = math.nan, INCONCLUSIVE
    else:
        # worst F_{k+1}/F_k ≤ 1 − ηα_lb/2  ⇔  (1 − worst ratio)/(ηα_lb/2) ≥ 1: the slowest step's decrease in units of
        # the certified one (read the same way whatever the rate's closeness to 1)
        ratio = (1.0 - ran["certified_run_worst_ratio"]) / (1.0 - ran["certified_rate"])
        slowest = float(ratio.min())
        verdict = FAIL if (ratio < 1).any() else (INCONCLUSIVE if censored or ratio.isna().any() else PASS)
    out.append(Claim(
        NAME, "…and contracts F by at least the certified rate: F_{k+1}/F_k ≤ 1 − ηα_lb/2 at every step", slowest,
        "min over runs of (1 − worst F_{k+1}/F_k)/(ηα_lb/2) ≥ 1", verdict,
        details="every step while F_k ≥ 1e-12·F(w₀), against the run's own certified rate; no tolerance; η uses the "
                "β *estimate* (a lower estimate of sup‖∇²F‖), so a failure may also mean β was underestimated",
        provenance=Provenance("theorem", theorem), reason=(empty if ran.empty else why) if verdict == INCONCLUSIVE
        else ""))
    return out


def claims(df: pd.DataFrame) -> list[Claim]:
    """Every chatterjee2022 claim from the sweep's tidy frame (or a one-row-per-run frame)."""
    runs = runs_table(df)
    return certificate_claims(runs) + acceleration_claims(runs)
