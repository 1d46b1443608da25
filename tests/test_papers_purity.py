"""A run's result is a function of its spec and its code: alone or inside any batch, the same numbers.

For every registered experiment, runs of its tiny scale are trained alone and compared with the same runs stored by
the session's tiny reproduction (``tiny_reproduction``: each inside its full batch, on a worker process); their
summaries and stored metrics must agree. Integer outcomes (step counts, horizons, fit steps, divergence) must be equal;
floating-point values agree to round-off: a batch trains its members in batched matmuls whose summation order is
not the single-member order (measured: ≤ 2e-12 relative on du2019.conv over its whole run), so the tolerance is
1e-9 relative — far below any effect a claim reads, far above that round-off. The wall time (``seconds``) is
the batch's and is not a result. ``benchmarks/check_purity.py`` runs the same comparison over every tiny run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from zeroloss.papers.base import RunOutput
from zeroloss.papers.registry import load_experiments
from zeroloss.store import read_run, run_id

#: Relative tolerance of float values (module docstring).
RTOL = 1e-9
#: Runs of the largest batch trained alone (each against the stored run of its full batch): one per experiment
#: here; benchmarks/check_purity.py compares every tiny run.
RUNS = 1
NOT_RESULTS = {"seconds"}


def _largest_batch(experiment):
    batches: dict[str, list] = {}
    for spec in experiment.specs["tiny"]:
        batches.setdefault(experiment.batch_key(spec), []).append(spec)
    # the largest batch (the first of them): the one whose shape differs most from a run alone; an experiment whose
    # runs never share a batch is still compared (the stored run came from another process)
    return max(batches.values(), key=len)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= RTOL * max(abs(a), abs(b))
    return a == b


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(load_experiments()))
def test_a_run_alone_equals_the_same_run_in_its_batch(name, tiny_reproduction):
    out, _ = tiny_reproduction
    experiment = load_experiments()[name]
    batch = _largest_batch(experiment)
    for spec in batch[:RUNS]:
        stored = read_run(out / name / "runs" / run_id(name, spec))
        in_batch = RunOutput(stored["metrics"], stored["summary"])
        alone = experiment.run_batch([spec], "cpu")[0]
        # the store adds "diverged" to a summary that does not say (inferred from its values); any other key differs
        added = set(in_batch.summary) - set(alone.summary)
        assert added <= {"diverged"}, f"{name}: stored keys the run did not return: {added}"
        keys = set(alone.summary) - NOT_RESULTS
        differ = {k: (alone.summary.get(k), in_batch.summary.get(k)) for k in sorted(keys)
                  if not _same(alone.summary.get(k), in_batch.summary.get(k))}
        assert not differ, f"{name} {spec}: alone vs in batch {differ}"
        a, b = alone.metrics.reset_index(drop=True), in_batch.metrics.reset_index(drop=True)
        assert a[["step", "metric"]].equals(b[["step", "metric"]]), f"{name}: other stored steps alone"
        va, vb = a["value"].to_numpy(float), b["value"].to_numpy(float)
        ok = (np.isnan(va) & np.isnan(vb)) | np.isclose(va, vb, rtol=RTOL, atol=0.0)
        assert ok.all(), f"{name}: metrics differ, worst {np.nanmax(np.abs(va - vb) / np.abs(vb)):.3g}"
