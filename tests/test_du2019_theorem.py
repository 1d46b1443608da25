"""Du et al.'s theorems as stated: the inequality with λ₀ on a ladder of steps, the proofs' lemmas, the n-dependence.

The checks of :mod:`zeroloss.papers.du2019.theory` on known curves; every claim of
:mod:`zeroloss.papers.du2019.claims_theorem` on synthetic one-row-per-run tables with the effect present (PASS),
absent (FAIL) and censored (INCONCLUSIVE); one real ladder batch.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from zeroloss.kernels.limit import lambda0
from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS
from zeroloss.papers.du2019 import experiments as du2019
from zeroloss.papers.du2019.claims import TRACK_TOL
from zeroloss.papers.du2019.claims_theorem import (
    lemma_lambda_claim,
    lemma_limit_claim,
    samples_claim,
)
from zeroloss.papers.du2019.ladder import ladder_batch_key, run_ladder_batch
from zeroloss.papers.du2019.runs import make_data
from zeroloss.papers.du2019.theory import linear_contraction, theorem_inequality, theorem_step

# ------------------------------------------------------------------------------------------------ theory


def test_theorem_inequality_counts_violations_and_stops_at_the_floor():
    L = 0.9 ** np.arange(8.0)
    assert theorem_inequality(L, 0.1, 1.0)["violations"].item() == 0  # 0.9^k ≤ 0.95^k
    assert theorem_inequality(L, 0.1, 3.0)["violations"].item() == 7  # 0.9^k > 0.85^k from k = 1
    # a loss that stalls: below the bound until the bound overtakes it
    stall = np.array([1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    row = theorem_inequality(stall, 0.5, 1.0).iloc[0]  # bound 0.75^k: 0.75, 0.56, 0.42, …
    assert row["violations"] == 3 and row["worst_step"] == 5
    # below (10⁴ eps)² L(0) nothing is checked: round-off, not dynamics
    floor = np.array([1.0, 0.5, 1e-30, 1e-29])
    assert theorem_inequality(floor, 0.1, 1.0)["steps_checked"].item() == 1
    # a diverged member (non-finite loss) is a violation
    assert theorem_inequality(np.array([1.0, 0.9, np.nan]), 0.1, 1.0)["violations"].item() == 1


def test_linear_contraction_is_the_fraction_of_the_linearised_decrement():
    lam = np.full(6, 2.0)
    exact = (1 - 0.1 * 2.0) ** (2 * np.arange(6.0))  # ratio (1 − ηλ)² every step: fraction 1
    assert linear_contraction(exact, 0.1, lam)["min_fraction"].item() == pytest.approx(1.0, abs=1e-12)
    half = (1 - 0.5 * (1 - 0.8**2)) ** np.arange(6.0)  # half the decrement
    assert linear_contraction(half, 0.1, lam)["min_fraction"].item() == pytest.approx(0.5, abs=1e-12)


def test_theorem_step_takes_the_stated_constants():
    assert theorem_step("fc", n=8, depth=2, lambda0=0.5) == pytest.approx(0.5 / (64 * 4))
    assert theorem_step("resnet", n=8, depth=3, lambda0=0.5) == pytest.approx(0.5 * 9 / 64)


# ------------------------------------------------------------------------------------------------ ladder

WIDTHS = (8, 32, 128)
RUNGS = (1.0, 0.125, "theorem")


def _tidy(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.insert(0, "run_id", [f"run{i:04d}" for i in range(len(frame))])
    frame.insert(1, "step", 0)
    frame.insert(2, "metric", "loss")
    frame.insert(3, "value", 1.0)
    return frame


def _ladder_rows(violations=lambda m, rung: 0, censored=lambda m, rung: False, lemma=lambda m: 0.8) -> list[dict]:
    rows = []
    for net, m, rung, s in itertools.product(("fc", "resnet"), WIDTHS, RUNGS, range(2)):
        bad = violations(m, rung)
        rows.append({"net": net, "depth": 2, "width": m, "rung": rung, "seed": s, "lambda0": 0.08,
                     "eta_lambda_max": 0.007 if rung == "theorem" else rung, "steps_checked": 500,
                     "violations": bad, "worst_log_excess": 0.01 if bad else -0.002,
                     "censored": censored(m, rung), "diverged": False, "lambda_min_GH_min": 0.08 * lemma(m),
                     "lemma_steps": 500, "lemma_every": 1})
    return rows


def _theorem_claims(rows, lemma=False):
    """The inequality claims (per net) or, with ``lemma``, the lemma claims at η_thm."""
    claims = du2019.theorem_claims(_tidy(rows))
    return [c for c in claims if ("λ₀/2)^k" in c.claim) != lemma]


def test_theorem_experiment_checks_the_lemma_at_the_theorems_step():
    """λ_min(G^(H)(k))/λ₀ = 0.3 at m = 8, 0.8 above: PASS from 32; 0.4 everywhere: FAIL."""
    claims = _theorem_claims(_ladder_rows(lemma=lambda m: 0.3 if m == 8 else 0.8), lemma=True)
    assert [c.verdict for c in claims] == [PASS, PASS] and "holds: 32" in claims[0].details
    assert "at η_thm" in claims[0].claim
    claims = _theorem_claims(_ladder_rows(lemma=lambda m: 0.4), lemma=True)
    assert [c.verdict for c in claims] == [FAIL, FAIL]


def test_theorem_claim_passes_when_the_inequality_holds_and_reports_the_ladder():
    """Holds everywhere except η = 1/λ_max at m = 8: the largest holding step is 0.125 there, 1 above."""
    claims = _theorem_claims(_ladder_rows(violations=lambda m, rung: 3 * (m == 8 and rung == 1.0)))
    assert [c.verdict for c in claims] == [PASS, PASS]
    assert "m=8: 0.125, m=32: 1, m=128: 1" in claims[0].details
    assert "from which it holds at η_thm: 8" in claims[0].details
    assert claims[0].provenance.kind == "theorem"


def test_theorem_claim_fails_on_a_violation_at_the_widest_width_even_censored():
    rows = _ladder_rows(violations=lambda m, rung: 2 * (rung == "theorem"), censored=lambda m, rung: True)
    claims = _theorem_claims(rows)
    assert [c.verdict for c in claims] == [FAIL, FAIL]
    assert "none tried" in claims[0].details


def test_theorem_claim_reports_the_smallest_width_and_is_inconclusive_when_censored():
    rows = _ladder_rows(violations=lambda m, rung: (m == 8 and rung == "theorem"))
    assert "from which it holds at η_thm: 32" in _theorem_claims(rows)[0].details
    rows = _ladder_rows(censored=lambda m, rung: m == 128 and rung == "theorem")
    claims = _theorem_claims(rows)
    assert [c.verdict for c in claims] == [INCONCLUSIVE] * 2 and "max_steps" in claims[0].reason


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_ladder_batch_uses_its_rungs_steps_and_lambda0():
    specs = du2019.theorem_specs([16], 1, n=4, d=8, rungs=[1.0], horizon=0.5, max_steps=5000)[:2]  # FC: 1, η_thm
    assert len({ladder_batch_key(s) for s in specs}) == 1
    out = run_ladder_batch(specs, "cpu")
    X, _ = make_data(specs[0])
    lam0 = lambda0(X, net="fc", depth=2, activation="softplus")
    top, thm = out[0].summary, out[1].summary
    assert top["eta_lambda_max"] == pytest.approx(1.0) and top["lambda0"] == pytest.approx(lam0)
    assert thm["eta"] == pytest.approx(theorem_step("fc", 4, 2, lam0)) and thm["eta_over_theorem"] == 1.0
    for summary in (top, thm):
        assert summary["steps_checked"] > 0 and summary["violations"] == 0 and not summary["censored"]
        assert summary["lemma_steps"] == summary["window"] + 1 and summary["lambda_min_GH_min"] > 0  # every step
        # the window ends where the kernel predicts ½·L̂_0; a net of width 16 trails its kernel by a few per cent
        assert summary["final_loss_ratio"] < 0.6
    # … which the smaller step needs more steps to reach
    assert thm["window"] > 10 * top["window"]
    assert {"loss", "theorem_bound"} <= set(out[1].metrics["metric"])


# ------------------------------------------------------------------------------------------------ lemmas

def _lemma_rows(ratio, op=lambda m: 64 / m, error=lambda m: 0.5 * m**-0.5, censored=False):
    rng = np.random.default_rng(0)
    rows = []
    for m, s in itertools.product((64, 128, 256, 512), range(4)):
        rows.append({"net": "fc", "width": m, "seed": s, "lambda0": 0.02, "lambda_min_GH_min": 0.02 * ratio(m),
                     "lemma_steps": 400, "censored": censored, "diverged": False,
                     "gram_limit_error": error(m) * float(np.exp(0.05 * rng.standard_normal())),
                     "gram_limit_op": op(m)})
    return pd.DataFrame(rows)


def test_lemma_lambda_claim_reports_the_width_from_which_it_holds():
    runs = _lemma_rows(ratio=lambda m: 0.3 if m == 64 else 0.7)
    claim = lemma_lambda_claim("x", "FC", runs)
    assert claim.verdict == PASS and "holds: 128" in claim.details
    assert lemma_lambda_claim("x", "FC", _lemma_rows(ratio=lambda m: 0.45)).verdict == FAIL
    claim = lemma_lambda_claim("x", "FC", _lemma_rows(ratio=lambda m: 0.7, censored=True))
    assert claim.verdict == INCONCLUSIVE and claim.reason


def test_lemma_limit_claim_is_the_slope_rule_plus_the_quarter_width():
    claim = lemma_limit_claim("x", "FC", _lemma_rows(ratio=lambda m: 0.7))
    assert claim.verdict == PASS and "−½" in claim.measured
    assert "≤ 0.25: 256" in claim.details  # ‖G^(H)(0) − K^(H)‖₂/λ₀ = 64/m ≤ ¼ from m = 256
    claim = lemma_limit_claim("x", "FC", _lemma_rows(ratio=lambda m: 0.7, error=lambda m: 0.1))
    assert claim.verdict == FAIL  # not approaching K^(H)
    # seeds scattered by a factor e^{±1}: the slope is not pinned down (a censored flag changes nothing at init)
    rng = np.random.default_rng(5)
    claim = lemma_limit_claim("x", "FC", _lemma_rows(ratio=lambda m: 0.7, censored=True,
                                                      error=lambda m: m**-0.5 * float(np.exp(rng.standard_normal()))))
    assert claim.verdict == INCONCLUSIVE and "half-width" in claim.reason


# ----------------------------------------------------------------------------------------------- samples

SAMPLE_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def _sample_rows(needed: dict[int, float], lam0: dict[int, float], censored=lambda n, m: False) -> pd.DataFrame:
    """Deviation crossing τ at 0.9 × the given needed width per n (as tests/test_du2019_claims.py's depth rows)."""
    rows = []
    for n, m_star in needed.items():
        C = TRACK_TOL * np.sqrt(0.9 * m_star)
        for m, s in itertools.product(SAMPLE_WIDTHS, range(2)):
            rows.append({"net": "fc", "n": n, "width": m, "seed": s, "kernel_deviation": C / np.sqrt(m),
                         "censored": censored(n, m), "lambda0": lam0[n]})
    return pd.DataFrame(rows)


def test_samples_claim_compares_the_growth_exponent_with_n4_over_lambda4():
    lam = {4: 0.08, 8: 0.08, 16: 0.08}  # λ₀ constant: the theorem's exponent is exactly 4
    grows_slowly = _sample_rows({4: 16, 8: 32, 16: 64}, lam)  # exponent 1 (± grid)
    claim = samples_claim("x", "FC", grows_slowly)
    assert claim.verdict == PASS and "4.00" in claim.expected and claim.measured == "[1, 1]"
    assert "least-squares exponent over the pinned cells 1.00" in claim.details
    too_fast = _sample_rows({4: 8, 16: 4096}, lam)  # 9 doublings over 2 doublings of n: 4.5 > 4
    assert samples_claim("x", "FC", too_fast).verdict == FAIL
    beyond = _sample_rows({4: 16, 16: 8192}, lam)  # beyond the grid at n = 16, but already ≥ 4.5: decided
    assert samples_claim("x", "FC", beyond).verdict == FAIL
    cut = _sample_rows({4: 16, 16: 1024}, lam, censored=lambda n, m: n == 16 and m >= 1024)  # m* ≥ 1024: ≥ 3
    claim = samples_claim("x", "FC", cut)
    assert claim.verdict == INCONCLUSIVE and "censored" in claim.reason
