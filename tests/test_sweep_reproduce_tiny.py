"""End to end: every registered experiment runs at the ``tiny`` scale, its claims evaluate, the report renders.

This is the README's main job (``zeroloss reproduce all --scale tiny``) run in-process. A failed claim is a finding,
not a test failure; a run, ``claims(df)`` or ``plot(df)`` that raises is an error and fails the test.
"""

from __future__ import annotations

import json

import pytest

import zeroloss
from zeroloss.papers import load_experiments


@pytest.mark.slow
def test_reproduce_all_tiny_runs_every_experiment_and_evaluates_its_claims(tmp_path):
    out = tmp_path / "tiny"
    REGISTRY = load_experiments()
    result = zeroloss.reproduce("all", scale="tiny", out=out, executor="local", device="cpu", progress=False)
    assert result.errors == []
    claims = json.loads((out / "claims.json").read_text())
    names = {c["experiment"].split(":")[0] for c in claims}
    # every registered experiment contributed at least one evaluated claim
    assert set(REGISTRY) <= names
    for claim in claims:
        assert {"experiment", "claim", "measured", "expected", "passed"} <= set(claim)
        assert isinstance(claim["passed"], bool)
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= len(REGISTRY)
    for name in REGISTRY:
        assert name in html
