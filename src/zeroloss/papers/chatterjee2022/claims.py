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

**Acceleration claims** (the paper's abstract: the positive initialisation "can substantially accelerate optimization
relative to standard random initializations at the same width"; fixed before running, lab choices):

- *substantially* = at least 2× fewer steps than the median baseline (θ = ½): a factor larger than the √2
  resolution of the step grid and than the seed-to-seed spread of a baseline's median over seeds;
- against the best baseline, θ = 1 (no more steps than the best of the four);
- two readings of "can", each its own claim, per network. **Existential**: some configuration is decided *yes*
  (FAIL when every one is decided *no*, INCONCLUSIVE when none is *yes* but some is undecided). **Typical**: a strict
  majority of *distinct problems* is *yes* (PASS when the decided *yes* exceed half, FAIL when even all the undecided
  turning *yes* would not, INCONCLUSIVE otherwise). Configurations that reduce to the same least-squares problem
  (:func:`problem_key`: no hidden biases and σ(0) = 0, docs/theory.md §2.5 — every width, depth and positive law on
  one data set) are *one* problem: their positive counts are equal, and their baselines' median intervals are
  pooled by the median. Any other configuration (net with hidden biases, per law) is its own problem.

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
    >>> existential(["no", "undecided"])[0], existential(["no", "yes"])[0]
    ('INCONCLUSIVE', 'PASS')
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.chatterjee2022.runs import BASELINES, POSITIVE

NAME = "chatterjee2022.init_comparison"
CONDITIONING = "chatterjee2022.conditioning"
#: "Substantially accelerates": the positive init needs at most this fraction of the median baseline's steps.
SUBSTANTIAL = 0.5
#: α_est ≥ α_lb is checked with this relative slack: both are float64 computations of ~10³ operations (relative
#: round-off ≲ 1e-12); a wrong bound would be off by orders of magnitude, not by 1e-9.
ALPHA_SLACK = 1e-9
CONFIG = ["hidden_bias", "data", "centred", "widths"]
#: Keys of the data that some experiments add (``chatterjee2022.conditioning``) and the activation.
EXTRA_CONFIG = ("whitened", "kappa", "activation")
#: Activations with σ(0) = 0 among the certificate's (the reduction of docs/theory.md §2.5 needs it).
ZERO_AT_ZERO = ("tanh", "erf")
YES, NO, UNDECIDED = "yes", "no", "undecided"

#: The threshold and the readings: lab choices (the paper gives neither its settings nor a factor).
EXISTENTIAL_PROVENANCE = Provenance(
    "lab", "the abstract's 'can substantially accelerate' read existentially: ≥ 2× fewer steps than the median "
    "baseline in at least one configuration; 2× fixed before running, above the √2 step-grid resolution and the seed "
    "spread; censored runs enter as intervals")
TYPICAL_PROVENANCE = Provenance(
    "lab", "the same sentence read as typical: ≥ 2× fewer steps than the median baseline in a strict majority of "
    "distinct problems (configurations that reduce to one least-squares problem count once, docs/theory.md §2.5); "
    "censored runs enter as intervals")
BEST_PROVENANCE = Provenance(
    "lab", "typical reading against the best of the four baselines (the paper compares with 'standard random "
    "initializations'): no more steps, in a strict majority of distinct problems; censored runs enter as intervals")


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


def point_ratio(p: tuple[float, float], ref: tuple[float, float]) -> float:
    """P/B where both counts are known exactly, else NaN."""
    return p[0] / ref[0] if p[0] == p[1] and ref[0] == ref[1] and ref[0] > 0 else math.nan


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The columns that name a configuration: :data:`CONFIG` plus the data keys a frame has (``whitened``,
    ``kappa``, ``activation``)."""
    return [*CONFIG[:3], *(c for c in EXTRA_CONFIG if c in runs.columns), CONFIG[3]]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def reduces_to_least_squares(config: dict) -> bool:
    """No hidden biases and σ(0) = 0 (tanh unless the frame says otherwise): the positive init's dynamics are GD on
    least squares in x (docs/theory.md §2.5)."""
    activation = config.get("activation")
    name = "tanh" if _missing(activation) else str(activation)
    return not flag(config.get("hidden_bias")) and name in ZERO_AT_ZERO


def problem_key(config: dict, law: str) -> str:
    """The distinct problem a (configuration, positive law) is: its least-squares problem (the data alone) where it
    reduces to one, else itself."""
    data = {k: (None if _missing(config.get(k)) else config.get(k)) for k in ("data", "centred", *EXTRA_CONFIG)
            if k in config}
    if reduces_to_least_squares(config):
        return "least squares: " + ", ".join(f"{k}={v}" for k, v in data.items() if k != "activation")
    widths = tuple(int(w) for w in config["widths"])
    return f"net: {', '.join(f'{k}={v}' for k, v in data.items())}, hidden_bias={flag(config.get('hidden_bias'))}, " \
           f"widths={widths}, law={law}"


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, positive law): the intervals, the ratio to the median and best baseline (point
    value where every count involved is known, else NaN), the two decisions and the distinct problem it is."""
    rows = []
    config = config_columns(runs)
    for key, group in runs.groupby(config, sort=True, dropna=False):
        per_init = {init: median_interval([steps_interval(r) for _, r in sub.iterrows()])
                    for init, sub in group.groupby("init")}
        base = [per_init[b] for b in BASELINES if b in per_init]
        if not base:
            continue
        median_b = median_interval(base)
        best_b = (min(b[0] for b in base), min(b[1] for b in base))
        where = dict(zip(config, key, strict=True))
        for law in POSITIVE:
            if law not in per_init:
                continue
            p = per_init[law]
            rows.append({**where, "law": law, "problem": problem_key(where, law), "positive": p,
                         "median_baseline": median_b, "best_baseline": best_b,
                         "ratio_median": point_ratio(p, median_b), "ratio_best": point_ratio(p, best_b),
                         "vs_median": decide(p, median_b, SUBSTANTIAL), "vs_best": decide(p, best_b, 1.0),
                         "kappa_xx": float(group["kappa_xx"].iloc[0]) if "kappa_xx" in group else math.nan})
    return pd.DataFrame(rows)


def by_problem(table: pd.DataFrame, reference: str, threshold: float) -> pd.DataFrame:
    """One row per distinct problem: the median of its positive intervals and of its ``reference`` intervals
    (``median_baseline`` or ``best_baseline``), the decision P ≤ threshold·B, and how many configurations it pools."""
    rows = []
    for problem, sub in table.groupby("problem", sort=True):
        p = median_interval(list(sub["positive"]))
        b = median_interval(list(sub[reference]))
        rows.append({"problem": problem, "positive": p, "reference": b, "configurations": len(sub),
                     "decision": decide(p, b, threshold), "ratio": point_ratio(p, b),
                     "data": sub["data"].iloc[0], "centred": sub["centred"].iloc[0]})
    return pd.DataFrame(rows)


def existential(decisions: list[str]) -> tuple[str, str]:
    """(verdict, reason): PASS when some decision is *yes*, FAIL when all are *no*, else INCONCLUSIVE."""
    yes, und = decisions.count(YES), decisions.count(UNDECIDED)
    if yes:
        return PASS, ""
    if not und:
        return FAIL, ""
    return INCONCLUSIVE, f"no configuration decided yes, {und} of {len(decisions)} rest on censored runs"


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
    """The network, named by what it is (the paper's text does not say which one its experiment used)."""
    return "with hidden biases b_ℓ" if hidden_bias else "without hidden biases"


def data_label(data: str, centred: bool) -> str:
    return f"{data} ({'centred' if centred else 'uncentred'})"


def _edges(runs: pd.DataFrame) -> str:
    """A note on runs whose best step is the smallest or largest of the grid (a wider grid might do better)."""
    if "best_at_grid_edge" not in runs:
        return ""
    edge = runs["best_at_grid_edge"].map(flag)
    return f"; {int(edge.sum())} of {len(runs)} runs had their best step at an edge of the grid" if edge.any() else ""


def _per_data(problems: pd.DataFrame) -> str:
    return "; ".join(f"{data_label(d, c)}: {g['decision'].tolist().count(YES)}/{len(g)}"
                     for (d, c), g in problems.groupby(["data", "centred"]))


def acceleration_claims(runs: pd.DataFrame) -> list[Claim]:
    """Per network: the existential and the typical reading against the median baseline, and the typical reading
    against the best baseline (see the module docstring)."""
    table = comparisons(runs)
    out: list[Claim] = []
    if table.empty:
        return out
    for bias, sub in sorted(table.groupby("hidden_bias"), key=lambda kv: not kv[0]):
        net = f"net {net_label(bias)}"
        mine = runs[runs["hidden_bias"] == bias]
        decisions = sub["vs_median"].tolist()
        verdict, reason = existential(decisions)
        yes = sub[sub["vs_median"] == YES]
        where = "; ".join(f"{data_label(r['data'], r['centred'])} widths {list(r['widths'])} {r['law']}: ratio "
                          f"{r['ratio_median']:.2f}" for _, r in yes.head(4).iterrows())
        out.append(Claim(
            NAME, f"{net}, existential reading: in some configuration the positive init needs ≥ 2× fewer steps to "
                  "F ≤ 1e-6·F(w₀) than the median baseline at the same width and depth",
            f"{len(yes)}/{len(decisions)} configurations", "≥ 1", verdict,
            details=f"{_tally(sub, 'vs_median')}; {'where: ' + where if where else 'nowhere'}"
                    f"{' …' if len(yes) > 4 else ''}; each init at its best step" + _edges(mine),
            provenance=EXISTENTIAL_PROVENANCE, reason=reason))
        for reference, threshold, what, provenance in (
                ("median_baseline", SUBSTANTIAL, "≥ 2× fewer steps than the median baseline", TYPICAL_PROVENANCE),
                ("best_baseline", 1.0, "no more steps than the best baseline", BEST_PROVENANCE)):
            problems = by_problem(sub, reference, threshold)
            decisions = problems["decision"].tolist()
            verdict, reason = majority(decisions)
            pooled = int((problems["configurations"] > 1).sum())
            out.append(Claim(
                NAME, f"{net}, typical reading: the positive init needs {what} in a strict majority of distinct "
                      "problems",
                f"{decisions.count(YES)}/{len(decisions)} distinct problems", "> half (strict majority)", verdict,
                details=f"{len(sub)} (configuration, law) comparisons make {len(decisions)} distinct problems "
                        f"({pooled} pool several configurations that reduce to one least-squares problem); per data "
                        f"set (yes/problems): {_per_data(problems)}; "
                        f"{_median_ratio(problems['ratio'])} (positive/{reference.replace('_', ' ')})",
                provenance=provenance, reason=reason))
    return out


REDUCTION_PROVENANCE = Provenance(
    "derived", "docs/theory.md §2.5: with W₁ = 0, no hidden biases and σ(0) = 0, Θ(w₀) = ‖δ‖²XXᵀ + 11ᵀ, so on the "
    "lab's relative step grid the positive run is GD on least squares in x up to corrections of relative order "
    "n/(‖δ‖²λ_max) and (W₁x)² (M ~ 10³–10⁶ here); tolerance 0 steps: the claim is that they never change a count")


def _count(value: object) -> float | None:
    return None if _missing(value) else float(value)


def reduction_claim(runs: pd.DataFrame, experiment: str = NAME) -> list[Claim]:
    """Without hidden biases (σ(0) = 0), GD from the positive init at the least-squares problem's best step reaches
    the target at exactly the least-squares count (``ls_step_run_steps``), at every width, depth and law. Beside it:
    how many best counts over the whole grid equal the least-squares count (a faster one at a step above the
    stability limit is the net leaving its linearisation), and the runs with hidden biases as the contrast."""
    if "ls_steps_to_target" not in runs or "init" not in runs:
        return []
    pos = runs[runs["init"].isin(POSITIVE)]
    reduced = pos[[reduces_to_least_squares(dict(r)) for _, r in pos.iterrows()]]
    other = pos.drop(reduced.index)
    same = differ = unknown = 0
    worst = 0.0
    for _, r in reduced.iterrows():
        net, ls = _count(r.get("ls_step_run_steps")), _count(r["ls_steps_to_target"])
        if ls is None:
            unknown += 1
        elif net == ls:
            same += 1
        else:
            differ += 1
            worst = math.inf if net is None else max(worst, abs(net - ls))
    best_same = faster = 0
    for _, r in reduced.iterrows():
        ls = _count(r["ls_steps_to_target"])
        if flag(r.get("reached")) and ls is not None:
            best_same += float(r["steps_to_target"]) == ls
            faster += float(r["steps_to_target"]) < ls and float(r.get("best_fraction") or 0.0) > 1.0
    contrast = [(float(r["steps_to_target"]), _count(r["ls_steps_to_target"])) for _, r in other.iterrows()
                if flag(r.get("reached"))]
    equal_other = sum(1 for a, b in contrast if b is not None and a == b)
    if reduced.empty:
        verdict, reason = INCONCLUSIVE, "no positive run without hidden biases and σ(0) = 0 in the results"
    elif "ls_step_run_steps" not in reduced or reduced["ls_step_run_steps"].isna().all():
        verdict, reason = INCONCLUSIVE, "no run at the least-squares step recorded (results of an older version)"
    elif differ:
        verdict, reason = FAIL, ""
    elif unknown:
        verdict, reason = INCONCLUSIVE, (f"{unknown} of {len(reduced)} least-squares problems miss the target within "
                                         "the budget: those counts are unobserved")
    else:
        verdict, reason = PASS, ""
    shapes = reduced["widths"].map(lambda w: tuple(int(v) for v in w)).nunique() if len(reduced) else 0
    problems = len({problem_key(dict(r), str(r["init"])) for _, r in reduced.iterrows()})
    return [Claim(
        experiment, "without hidden biases, GD from the positive init takes exactly the steps of GD on least squares "
                    "in x at the same relative step: the count depends on the data, not on width, depth or "
                    "hidden-weight law",
        f"{same}/{len(reduced)} equal", "all equal, to the step", verdict,
        details=f"{len(reduced)} positive runs over {shapes} (width, depth) shapes and {problems} data sets, each run "
                f"at the least-squares best step φ·2/λ_max(Θ(w₀)); {differ} differ (largest gap {worst:g} steps), "
                f"{unknown} unobserved. Best count over the whole grid: {best_same}/{len(reduced)} equal the "
                f"least-squares count, {faster} are faster at a step above the linear stability limit (φ > 1, where "
                f"the net leaves its linearisation: a catapult). Contrast, with hidden biases: {equal_other}/"
                f"{len(contrast)} best counts equal the least-squares count",
        provenance=REDUCTION_PROVENANCE, reason=reason)]


def _positive_certified_runs(runs: pd.DataFrame) -> pd.DataFrame:
    pos = runs[runs["init"].isin(POSITIVE)] if "init" in runs else runs.iloc[:0]
    if "cert_certified" not in pos:
        return pos.iloc[:0]
    return pos[pos["cert_certified"].notna()]


def certificate_claims(runs: pd.DataFrame) -> list[Claim]:
    """The four certificate claims over the positive runs (see the module docstring)."""
    pos = _positive_certified_runs(runs)
    theorem = "the paper's criterion 4F(w₀) < r²α(w₀, r) (stated for gradient flow) in its GD form, derived in " \
              "docs/theory.md §2.1: GD with η ≤ min(1/β, 2(1 − √ρ)/β) stays in B(w₀, r) and " \
              "F_{k+1} ≤ (1 − ηα/2)F_k"
    none = "no positive run with a certificate in the results"
    out = []
    certified = pos["cert_certified"].map(flag) if len(pos) else pd.Series(dtype=bool)
    out.append(Claim(
        NAME, "the positive initialisation is certified: 4F(w₀) < r²α_lb (first-layer bound, docs/theory.md §2.3) — "
              "by construction",
        f"{int(certified.sum())}/{len(pos)}", "all", INCONCLUSIVE if pos.empty else bool(certified.all()),
        details="holds by construction: M is computed from this same bound so that ρ = 4F(w₀)/(r²α_lb) = 1/4, and "
                "certify() recomputes F(w₀) and α_lb from the initialised net; it can fail only if the two "
                "computations disagree (an implementation check, not a test of the theorem)",
        provenance=Provenance("derived", "the first-layer bound α ≥ 4λ_min(XXᵀ)d₁(M − r)²κ² (docs/theory.md §2.3) and "
                                         "the lab's choice of M from it (ρ = 1/4)"),
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
        provenance=Provenance("derived", "α_lb is a lower bound of α(w₀, r) = inf over the ball, proved here "
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
        provenance=Provenance("derived", theorem), reason=(empty if ran.empty else why) if verdict == INCONCLUSIVE
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
        provenance=Provenance("derived", theorem), reason=(empty if ran.empty else why) if verdict == INCONCLUSIVE
        else ""))
    return out


def claims(df: pd.DataFrame) -> list[Claim]:
    """Every chatterjee2022 claim from the sweep's tidy frame (or a one-row-per-run frame)."""
    runs = runs_table(df)
    return certificate_claims(runs) + reduction_claim(runs) + acceleration_claims(runs)

