"""Negative controls for every marion2023 claim: synthetic result tables where the claimed effect is present (PASS),
absent (FAIL), or where the runs cannot decide (INCONCLUSIVE). Each table has the columns ``zeroloss.load`` gives
(one row per run, step and metric, with the spec and summary columns), built here with known values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import COVERING, TAU, UNCOVERING, run_rows, with_positions
from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS
from zeroloss.papers.marion2023.claims import (
    DESCENT_RATIO,
    FLOOR_FACTOR,
    REGIME_RATIO,
    TRACK_FACTOR,
    regimes_claims,
    sweep_claims,
)
from zeroloss.papers.marion2023.claims_appendix import appendix_claims
from zeroloss.papers.marion2023.twotimescale import floor_risk, target_preset

ETA = 4e-3
TEXT = "text target (third-party text)"
FLOOR = floor_risk(target_preset("paper"), ETA)  # 29 η/28
EXCESS = 0.5 * FLOOR  # a label-noise excess of the size the tiny scale has


def regimes_table(seeds: int = 4, limit_final: float = 1.0, sgd_plateau: float = 1.0, track: float = 1.0,
                  one_ratio: float = 20.0, one_descent: float = 1.0, target: str = "paper",
                  two_u: np.ndarray = COVERING, one_u: np.ndarray = UNCOVERING) -> pd.DataFrame:
    """Two-timescale runs whose limit ends at ``limit_final`` × floor, SGD plateau at ``sgd_plateau`` × (floor +
    excess), SGD risk ``track`` × (limit + excess) throughout, final positions ``two_u``; ε = 1 runs ``one_ratio`` ×
    the two-timescale plateau, their late/middle risk ``one_descent``, final positions ``one_u``."""
    floor = floor_risk(target_preset(target), ETA)
    limit_curve = floor * (1.0 + 20.0 * np.exp(-8 * TAU))
    limit_curve[-1] = limit_final * floor
    frames = []
    for s in range(seeds):
        spec = {"target": target, "eta": ETA, "eps": 2e-5, "h": 1e-3, "t_max": 0.1, "seed": s, "neurons": 20}
        plateau = sgd_plateau * (floor + EXCESS)
        summary = {"limit_final_risk": limit_final * floor, "plateau_risk": plateau, "mid_risk": 3 * plateau,
                   "noise_excess": EXCESS, "closing_time": 0.1 / 1.5}
        metrics = {"tau": TAU * 0.1, "risk": track * (limit_curve + EXCESS), "limit_risk": limit_curve}
        frames.append(with_positions(run_rows(f"two{target}{s}", spec, summary, metrics), two_u))
        spec = {**spec, "eps": 1.0, "h": 1e-5, "t_max": 10.0}
        one = one_ratio * plateau
        frames.append(with_positions(
            run_rows(f"one{target}{s}", spec, {"plateau_risk": one, "mid_risk": one / one_descent,
                                                "noise_excess": EXCESS, "closing_time": 0.05},
                      {"tau": TAU * 10, "risk": np.full(len(TAU), one)}), one_u))
    return pd.concat(frames, ignore_index=True)


def _by_claim(claims) -> dict[str, str]:
    keys = {"limit reaches": "limit", "SGD ends at": "sgd", "tracks": "track", "left uncovered": "uncovered",
            "has a neuron within": "covered", "ε = 1": "one"}
    out = {}
    for claim in claims:
        key = next(v for k, v in keys.items() if k in claim.claim)
        out[claim.claim.split(":")[0] + "/" + key] = claim.verdict
    return out


def test_regimes_claims_pass_when_every_effect_is_present_and_carry_provenance():
    claims = regimes_claims(pd.concat([regimes_table(), regimes_table(target="code")], ignore_index=True))
    assert len(claims) == 12 and all(c.verdict == PASS for c in claims), [(c.claim, c.measured) for c in claims]
    assert all(c.provenance is not None for c in claims)
    # the floor is computed from each target, not a hard-coded sum: 29 η/28 for the paper text, 56 η/28 for the code
    assert "0.004143" in claims[0].expected and "0.008" in claims[6].expected
    # provenance names where each target comes from: the "paper" values are a third-party text's, not the paper's
    assert claims[0].claim.startswith("text target (third-party text)")
    assert claims[6].claim.startswith("code target (official code)")


def test_limit_short_of_the_floor_fails_and_censors_the_sgd_floor_claim():
    verdicts = _by_claim(regimes_claims(regimes_table(limit_final=1.5 * FLOOR_FACTOR)))
    assert verdicts[f"{TEXT}/limit"] == FAIL
    assert verdicts[f"{TEXT}/sgd"] == INCONCLUSIVE  # SGD looks fine, but its horizon cannot show the floor


def test_sgd_above_the_floor_fails():
    verdicts = _by_claim(regimes_claims(regimes_table(sgd_plateau=1.5 * FLOOR_FACTOR)))
    assert verdicts[f"{TEXT}/sgd"] == FAIL and verdicts[f"{TEXT}/limit"] == PASS


def test_sgd_above_the_floor_fails_even_when_some_seeds_are_censored():
    table = regimes_table(sgd_plateau=1.5 * FLOOR_FACTOR)
    censored = table["run_id"] == "twopaper0"
    table.loc[censored, "limit_final_risk"] = 3 * FLOOR_FACTOR * FLOOR  # one seed censored, three decisive
    claim = next(c for c in regimes_claims(table) if "SGD ends at" in c.claim)
    assert claim.verdict == FAIL


def test_sgd_off_its_limit_fails_the_tracking_claim():
    verdicts = _by_claim(regimes_claims(regimes_table(track=1.5 * TRACK_FACTOR)))
    assert verdicts[f"{TEXT}/track"] == FAIL


def test_eps_one_not_higher_fails_and_unsettled_runs_are_inconclusive():
    assert _by_claim(regimes_claims(regimes_table(one_ratio=0.8 * REGIME_RATIO)))[f"{TEXT}/one"] == FAIL
    # ε = 1 far higher but still halving its risk: more budget could close the gap
    table = regimes_table(one_descent=0.5 * DESCENT_RATIO)
    claim = next(c for c in regimes_claims(table) if "ε = 1" in c.claim)
    assert claim.verdict == INCONCLUSIVE and "still descending" in claim.reason
    # ε = 1 not higher, but the two-timescale runs are censored (their plateau is not yet the floor's)
    table = regimes_table(one_ratio=0.8 * REGIME_RATIO, limit_final=3 * FLOOR_FACTOR)
    claim = next(c for c in regimes_claims(table) if "ε = 1" in c.claim)
    assert claim.verdict == INCONCLUSIVE and "censored" in claim.reason


def test_a_diverged_run_counts_as_ending_high():
    table = regimes_table()
    table.loc[table["run_id"] == "twopaper0", "plateau_risk"] = np.nan
    claim = next(c for c in regimes_claims(table) if "SGD ends at" in c.claim)
    assert claim.verdict == FAIL and claim.measured == np.inf


def test_mechanism_claims_pass_when_the_positions_show_it():
    verdicts = _by_claim(regimes_claims(regimes_table()))
    assert verdicts[f"{TEXT}/covered"] == PASS and verdicts[f"{TEXT}/uncovered"] == PASS


def test_an_uncovered_jump_at_small_eps_fails_the_coverage_claim_and_censoring_makes_it_inconclusive():
    assert _by_claim(regimes_claims(regimes_table(two_u=UNCOVERING)))[f"{TEXT}/covered"] == FAIL
    # a neuron 0.6η from the jump: just outside the ramp of half-width η/2
    near = np.where(COVERING == 0.5, 0.5 + 0.6 * ETA, COVERING)
    assert _by_claim(regimes_claims(regimes_table(two_u=near)))[f"{TEXT}/covered"] == FAIL
    near = np.where(COVERING == 0.5, 0.5 + 0.4 * ETA, COVERING)
    assert _by_claim(regimes_claims(regimes_table(two_u=near)))[f"{TEXT}/covered"] == PASS
    # the seeds leaving the jump uncovered are censored (their limit is not at the floor): cannot decide
    claim = next(c for c in regimes_claims(regimes_table(two_u=UNCOVERING, limit_final=3 * FLOOR_FACTOR))
                 if "has a neuron within" in c.claim)
    assert claim.verdict == INCONCLUSIVE and "censored" in claim.reason


def test_every_jump_covered_at_eps_one_fails_the_uncovered_claim_and_a_descending_run_is_inconclusive():
    assert _by_claim(regimes_claims(regimes_table(one_u=COVERING)))[f"{TEXT}/uncovered"] == FAIL
    claim = next(c for c in regimes_claims(regimes_table(one_descent=0.5 * DESCENT_RATIO))
                 if "left uncovered" in c.claim)
    assert claim.verdict == INCONCLUSIVE and "still descending" in claim.reason
    # the details say what the positions allow with the best outer weights (L(a*(u), u)), beside the risk
    assert "L(a*(u), u)" in claim.details
    # no positions stored (a diverged run): nothing is covered
    table = regimes_table()
    table = table[~((table["run_id"] == "twopaper0") & table["metric"].str.startswith("u_"))]
    assert _by_claim(regimes_claims(table))[f"{TEXT}/covered"] == FAIL


def sweep_table(medians: dict[float, float], descent: dict[float, float] | None = None, t_max: float = 3.0,
                closing: float = 0.3, repeats: int = 3) -> pd.DataFrame:
    frames = []
    for eps, value in medians.items():
        for s in range(repeats):
            late = value * (1 + 0.05 * (s - 1))  # spread around the median
            mid = late / (descent or {}).get(eps, 1.0)
            frames.append(run_rows(f"e{eps}s{s}", {"target": "paper", "eta": ETA, "eps": eps, "h": 1e-4,
                                                      "t_max": t_max, "seed": s},
                                    {"plateau_risk": late, "mid_risk": mid, "closing_time": closing},
                                    {"tau": TAU * t_max, "risk": np.full(len(TAU), late)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("medians,descent,t_max,expected", [
    ({0.01: 0.02, 0.1: 0.1, 1.0: 0.6}, None, 3.0, PASS),
    ({0.01: 0.2, 0.1: 0.1, 1.0: 0.6}, None, 3.0, FAIL),  # effect absent between 0.01 and 0.1
    ({0.01: 0.2, 0.1: 0.1, 1.0: 0.6}, {0.01: 0.3}, 3.0, INCONCLUSIVE),  # ... but ε = 0.01 is still descending
    ({0.01: 0.2, 0.1: 0.1, 1.0: 0.6}, {1.0: 0.3}, 3.0, FAIL),  # ε = 1 descending cannot mend that
    ({0.01: 0.02, 0.1: 0.1, 1.0: 0.6}, {1.0: 0.3}, 3.0, INCONCLUSIVE),  # ε = 1 could still fall below
    ({0.01: 0.2, 0.1: 0.1, 1.0: 0.6}, None, 0.1, INCONCLUSIVE),  # τ_max before the closing time 0.3: censored
])
def test_sweep_claim(medians, descent, t_max, expected):
    claim, = sweep_claims(sweep_table(medians, descent, t_max))
    assert claim.verdict == expected, (claim.measured, claim.reason)
    assert claim.provenance is not None and claim.provenance.kind == "paper"


def test_sweep_at_equal_samples_is_a_second_claim_with_its_own_verdict():
    """Runs at τ_max = 3 for every ε plus runs with the smallest ε's step count (τ_max = 3ε/0.01)."""
    slow = sweep_table({0.01: 0.02, 0.1: 0.1, 1.0: 0.6})
    samples = []
    for eps, value in ((0.1, 0.01), (1.0, 0.5)):  # at equal samples ε = 0.1 ends *below* ε = 0.01: effect absent
        table = sweep_table({eps: value}, t_max=3.0 * eps / 0.01)
        table["run_id"] = table["run_id"] + "samples"
        samples.append(table)
    claims = sweep_claims(pd.concat([slow, *samples], ignore_index=True))
    assert [c.claim for c in claims] == ["smaller ε, lower median final risk (at equal slow time)",
                                         "smaller ε, lower median final risk (at equal samples)"]
    assert claims[0].verdict == PASS and claims[1].verdict == FAIL
    assert "3e+06 SGD steps for every ε (τ_max = 3, 30, 300)" in claims[1].details  # h = 1e-4: 3/(h·0.01)


def appendix_table(two: float, standard: float, descent: dict[str, float] | None = None,
                   diverged_standard: bool = False, spread: float = 0.05) -> pd.DataFrame:
    frames = []
    for regime, value in (("two-timescale", two), ("standard", standard)):
        for s in range(3):
            final = np.nan if (diverged_standard and regime == "standard") else value * (1 + spread * (s - 1))
            mid = final / (descent or {}).get(regime, 1.0)
            frames.append(run_rows(f"{regime}{s}", {"model": "additive", "d": 2, "n": 1000, "regime": regime,
                                                     "epochs": 5000, "seed": s},
                                    {"final_criterion": final, "plateau_criterion": final, "mid_criterion": mid,
                                     "criterion_at_300": 1.1 * value},
                                    {"criterion": np.full(len(TAU), final)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("two,standard,descent,diverged,expected", [
    (0.004, 0.01, None, False, PASS),
    (0.01, 0.004, None, False, FAIL),  # effect absent
    (0.004, 0.01, {"standard": 0.3}, False, INCONCLUSIVE),  # the standard regime could still fall below
    (0.01, 0.004, {"two-timescale": 0.3}, False, INCONCLUSIVE),  # the two-timescale one could still get below
    (0.004, 0.01, None, True, PASS),  # a diverged standard run ends high, not missing
])
def test_appendix_claim(two, standard, descent, diverged, expected):
    claim, = appendix_claims(appendix_table(two, standard, descent, diverged))
    assert claim.verdict == expected, (claim.measured, claim.reason)
    assert claim.provenance is not None and "300" in claim.details
    # the paper's median is printed beside the lab's (2-D: ≈ 0.0039)
    assert "paper's two-timescale median ≈ 0.0039" in claim.details


def test_the_papers_median_is_compared_only_at_its_sample_size():
    table = appendix_table(0.02, 0.03)
    table["d"] = 10  # the paper's 10-D median is at n = 10⁴; this table has n = 1000
    claim, = appendix_claims(table)
    assert "≈ 0.005 is at n = 10000 (not comparable here)" in claim.details


def test_appendix_medians_apart_but_groups_overlapping_is_inconclusive():
    """Medians 17 % apart (the 10-D paper-scale gap) inside a ±40 % spread: the rank test decides neither way."""
    claim, = appendix_claims(appendix_table(0.0047, 0.0056, spread=0.4))
    assert claim.verdict == INCONCLUSIVE and "overlap" in claim.reason
