"""Intra-op thread count of a run: fixed for the run, restored afterwards, recorded in env.json.

A run's numbers must not depend on how many threads the process happens to have: with MKL/OpenMP, a matmul or a
reduction split over two threads sums in another order than on one, the difference is round-off, and near an edge of
stability round-off grows (Du et al.'s FC H = 4, m = 32 after 300 steps: loss ratio 8.9e-3 with one thread, 1.97e-2
with two). So every batch of a sweep runs under :func:`intra_op_threads` with the executor's ``threads`` setting,
:data:`DEFAULT_THREADS` unless the caller gives another, and ``env.json`` records the count the run used.

Why one thread by default: the runs of the tiny and medium scales are small matmuls (n ≤ 64 samples, width ≤ 4096),
and a sweep runs many of them. Measured on a shared 2-core machine under load (load average ≈ 12; FC H = 3,
n = 8, 4 members, float64; ms per GD step with 1 / 2 threads): m = 64: 0.8 / 34; m = 256: 4.8 / 105;
m = 1024: 94 / 301; m = 2048: 377 / 913 — a second thread never paid, and cost up to 40× when the cores were busy
(OpenMP threads waiting for a core). To use more cores, run more runs at once (``--executor process``). On a GPU
the count only affects the host side. A quiet many-core machine may do better with more threads per run
(``threads=``); its results then equal the one-thread results to round-off, not bit for bit.

Examples:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with intra_op_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from zeroloss.errors import ZerolossInputError

#: Intra-op threads per run when the sweep does not say (see the module docstring for the measurements).
DEFAULT_THREADS = 1


def check_threads(threads: int | None, field: str = "--threads") -> int:
    """A positive integer thread count (``None`` → :data:`DEFAULT_THREADS`); anything else is an input error."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ZerolossInputError(f"{field}: must be a positive integer (intra-op threads per run), got {threads!r}")
    return threads


@contextmanager
def intra_op_threads(threads: int | None, field: str = "threads") -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)`` and restore the previous count afterwards.

    The one thread helper of zeroloss: sweeps, :func:`zeroloss.diagnose` and the two-timescale GD all use it.

    Args:
        threads: intra-op threads for the block (a positive integer), or ``None`` to leave torch's setting.
        field: the name a bad value is reported under.

    Yields:
        the thread count in force inside the block (what env.json records).
    """
    import torch

    if threads is None:
        yield torch.get_num_threads()
        return
    threads = check_threads(threads, field)
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
