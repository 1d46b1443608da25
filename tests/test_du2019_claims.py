"""Negative controls for every du2019 claim: synthetic result tables in the experiments' format.

Each claims function is fed a tidy frame shaped like ``zeroloss.load`` of a du2019 sweep (one row per run here, at
step 0: the claims read the run-level summary columns) in which the claimed effect is present (PASS), absent (FAIL)
and resting on censored runs (INCONCLUSIVE). The synthetic quantities follow power laws with 5 % log-normal seed
noise (seeded), the size of the seed spread measured in the real tiny runs (docs/reproductions.md).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS
from zeroloss.papers.du2019 import experiments as du2019
from zeroloss.papers.du2019.claims import (
    DEPTH_MARGIN_STEPS,
    SLOPE_HALF_WIDTH,
    TRACK_TOL,
    loglog_fit,
    needed_width,
    slope_claim,
)

WIDTHS = (64, 128, 256, 512)
SEEDS = 4


def _tidy(rows: list[dict]) -> pd.DataFrame:
    """A load()-shaped frame: run_id, step, metric, value, then spec and summary columns."""
    frame = pd.DataFrame(rows)
    frame.insert(0, "run_id", [f"run{i:04d}" for i in range(len(frame))])
    frame.insert(1, "experiment", "du2019.test")
    frame.insert(2, "step", 0)
    frame.insert(3, "metric", "loss")
    frame.insert(4, "value", frame["initial_loss"])
    return frame


def _kernel_rows(deviation, movement, drift, linear=1.02, fit=1.2, censored=False, seed_noise=0.05,
                 limit_error=lambda m: 2.0 * m**-0.5, lemma=lambda m: 0.9):
    """FC and ResNet runs at WIDTHS × SEEDS; the quantities are functions of the width m; ``fit``: steps to
    L ≤ 10⁻⁴ L(0) in kernel horizons (None: never); ``linear``: the smallest fraction of the linear decrement a
    step achieved; ``limit_error``: ‖G^(H)(0) − K^(H)‖_F/‖K^(H)‖_F (its operator norm over λ₀ taken 3× that);
    ``lemma``: min_k λ_min(G^(H)(k))/λ₀."""
    rng = np.random.default_rng(0)
    rows = []
    for (net, depth), m, s in itertools.product(du2019.KERNEL_NETS, WIDTHS, range(SEEDS)):
        noise = lambda: float(np.exp(seed_noise * rng.standard_normal()))  # noqa: E731
        cut = censored(m, s) if callable(censored) else censored
        rows.append({"net": net, "depth": depth, "width": m, "seed": s, "eta": 0.1, "lambda_max_G0": 10.0,
                     "initial_loss": 5.0, "kernel_horizon": 300, "censored": cut, "diverged": False,
                     "kernel_deviation": deviation(m) * noise(), "movement_max": movement(m) * noise(),
                     "gram_drift_max": drift(m) * noise(),
                     "fit_step": None if fit is None else int(fit * 300),
                     "linear_steps": 600, "linear_fraction_min": linear(m) if callable(linear) else linear,
                     "lambda0": 0.02, "gram_limit_error": limit_error(m) * noise(),
                     "gram_limit_op": 3.0 * limit_error(m), "lambda_min_GH_min": 0.02 * lemma(m),
                     "lemma_steps": 600})
    return rows


def _verdicts(claims) -> dict[str, str]:
    return {c.claim: c.verdict for c in claims}


def _kinds(claims) -> dict[str, list[str]]:
    """Verdicts grouped by the claim's kind (linear decrement, tracking, fit, lemma, and the four slopes)."""
    out: dict[str, list[str]] = {}
    for c in claims:
        kind = ("achieves" if "achieves" in c.claim else "follows" if "follows" in c.claim else
                "fits" if "fits" in c.claim else "lemma" if "λ₀/2" in c.claim else
                c.claim.split(": ", 1)[1].split(" falls")[0])
        out.setdefault(kind, []).append(c.verdict)
    return out


PRESENT = dict(deviation=lambda m: 0.5 * m**-0.75, movement=lambda m: 2.0 * m**-0.5, drift=lambda m: 3.0 / m)


def test_kernel_claims_pass_when_the_theory_holds():
    claims = du2019.kernel_claims(_tidy(_kernel_rows(**PRESENT)))
    assert len(claims) == 16
    assert all(c.verdict == PASS for c in claims), [(c.claim, c.verdict, c.measured) for c in claims]
    assert all(c.provenance is not None for c in claims)


def test_kernel_claims_fail_when_the_effects_are_absent():
    """Steps at half the linear decrement, a deviation that stays at 0.2 > τ, nothing falls with width, labels not
    fitted, G^(H)(0) not approaching K^(H), λ_min(G^(H)(k)) at 0.3·λ₀."""
    absent = dict(deviation=lambda m: 0.2, movement=lambda m: 0.3, drift=lambda m: 0.5 * m**-0.1)
    claims = du2019.kernel_claims(_tidy(_kernel_rows(**absent, linear=0.5, fit=None, limit_error=lambda m: 0.2,
                                                     lemma=lambda m: 0.3)))
    assert [c.verdict for c in claims] == [FAIL] * 16, [(c.claim, c.verdict, c.measured) for c in claims]


def test_kernel_claims_are_inconclusive_on_censored_runs():
    """max_steps cut the runs: no violation seen and a deviation below τ, but the windows were not complete. The
    initial Gram's distance to K^(H) is measured before training: no window to cut, still decided."""
    claims = du2019.kernel_claims(_tidy(_kernel_rows(**PRESENT, fit=None, censored=True)))
    at_init = [c for c in claims if "K^(H)" in c.claim]
    assert [c.verdict for c in at_init] == [PASS] * 2
    assert [c.verdict for c in claims if c not in at_init] == [INCONCLUSIVE] * 14
    assert all(c.reason for c in claims if c not in at_init)


def test_an_excess_on_a_censored_run_still_fails():
    """A censored run's deviation is a lower bound, so one above τ decides FAIL; a violation is a violation."""
    rows = _kernel_rows(deviation=lambda m: 0.3, movement=PRESENT["movement"], drift=PRESENT["drift"],
                        linear=0.8, lemma=lambda m: 0.4, censored=True)
    kinds = _kinds(du2019.kernel_claims(_tidy(rows)))
    assert kinds["follows"] == [FAIL, FAIL] and kinds["achieves"] == [FAIL, FAIL] and kinds["lemma"] == [FAIL, FAIL]


def test_linear_claim_reports_the_laziness_curve_and_the_width_where_it_fails():
    """Fraction 0.7 at m = 64, 0.85 at 128, 0.95 from 256: PASS at the widest, fails first (from above) at 128."""
    frac = {64: 0.7, 128: 0.85, 256: 0.95, 512: 0.97}
    claims = du2019.kernel_claims(_tidy(_kernel_rows(**PRESENT, linear=frac.get)))
    (fc,) = [c for c in claims if "achieves" in c.claim and c.claim.startswith("FC")]
    assert fc.verdict == PASS and fc.measured == pytest.approx(0.97)
    assert "m=64: 0.7, m=128: 0.85" in fc.details and "fails: 128" in fc.details
    assert fc.provenance.kind == "derived"
    # a step beyond 1/λ_max is outside the claim's range
    rows = [{**r, "eta": 0.2} for r in _kernel_rows(**PRESENT)]
    (fc,) = [c for c in du2019.kernel_claims(_tidy(rows)) if "achieves" in c.claim and c.claim.startswith("FC")]
    assert fc.verdict == INCONCLUSIVE and "1/λ_max" in fc.reason


def test_slope_claim_needs_three_widths_and_a_tight_interval():
    rows = _kernel_rows(**PRESENT)
    two_widths = _tidy([r for r in rows if r["width"] in (64, 128) and r["net"] == "fc"])
    claim = slope_claim("x", "FC", two_widths, "movement_max", "movement")
    assert claim.verdict == INCONCLUSIVE and "3 widths" in claim.reason
    noisy = _tidy(_kernel_rows(**PRESENT, seed_noise=1.5))
    claim = slope_claim("x", "FC", noisy[noisy["net"] == "fc"], "movement_max", "movement")
    assert claim.verdict == INCONCLUSIVE and "half-width" in claim.reason
    # a wide interval is INCONCLUSIVE even entirely below −½: no PASS without the stated precision
    steep = _tidy(_kernel_rows(deviation=PRESENT["deviation"], movement=lambda m: 50 * m**-1.5,
                               drift=PRESENT["drift"], seed_noise=0.6))
    claim = slope_claim("x", "FC", steep[steep["net"] == "fc"], "movement_max", "movement")
    half = float(claim.measured.split(" ± ")[1])
    assert claim.verdict == INCONCLUSIVE and half >= SLOPE_HALF_WIDTH, claim.measured
    # m^(−0.3) with little noise: decided FAIL (falls, but more slowly than m^(−1/2)); its local slopes do not move
    slow = _tidy(_kernel_rows(deviation=PRESENT["deviation"], movement=lambda m: m**-0.3, drift=PRESENT["drift"]))
    assert slope_claim("x", "FC", slow[slow["net"] == "fc"], "movement_max", "movement").verdict == FAIL
    # m^(−1/4) can no longer pass: the old rule's −0.25 ± 0.25 case, here precise
    quarter = _tidy(_kernel_rows(deviation=PRESENT["deviation"], movement=lambda m: m**-0.25, drift=PRESENT["drift"]))
    assert slope_claim("x", "FC", quarter[quarter["net"] == "fc"], "movement_max", "movement").verdict == FAIL


def test_slope_claim_passes_an_exact_half_and_calls_a_moving_slope_pre_asymptotic():
    """Exactly m^(−1/2) passes ("contains −½"), faster passes ("entirely below"); a slope that steepens with width
    (−0.2, −0.4, −0.65 per doubling: overall interval above −½, the widest three widths' reaching it) is
    INCONCLUSIVE "pre-asymptotic", not FAIL."""
    exact = _tidy(_kernel_rows(**PRESENT))
    claim = slope_claim("x", "FC", exact[exact["net"] == "fc"], "movement_max", "movement")
    assert claim.verdict == PASS and "contains −½" in claim.measured
    claim = slope_claim("x", "FC", exact[exact["net"] == "fc"], "gram_drift_max", "drift")
    assert claim.verdict == PASS and "entirely below −½" in claim.measured
    log2 = {64: 0.0, 128: -0.2, 256: -0.6, 512: -1.25}
    moving = _tidy(_kernel_rows(deviation=PRESENT["deviation"], movement=lambda m: 2.0 ** log2[m],
                                drift=PRESENT["drift"], seed_noise=0.01))
    claim = slope_claim("x", "FC", moving[moving["net"] == "fc"], "movement_max", "movement")
    assert claim.verdict == INCONCLUSIVE and claim.reason.startswith("pre-asymptotic"), (claim.measured, claim.reason)
    assert "local slopes" in claim.details


def test_loglog_fit_recovers_a_power_law_and_its_standard_error():
    x = np.repeat([64.0, 128.0, 256.0, 512.0], 50)
    y = 3.0 * x**-0.5 * np.exp(0.1 * np.random.default_rng(1).standard_normal(x.size))
    slope, se, n = loglog_fit(x, y)
    # the OLS standard error of a slope: σ/√Sxx = 0.1/√(200·var(log x)) ≈ 0.0092
    assert n == 200 and abs(slope + 0.5) < 4 * se and se == pytest.approx(0.0092, rel=0.2)


def test_fit_claim_on_the_conv_experiment():
    """PASS: every seed within 2 kernel horizons; FAIL: one needs 2.5 (its window was complete) or diverged;
    INCONCLUSIVE: one not there yet when max_steps cut it."""
    base = {"net": "conv-resnet", "depth": 3, "width": 32, "initial_loss": 6.0, "kernel_horizon": 1500,
            "diverged": False, "kernel_deviation": 0.01, "censored": False}
    reached = [{**base, "seed": s, "fit_step": 1400 + 500 * s} for s in range(3)]  # ≤ 2.0 horizons
    claim = du2019.conv_claims(_tidy(reached))[0]
    assert claim.verdict == PASS and claim.measured == pytest.approx(2400 / 1500)
    late = [{**r, "fit_step": 3750 if r["seed"] == 2 else r["fit_step"]} for r in reached]  # 2.5 horizons
    assert du2019.conv_claims(_tidy(late))[0].verdict == FAIL
    never = [{**r, "fit_step": None if r["seed"] == 2 else r["fit_step"]} for r in reached]
    assert du2019.conv_claims(_tidy(never))[0].verdict == FAIL
    cut = [{**r, "censored": r["seed"] == 2} for r in never]
    claim = du2019.conv_claims(_tidy(cut))[0]
    assert claim.verdict == INCONCLUSIVE and "max_steps" in claim.reason
    diverged = [{**r, "diverged": r["seed"] == 2} for r in cut]
    assert du2019.conv_claims(_tidy(diverged))[0].verdict == FAIL


# ------------------------------------------------------------------------------------------------- depth

DEPTH_WIDTHS = (8, 16, 32, 64, 128, 256)


def _depth_rows(needed: dict[tuple[str, int], float], censored=lambda net, h, m: False) -> list[dict]:
    """Deviation C·m^(−1/2) with C set so the seed mean crosses τ at 0.9 × the given width (never at a grid
    width: no ties); a needed width beyond the grid gives a cell that never tracks."""
    rows = []
    rng = np.random.default_rng(3)
    for (net, h), m_star in needed.items():
        C = TRACK_TOL * np.sqrt(0.9 * m_star)
        for m, s in itertools.product(DEPTH_WIDTHS, range(3)):
            rows.append({"net": net, "depth": h, "width": m, "seed": s, "initial_loss": 4.0,
                         "kernel_deviation": C / np.sqrt(m) * float(np.exp(0.02 * rng.standard_normal())),
                         "censored": censored(net, h, m), "diverged": False})
    return rows


def test_depth_claim_passes_when_only_the_fc_requirement_grows():
    needed = {("fc", 2): 32, ("fc", 3): 128, ("fc", 4): 4096, ("resnet", 2): 16, ("resnet", 3): 16,
              ("resnet", 4): 32}
    (claim,) = du2019.depth_claims(_tidy(_depth_rows(needed)))
    assert claim.verdict == PASS, (claim.measured, claim.details)
    # FC: 32 → beyond 256 (≥ 512): ≥ 4 doublings; ResNet 16 → 32: 1 doubling; difference ≥ 3 ≥ the margin 2
    assert claim.measured.startswith("[3, inf]")
    assert "FC > 256" in claim.details


def test_depth_claim_fails_when_both_requirements_grow_alike():
    needed = {(net, h): w for net in ("fc", "resnet") for h, w in ((2, 16), (3, 32), (4, 64))}
    (claim,) = du2019.depth_claims(_tidy(_depth_rows(needed)))
    assert claim.verdict == FAIL and claim.measured.startswith("[0, 0]")


def test_depth_claim_is_inconclusive_when_censoring_decides():
    """FC never tracks at any depth (beyond the grid everywhere): its growth is unbounded both ways."""
    needed = {("fc", 2): 4096, ("fc", 3): 4096, ("fc", 4): 4096, ("resnet", 2): 16, ("resnet", 3): 16,
              ("resnet", 4): 16}
    (claim,) = du2019.depth_claims(_tidy(_depth_rows(needed)))
    assert claim.verdict == INCONCLUSIVE and "censored" in claim.reason
    # max_steps cut the widest FC runs at depth 4 while below τ: those widths are unknown, m* only bounded
    needed = {("fc", 2): 32, ("fc", 3): 32, ("fc", 4): 32, ("resnet", 2): 16, ("resnet", 3): 16,
              ("resnet", 4): 16}
    rows = _depth_rows(needed, censored=lambda net, h, m: net == "fc" and h == 4 and m >= 32)
    (claim,) = du2019.depth_claims(_tidy(rows))
    assert claim.verdict == INCONCLUSIVE and "fc H=4" in claim.reason


def test_needed_width_reads_the_grid_as_intervals():
    def group(means, censored=()):
        return pd.DataFrame({"width": DEPTH_WIDTHS, "kernel_deviation": means,
                             "censored": [m in censored for m in DEPTH_WIDTHS]})

    big, small = 2 * TRACK_TOL, TRACK_TOL / 2
    assert needed_width(group([big, big, small, small, small, small])) == (5.0, 5.0)  # 32, pinned
    assert needed_width(group([small] * 6)) == (-np.inf, 3.0)  # ≤ 8: below the grid
    assert needed_width(group([big] * 6)) == (9.0, np.inf)  # ≥ 512: beyond the grid (censored)
    # not monotone: tracks at 16, not at 32: m* is 64 (from there on every width tracks)
    assert needed_width(group([big, small, big, small, small, small])) == (6.0, 6.0)
    # an unknown (censored, below τ) width at 64 widens [64, 64] to [64, 128]
    assert needed_width(group([big, big, big, small, small, small], censored=(64,))) == (6.0, 7.0)
    assert DEPTH_MARGIN_STEPS == 2
