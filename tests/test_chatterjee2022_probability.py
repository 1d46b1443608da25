"""chatterjee2022.criterion_probability: the corollary's certified proportion against width, the n > d boundary and
σ(0) ≠ 0 — the claims' negative controls and one real run of each kind."""

import pandas as pd
import pytest

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS
from zeroloss.papers.chatterjee2022.experiments import PROBABILITY_EXPERIMENT
from zeroloss.papers.chatterjee2022.probability_claims import boundary_claim, claims, gaussian_claim, positive_claim
from zeroloss.papers.chatterjee2022.probability_runs import run_batch


def _row(law="positive_uniform", width=4, activation="tanh", n=16, certified=8, refused=False, sigma0=0.0):
    return {"law": law, "width": width, "activation": activation, "n": n, "d": 64, "trials": 8, "sigma0": sigma0,
            "refused": refused, "certified": None if refused else certified, "estimated": None if refused else 8,
            "estimate": None if refused else certified / 8, "low": None if refused else 0.5,
            "high": None if refused else 1.0}


def test_boundary_claim_negative_controls():
    refused = pd.DataFrame([_row(n=80, refused=True), _row(law="lecun", n=80, refused=True)])
    assert boundary_claim(refused)[0].verdict == PASS
    answered = pd.DataFrame([_row(n=80, refused=True), _row(law="lecun", n=80, certified=0)])  # a count, no refusal
    assert boundary_claim(answered)[0].verdict == FAIL
    certified = pd.DataFrame([_row(n=80, certified=3)])
    assert boundary_claim(certified)[0].verdict == FAIL
    none = boundary_claim(pd.DataFrame([_row()]))[0]
    assert none.verdict == INCONCLUSIVE and none.reason


@pytest.mark.parametrize("rows, verdicts", [
    ([_row(), _row(width=64), _row(activation="softplus", sigma0=0.69)], [PASS, PASS]),
    ([_row(certified=7), _row(activation="softplus", sigma0=0.69)], [FAIL, PASS]),        # one draw uncertified
    ([_row(), _row(activation="softplus", sigma0=0.69, refused=True)], [PASS, FAIL]),     # refused at n ≤ d
    ([_row()], [PASS, INCONCLUSIVE]),                                                      # no σ(0) ≠ 0 run
])
def test_positive_claim_negative_controls(rows, verdicts):
    found = positive_claim(pd.DataFrame(rows))
    assert [c.verdict for c in found] == verdicts
    assert all((c.verdict == INCONCLUSIVE) == bool(c.reason) for c in found)


def test_gaussian_claim_negative_controls():
    assert gaussian_claim(pd.DataFrame([_row(law="lecun", certified=0)]))[0].verdict == PASS
    assert gaussian_claim(pd.DataFrame([_row(law="lecun", certified=1)]))[0].verdict == FAIL  # a bug would show
    assert gaussian_claim(pd.DataFrame([_row()]))[0].verdict == INCONCLUSIVE
    assert "by construction" in gaussian_claim(pd.DataFrame([_row(law="lecun", certified=0)]))[0].details


@pytest.mark.usefixtures("one_thread")
def test_real_runs_refuse_past_the_boundary_and_certify_the_positive_law_with_softplus():
    specs = [{"law": law, "width": 4, "activation": act, "n": n, "d": 16, "trials": 3, "seed": 0, "radii": [0.3],
              "samples": 2, "descent_starts": 0, "descent_steps": 0}
             for law in ("lecun", "positive_uniform") for act, n in (("softplus", 8), ("tanh", 20))]
    outs = [o.summary for o in run_batch(specs)]
    rows = pd.DataFrame([{**s, **o} for s, o in zip(specs, outs, strict=True)])
    beyond = rows[rows["n"] > rows["d"]]
    assert beyond["refused"].all() and beyond["refusal"].str.startswith("X:").all()
    pos = rows[(rows["law"] == "positive_uniform") & (rows["n"] <= rows["d"])]
    assert (pos["sigma0"] > 0).all() and (pos["certified"] == 3).all()
    assert [c.verdict for c in claims(rows)] == [PASS, INCONCLUSIVE, PASS, PASS]  # no σ(0) = 0 positive run here
    assert set(PROBABILITY_EXPERIMENT.plot(rows)) == {"criterion probability vs width"}


def test_probability_specs_cover_the_design():
    for scale in ("tiny", "paper"):
        specs = PROBABILITY_EXPERIMENT.specs[scale]
        assert {s["activation"] for s in specs} == {"tanh", "softplus"}
        assert any(s["n"] > s["d"] for s in specs) and len({s["width"] for s in specs if s["n"] <= s["d"]}) >= 2
