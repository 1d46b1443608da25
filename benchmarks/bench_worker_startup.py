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

from benchmarks.bench_cli_startup import extract_revision, measure

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
        rows = {}
        for what, code in (("registry", REGISTRY), ("registry + first gram", FIRST_GRAM)):
            rows[f"{what}: this tree"] = ([sys.executable, "-c", code], None)
            rows[f"{what}: {args.rev}"] = ([sys.executable, "-c", code], peer_env)
        for cmd, env in rows.values():  # warm the file cache (and write the bytecode) once, untimed
            measure(cmd, env)
        results: dict[str, list[tuple[float, float, float]]] = {label: [] for label in rows}
        for _ in range(args.repeats):
            for label, (cmd, env) in rows.items():
                results[label].append(measure(cmd, env))

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, {args.repeats} processes per row")
    print(f"{'row':<44} {'best wall s':>11} {'median wall s':>13} {'median CPU s':>12} {'median MiB':>10}")

    def column(label: str, i: int) -> list[float]:
        return [v[i] for v in results[label]]

    for label in results:
        print(f"{label:<44} {min(column(label, 0)):11.3f} {statistics.median(column(label, 0)):13.3f} "
              f"{statistics.median(column(label, 1)):12.3f} {statistics.median(column(label, 2)):10.0f}")
    for what in ("registry", "registry + first gram"):
        mine, peer = f"{what}: this tree", f"{what}: {args.rev}"
        wall, cpu = (statistics.median(column(peer, i)) / statistics.median(column(mine, i)) for i in (0, 1))
        print(f"{what}: {args.rev} / this tree: wall {wall:.2f}× median over median; CPU {cpu:.2f}×")


if __name__ == "__main__":
    main()
