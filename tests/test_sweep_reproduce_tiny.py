"""End to end: every registered experiment runs at the ``tiny`` scale, its claims evaluate, the report renders.

This is the README's main job (``zeroloss reproduce all --scale tiny``), the session's shared reproduction
(``tiny_reproduction`` in conftest.py). A failed claim is a finding, not a test failure; a run, ``claims(df)`` or
``plot(df)`` that raises is an error and fails the test.
"""

from __future__ import annotations

import json

import pytest

from zeroloss.papers import load_experiments


@pytest.mark.slow
def test_reproduce_all_tiny_runs_every_experiment_and_evaluates_its_claims(tiny_reproduction):
    out, result = tiny_reproduction
    REGISTRY = load_experiments()
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
