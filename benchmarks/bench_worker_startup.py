"""Start-up cost of a sweep's worker process: what a fresh process pays before its first batch trains.

    python -m benchmarks.bench_worker_startup [--repeats 7] --rev REV

A process-pool or Ray worker is a fresh interpreter: it imports the experiment registry (every paper's module),
then runs its first batch. Two rows per tree, each a fresh ``python`` process (``os.wait4`` gives that child's CPU
time and peak resident set), alternated in the same run so that the ratios compare like with like on a noisy
machine:

* **registry**: ``load_experiments()`` — the imports every worker pays.
* **registry + first gram**: then the Gram matrix of a small lab net (FC, width 64, depth 2, n = 8), the first
  kernel a du2019 batch computes (its memory check included).

``--rev REV`` runs the same two rows on the source of a git revision (``git archive``, on ``PYTHONPATH``): the
peer. Prints per row the best and median wall time, the median CPU time and the median peak RSS, then REV / this
tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_cli_startup import Rows, column, extract_revision, measure_rows, print_rows

REGISTRY = "from zeroloss.papers.registry import load_experiments; load_experiments()"
FIRST_GRAM = (REGISTRY + "\nimport zeroloss\nX, _ = zeroloss.sphere_data(n=8, d=16, seed=0)\n"
              "zeroloss.gram(zeroloss.nets.FullyConnected(16, 64, 2, members=1), X, layer='all')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="processes per row (alternated)")
    parser.add_argument("--rev", required=True, help="the peer: the same rows on this git revision's source")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        peer_env = {**os.environ, "PYTHONPATH": str(extract_revision(args.rev, Path(tmp)))}
        rows: Rows = {}
        for what, code in (("registry", REGISTRY), ("registry + first gram", FIRST_GRAM)):
            rows[f"{what}: this tree"] = ([sys.executable, "-c", code], None)
            rows[f"{what}: {args.rev}"] = ([sys.executable, "-c", code], peer_env)
        results = measure_rows(rows, args.repeats)

    print_rows(results, args.repeats)
    for what in ("registry", "registry + first gram"):
        mine, peer = f"{what}: this tree", f"{what}: {args.rev}"
        wall, cpu = (statistics.median(column(results, peer, i)) / statistics.median(column(results, mine, i))
                     for i in (0, 1))
        print(f"{what}: {args.rev} / this tree: wall {wall:.2f}× median over median; CPU {cpu:.2f}×")


if __name__ == "__main__":
    main()
