"""Claims of the Marion & Berthier experiments: what is measured, the threshold and its provenance, the verdict.

Each function takes the sweep's tidy DataFrame (:func:`zeroloss.load`: one row per (run, step, metric) with the
spec and summary columns; see :mod:`zeroloss.papers.marion2023.experiments` for the summary keys) and returns
:class:`~zeroloss.papers.base.Claim` records. Verdicts can go either way, and a run that cannot decide is
*censored*:

- a two-timescale run whose ε → 0 limit has not reached :data:`FLOOR_FACTOR` × its floor by τ_max is censored for
  the claim that SGD reaches the floor (its horizon cannot show it);
- a group of runs is *unsettled* when it is still descending at its horizon (median of risk over the last fifth /
  risk over the middle fifth below :data:`DESCENT_RATIO`) or, for ε < 1, stops before its closing time. A
  comparison that holds is INCONCLUSIVE when the group that should be higher is unsettled (more budget could bring
  it down); one that fails is INCONCLUSIVE when the group that should be lower is unsettled. So no step budget
  decides a verdict.

Examples:
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"run_id": ["a", "b"], "eps": [0.1, 1.0], "plateau_risk": [0.01, 0.1],
    ...                      "mid_risk": [0.01, 0.1], "t_max": [3.0, 3.0], "closing_time": [0.1, 0.1],
    ...                      "step": 0, "metric": "risk", "value": 0.0})
    >>> claim, = sweep_claims(runs)
    >>> claim.verdict, claim.measured
    ('PASS', 'ε=0.1: 0.01, ε=1: 0.1')
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance, one_row_per_run
from zeroloss.papers.marion2023.twotimescale import floor_risk, target_preset

#: The floor claims hold the risk to this multiple of the O(η) floor Σ Δf² η/28 (plus, for SGD, its O(h) label-noise
#: excess). Lab choice: one floor more is what a single jump of the smallest size (|Δf| = 1, paper-text target) left
#: without a neuron costs when its flanking neurons sit 2η away (sharp risk Δf² d^L d^R/(d^L + d^R) = Δf² η), so a
#: factor 2 separates "every jump carries a neuron" from "one does not". The theorem gives O(η) without a constant.
FLOOR_FACTOR = 2.0
#: SGD tracks the limit when, after the fast phase (τ ≥ τ_max/5, once a has caught up with a*(u)), its risk is on
#: average within a factor 2 of the limit's plus the O(h) label-noise excess (mean of |log ratio| ≤ log 2, median
#: over seeds). Pointwise ratios are a poor measure: when a neuron reaches a jump the risk drops steeply, so a small
#: shift in the time of that event gives a large momentary ratio. Such shifts are deviations the limit theorem allows
#: (they vanish as h, ε → 0); a factor 2 on average is not. Lab choice.
TRACK_FACTOR = 2.0
#: ε = 1 "plateaus far higher": its median plateau risk is at least this many times the two-timescale median. Lab
#: choice: the paper shows the two regimes apart by an order of magnitude; a factor 2 is beyond seed-to-seed spread.
REGIME_RATIO = 2.0
#: A group is still descending when its median (risk over the last fifth of the horizon)/(risk over the middle fifth)
#: is below this: it halved over the last 0.4 τ_max, so more budget could change a comparison. Lab choice.
DESCENT_RATIO = 0.5

_MARION = "Marion & Berthier, NeurIPS 2023"


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the spec and summary columns of the tidy frame."""
    return one_row_per_run(df)


def _high(values: pd.Series) -> np.ndarray:
    """Values as floats with NaN (a diverged run) read as +inf: a run that blew up ends high."""
    out = values.to_numpy(dtype=np.float64)
    return np.where(np.isnan(out), np.inf, out)


def _descending(group: pd.DataFrame, late: str, mid: str) -> float:
    """Median over the group's runs of late/mid (NaN-free runs only; 1.0 when none)."""
    ratio = (group[late] / group[mid]).to_numpy(dtype=np.float64)
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else 1.0


def _floors(two: pd.DataFrame) -> np.ndarray:
    return np.array([floor_risk(target_preset(t), eta) for t, eta in zip(two["target"], two["eta"], strict=True)])


def _ordered_verdict(values: list[float], unsettled: list[bool], names: list[str],
                     factor: float = 1.0) -> tuple[str, str]:
    """Verdict of "values increase, each by ≥ ``factor``" over groups in claimed order (lowest first).

    A violated pair (i, i+1) is decisive (FAIL) unless group i — the one that should be lower — is unsettled; a
    satisfied ordering is decisive (PASS) unless some group above the first is unsettled. Returns (verdict, reason),
    the reason naming the unsettled groups.
    """
    violated = [i for i in range(len(values) - 1) if not values[i + 1] >= factor * values[i]]
    if violated:
        if any(not unsettled[i] for i in violated):
            return FAIL, ""
        which = ", ".join(names[i] for i in violated)
        return INCONCLUSIVE, f"the comparison fails, but {which}, which should end lower, is unsettled"
    if any(unsettled[1:]):
        which = ", ".join(n for n, u in zip(names[1:], unsettled[1:], strict=True) if u)
        return INCONCLUSIVE, f"the comparison holds, but {which}, which should end higher, is unsettled"
    return PASS, ""


def regimes_claims(df: pd.DataFrame) -> list[Claim]:
    """Claims of ``marion2023.regimes``, per target: limit at the floor, SGD at the floor, SGD tracks the limit,
    ε = 1 plateaus far higher."""
    runs = runs_table(df)
    claims: list[Claim] = []
    for target in [t for t in ("paper", "code") if t in set(runs["target"])] + sorted(
            set(runs["target"]) - {"paper", "code"}):
        sub = runs[runs["target"] == target]
        two, one = sub[sub["eps"] < 1], sub[sub["eps"] == 1]
        if two.empty:
            continue
        claims += _floor_claims(target, two)
        claims.append(_tracking_claim(target, two, df))
        if not one.empty:
            claims.append(_eps_one_claim(target, two, one))
    return claims


def _censored(two: pd.DataFrame) -> np.ndarray:
    """Two-timescale runs whose limit has not reached FLOOR_FACTOR × floor by τ_max (or has no limit)."""
    return ~(_high(two["limit_final_risk"]) <= FLOOR_FACTOR * _floors(two))


def _floor_claims(target: str, two: pd.DataFrame) -> list[Claim]:
    name = "marion2023.regimes"
    floors = _floors(two)
    floor_text = f"Σ Δf² η/28 = {floors[0]:.4g}" if np.allclose(floors, floors[0]) else "Σ Δf² η/28"
    limit_ratio = _high(two["limit_final_risk"]) / floors
    horizons = f"τ_max {two['t_max'].min():.3g}–{two['t_max'].max():.3g} (1.5 × each u₀'s sharp closing time)"
    limit_claim = Claim(
        name, f"{target} target: the ε → 0 limit reaches the O(η) floor by its horizon",
        round(float(limit_ratio.max()), 3), f"≤ {FLOOR_FACTOR:g} (worst seed: limit risk at τ_max / {floor_text})",
        bool(limit_ratio.max() <= FLOOR_FACTOR),
        f"{len(two)} seeds, per seed {', '.join(f'{r:.3g}' for r in limit_ratio)}; {horizons}",
        provenance=Provenance("lab", f"{_MARION}, Theorem: the two-timescale limit reaches loss O(η) with a fixed "
                                     "number of neurons; floor Σ Δf² η/28 of docs/theory.md §3.3; factor "
                                     f"{FLOOR_FACTOR:g}: one uncovered jump of the smallest size with its flanking "
                                     "neurons 2η away costs one more floor"))
    censored = _censored(two)
    excess = _high(two["noise_excess"])
    sgd_ratio = _high(two["plateau_risk"]) / (floors + excess)
    kept = sgd_ratio[~censored]
    worst = float(kept.max()) if kept.size else float("nan")
    if kept.size and worst > FLOOR_FACTOR:
        verdict, reason = FAIL, ""
    elif censored.any():
        verdict = INCONCLUSIVE
        reason = (f"{int(censored.sum())} of {len(two)} seeds censored: their ε → 0 limit had not reached "
                  f"{FLOOR_FACTOR:g}× the floor by τ_max, so their horizon cannot show the floor")
    else:
        verdict, reason = PASS, ""
    sgd_claim = Claim(
        name, f"{target} target: two-timescale SGD ends at the O(η) floor (plus its O(h) label-noise excess)",
        round(worst, 3), f"≤ {FLOOR_FACTOR:g} (worst uncensored seed: mean risk over the last fifth of τ_max / "
                         f"({floor_text} + h σ_ξ² tr G))", verdict,
        f"{len(two)} seeds, ε = {two['eps'].iloc[0]:g}, h = {two['h'].iloc[0]:g}; per seed "
        f"{', '.join(f'{r:.3g}' for r in sgd_ratio)}; label-noise excess h σ_ξ² tr G = "
        f"{np.median(excess):.3g} (median; derived, twotimescale.label_noise_excess)",
        provenance=Provenance("lab", f"{_MARION}, Theorem (loss O(η) in the two-timescale regime); floor of "
                                     f"docs/theory.md §3.3; factor {FLOOR_FACTOR:g} as for the limit"),
        reason=reason)
    return [limit_claim, sgd_claim]


def _tracking_claim(target: str, two: pd.DataFrame, df: pd.DataFrame) -> Claim:
    deviations = []
    for run_id, excess in zip(two["run_id"], _high(two["noise_excess"]), strict=True):
        rows = df[(df["run_id"] == run_id) & df["metric"].isin(["risk", "tau", "limit_risk"])]
        sub = rows.pivot_table(index="step", columns="metric", values="value", dropna=False)
        late = sub[sub["tau"] >= sub["tau"].max() / 5]
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.abs(np.log(late["risk"].to_numpy() / (late["limit_risk"].to_numpy() + excess)))
        deviations.append(float(np.mean(np.where(np.isfinite(dev), dev, np.inf))))
    factor = float(np.exp(np.median(deviations)))
    return Claim(
        "marion2023.regimes", f"{target} target: two-timescale SGD tracks its ε → 0 limit at matched slow time",
        round(factor, 3), f"≤ {TRACK_FACTOR:g} (geometric-mean |risk ratio| SGD/(limit + O(h) excess) for "
                          "τ ≥ τ_max/5, median over seeds)", bool(factor <= TRACK_FACTOR),
        f"{len(two)} seeds, ε = {two['eps'].iloc[0]:g}, h = {two['h'].iloc[0]:g}",
        provenance=Provenance("lab", f"{_MARION}, §3–4 (as ε, h → 0 the dynamics follow the limit); factor "
                                     f"{TRACK_FACTOR:g} on average: momentary ratios at a neuron's arrival on a "
                                     "jump are allowed"))


def _eps_one_claim(target: str, two: pd.DataFrame, one: pd.DataFrame) -> Claim:
    one_median, two_median = float(np.median(_high(one["plateau_risk"]))), float(np.median(_high(two["plateau_risk"])))
    descent = _descending(one, "plateau_risk", "mid_risk")
    unsettled = [bool(_censored(two).any()), descent < DESCENT_RATIO]
    names = ["the two-timescale regime (censored: its limit not at the floor by τ_max)",
             f"ε = 1 (still descending at τ_max: late/middle risk {descent:.2f} < {DESCENT_RATIO:g})"]
    verdict, reason = _ordered_verdict([two_median, one_median], unsettled, names, REGIME_RATIO)
    return Claim(
        "marion2023.regimes", f"{target} target: with ε = 1 (same u₀) the risk plateaus far higher than in the "
                              "two-timescale regime",
        round(one_median / two_median, 3), f"≥ {REGIME_RATIO:g} (ratio of median plateau risks, last fifth of τ_max)",
        verdict, f"medians: ε = 1 {one_median:.4g} (τ_max = {one['t_max'].iloc[0]:g}, h = {one['h'].iloc[0]:g}), "
                 f"ε = {two['eps'].iloc[0]:g} {two_median:.4g}; ε = 1 late/middle risk {descent:.2f}",
        provenance=Provenance("lab", f"{_MARION}, §5: outside the two-timescale regime a jump stays uncovered and "
                                     f"the error plateaus higher; factor {REGIME_RATIO:g}: beyond seed spread"),
        reason=reason)


def sweep_claims(df: pd.DataFrame) -> list[Claim]:
    """``marion2023.eps_sweep``: smaller ε, lower median plateau risk (at equal slow time τ_max)."""
    runs = runs_table(df)
    eps_values = sorted(runs["eps"].unique())
    medians, unsettled, descents = [], [], []
    for eps in eps_values:
        group = runs[runs["eps"] == eps]
        medians.append(float(np.median(_high(group["plateau_risk"]))))
        short = bool(eps < 1 and (group["t_max"] < group["closing_time"]).any())
        descents.append(_descending(group, "plateau_risk", "mid_risk"))
        unsettled.append(short or descents[-1] < DESCENT_RATIO)
    names = [f"ε = {e:g} (still descending, or stopped before its closing time)" for e in eps_values]
    verdict, reason = _ordered_verdict(medians, unsettled, names)
    return [Claim("marion2023.eps_sweep", "smaller ε, lower median final risk (at equal slow time)",
                  ", ".join(f"ε={e:g}: {v:.4g}" for e, v in zip(eps_values, medians, strict=True)),
                  "increasing in ε (median risk over the last fifth of τ_max)", verdict,
                  f"{int(runs.groupby('eps').size().min())} repeats per ε, τ_max = {runs['t_max'].max():g}; "
                  f"late/middle-fifth risk (median; < {DESCENT_RATIO:g} is still descending) "
                  + ", ".join(f"ε={e:g}: {d:.2f}" for e, d in zip(eps_values, descents, strict=True)),
                  provenance=Provenance("paper", f"{_MARION}, §5, ε-sweep figure: the final error decreases with ε"),
                  reason=reason)]


def _setting(row) -> str:
    return f"{row['model']} d={int(row['d'])}"


def appendix_claims(df: pd.DataFrame) -> list[Claim]:
    """``marion2023.appendix``, per setting: two-timescale GD ends lower than the standard regime (equal epochs)."""
    runs = runs_table(df)
    runs["setting"] = runs.apply(_setting, axis=1)
    claims = []
    for setting, group in runs.groupby("setting"):
        two, std = group[group["regime"] == "two-timescale"], group[group["regime"] == "standard"]
        if two.empty or std.empty:
            continue
        med_two = float(np.median(_high(two["final_criterion"])))
        med_std = float(np.median(_high(std["final_criterion"])))
        descents = [_descending(g, "plateau_criterion", "mid_criterion") for g in (two, std)]
        unsettled = [d < DESCENT_RATIO for d in descents]
        names = [f"the {r} regime (still descending: late/middle criterion < {DESCENT_RATIO:g})"
                 for r in ("two-timescale", "standard")]
        verdict, reason = _ordered_verdict([med_two, med_std], unsettled, names)
        at_300 = std["criterion_at_300"].to_numpy(dtype=np.float64)
        paper_protocol = (f"; at the official code's 300 standard epochs: {np.median(at_300):.4g}"
                          if np.isfinite(at_300).any() else "")
        epochs = int(group["epochs"].max())
        claims.append(Claim("marion2023.appendix",
                            f"{setting}: two-timescale GD ends with a lower criterion than the standard regime",
                            f"{med_two:.4g} vs {med_std:.4g}", f"two-timescale < standard (median at {epochs} epochs)",
                            verdict, f"median ‖ŷ − y‖₂/n over {int(group.groupby('regime').size().min())} repeats, "
                                     f"both regimes {epochs} epochs{paper_protocol}; late/middle-fifth criterion "
                                     f"(median; < {DESCENT_RATIO:g} is still descending) two-timescale "
                                     f"{descents[0]:.2f}, standard {descents[1]:.2f}",
                            provenance=Provenance("paper", f"{_MARION}, Appendix (2-D, 10-D and ReLU figures): the "
                                                           "two-timescale regime ends lower"),
                            reason=reason))
    return claims
