"""Every registered tiny run alone against the same run inside its batch (issue: a run is a pure function of its spec).

tests/test_papers_purity.py checks two runs of one batch per experiment in CI; this script checks every tiny run:

    python -m benchmarks.check_purity                      # all experiments
    python -m benchmarks.check_purity du2019.conv          # some

It prints, per experiment, the number of runs, the largest relative difference of any float value (summaries and
stored metrics; the wall time ``seconds`` excepted) and every integer or text value that differs (there should be
none). Exit status 1 when a value differs by more than the test's tolerance (1e-9 relative) or an integer differs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from zeroloss.papers.registry import load_experiments
from zeroloss.threads import intra_op_threads

RTOL = 1e-9


def compare(alone, in_batch) -> tuple[float, list[tuple[str, object, object]]]:
    """(largest relative float difference, integer/text differences) between two RunOutputs."""
    worst, exact = 0.0, []
    for key in sorted((set(alone.summary) | set(in_batch.summary)) - {"seconds"}):
        a, b = alone.summary.get(key), in_batch.summary.get(key)
        if isinstance(a, float) and isinstance(b, float):
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
        elif a != b:
            exact.append((key, a, b))
    ma, mb = alone.metrics.reset_index(drop=True), in_batch.metrics.reset_index(drop=True)
    if not ma[["step", "metric"]].equals(mb[["step", "metric"]]):
        exact.append(("stored steps", len(ma), len(mb)))
    else:
        va, vb = ma["value"].to_numpy(float), mb["value"].to_numpy(float)
        both = np.isfinite(va) & np.isfinite(vb)
        if (np.isnan(va) != np.isnan(vb)).any():
            exact.append(("NaN pattern of the metrics", int(np.isnan(va).sum()), int(np.isnan(vb).sum())))
        if both.any():
            rel = np.abs(va[both] - vb[both]) / np.maximum(np.abs(va[both]), np.abs(vb[both])).clip(1e-300)
            worst = max(worst, float(rel.max()))
    return worst, exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="*", help="registered experiment names (default: all)")
    args = parser.parse_args(argv)
    registry = load_experiments()
    bad = False
    for name in args.experiments or sorted(registry):
        experiment = registry[name]
        batches: dict[str, list] = {}
        for spec in experiment.specs["tiny"]:
            batches.setdefault(experiment.batch_key(spec), []).append(spec)
        start, worst, exact = time.perf_counter(), 0.0, []
        with intra_op_threads(1):
            for batch in batches.values():
                for spec, in_batch in zip(batch, experiment.run_batch(batch, "cpu"), strict=True):
                    w, e = compare(experiment.run_batch([spec], "cpu")[0], in_batch)
                    worst, exact = max(worst, w), exact + e
        bad |= worst > RTOL or bool(exact)
        print(f"{name}: {len(experiment.specs['tiny'])} runs in {len(batches)} batches, "
              f"{time.perf_counter() - start:.0f} s; largest relative difference {worst:.2g}; "
              f"exact differences: {exact or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
