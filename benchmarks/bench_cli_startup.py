"""Start-up cost of the command line: ``zeroloss --help`` and ``zeroloss train --help``, wall time and peak memory.

    python -m benchmarks.bench_cli_startup [--repeats 7] [--rev main]

Each measurement is a fresh ``python`` process (``os.wait4`` gives that one child's peak resident set size), and
the rows alternate in the same run, so the ratios compare like with like on a noisy machine:

* **lazy** (this tree): ``zeroloss.cli.main()`` as the console script runs it — typer parses the arguments
  and prints the help; torch and the rest are imported only when a command body runs.
* **eager** (the peer: the previous behaviour, reproduced in this tree): the same process, but before parsing it
  imports everything the commands import when they run — every public name of ``zeroloss`` (as the package root
  used to import them), the paper experiment modules (matplotlib, numba, scipy, pandas), the report and the sweep
  machinery — which is what the CLI did at start-up before the imports were deferred.
* ``--rev REV`` adds the CLI of a git revision (e.g. ``main`` before this change), extracted with ``git archive``
  into a temporary folder and run with ``PYTHONPATH`` pointing there: the previous behaviour itself.
* ``import torch`` alone, for scale.

Prints per row the best and median wall time, the median CPU time (user + system of that process: less
sensitive than wall time to other processes on a loaded machine) and the median peak RSS, then the peer / lazy
ratios. The target (issue 14): every ``--help`` under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What the command bodies import when they run; the eager peer imports all of it before parsing.
EAGER_IMPORTS = (
    "import zeroloss; [getattr(zeroloss, n) for n in zeroloss.__all__]; "
    "import zeroloss.papers.registry as r; r.load_experiments(); "
    "import zeroloss.report, zeroloss.sweep.runner, zeroloss.sweep.executors, zeroloss.sweep.spec; "
)


def _cli(argv: list[str], eager: bool = False) -> list[str]:
    code = (EAGER_IMPORTS if eager else "") + f"import sys; sys.argv = {['zeroloss', *argv]!r}; " \
        "from zeroloss.cli import main; main()"
    return [sys.executable, "-c", code]


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall time (s), CPU time (s) and peak resident memory (MiB) of one fresh process running ``cmd`` (its output
    discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def extract_revision(rev: str, into: Path) -> Path:
    """``git archive REV src`` unpacked under ``into``; returns the folder to put on PYTHONPATH."""
    archive = into / "src.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


Rows = dict[str, tuple[list[str], dict[str, str] | None]]
Results = dict[str, list[tuple[float, float, float]]]


def measure_rows(rows: Rows, repeats: int) -> Results:
    """Each row's command ``repeats`` times, the rows alternated (after one untimed pass that warms the file cache and
    writes the bytecode): label → [(wall s, CPU s, peak MiB), ...]."""
    for cmd, env in rows.values():
        measure(cmd, env)
    results: Results = {label: [] for label in rows}
    for _ in range(repeats):
        for label, (cmd, env) in rows.items():
            results[label].append(measure(cmd, env))
    return results


def column(results: Results, label: str, i: int) -> list[float]:
    """One quantity of one row (0: wall, 1: CPU, 2: peak MiB) over its repeats."""
    return [v[i] for v in results[label]]


def print_rows(results: Results, repeats: int) -> None:
    """The machine line, then per row the best and median wall time, the median CPU time and peak memory."""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, {repeats} processes per row")
    print(f"{'row':<44} {'best wall s':>11} {'median wall s':>13} {'median CPU s':>12} {'median MiB':>10}")
    for label in results:
        wall = column(results, label, 0)
        print(f"{label:<44} {min(wall):11.3f} {statistics.median(wall):13.3f} "
              f"{statistics.median(column(results, label, 1)):12.3f} "
              f"{statistics.median(column(results, label, 2)):10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="processes per row (alternated)")
    parser.add_argument("--rev", default=None, help="also time the CLI of this git revision (e.g. main)")
    args = parser.parse_args()

    rows: Rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in (("zeroloss --help", ["--help"]), ("zeroloss train --help", ["train", "--help"])):
            rows[f"{label}: lazy (this tree)"] = (_cli(argv), None)
            rows[f"{label}: eager peer"] = (_cli(argv, eager=True), None)
            if args.rev:
                src = extract_revision(args.rev, Path(tmp)) if not (Path(tmp) / "src").exists() else Path(tmp) / "src"
                env = {**os.environ, "PYTHONPATH": str(src)}
                rows[f"{label}: {args.rev}"] = (_cli(argv), env)
        rows["import torch (for scale)"] = ([sys.executable, "-c", "import torch"], None)

        results = measure_rows(rows, args.repeats)

    print_rows(results, args.repeats)

    def col(label: str, i: int) -> list[float]:
        return column(results, label, i)

    for label in ("zeroloss --help", "zeroloss train --help"):
        lazy = f"{label}: lazy (this tree)"
        for peer in ("eager peer", args.rev):
            if peer is None:
                continue
            other = f"{label}: {peer}"
            print(f"{other} / lazy: wall {min(col(other, 0)) / min(col(lazy, 0)):.1f}× best over best, "
                  f"{statistics.median(col(other, 0)) / statistics.median(col(lazy, 0)):.1f}× median over "
                  f"median; CPU {statistics.median(col(other, 1)) / statistics.median(col(lazy, 1)):.1f}×; "
                  f"memory {statistics.median(col(other, 2)):.0f} → {statistics.median(col(lazy, 2)):.0f} MiB")


if __name__ == "__main__":
    main()
