"""Kernels of whole data sets: tiled, resumable jobs on local processes or a Ray cluster (issue 22).

- :mod:`~zeroloss.tiles.plan` — the tile plan (B × B tiles; the upper triangle of a symmetric kernel).
- :mod:`~zeroloss.tiles.kinds` — the kernel kinds: a registry of functions (X1, X2, spec) → (n1, n2) tile
  (``gram`` of a lab net, ``limit`` kernels, ``entk`` of a user's model; one entry adds a kind).
- :mod:`~zeroloss.tiles.models` — a user's model carried to the workers (file and factory, or a pickled module).
- :mod:`~zeroloss.tiles.task` — one tile task and the worker function (compute, write the chunk, checksum).
- :mod:`~zeroloss.tiles.store` — the job folder: zarr v3 array (one chunk per tile), records, fingerprints.
- :mod:`~zeroloss.tiles.job` — :func:`kernel_job`, the driver (budget, dry run, resume, executors, progress).
- :mod:`~zeroloss.tiles.reader` — :func:`open_kernel` → :class:`StoredKernel` (lazy or in memory).
- :mod:`~zeroloss.tiles.solve` — :func:`solve` ((K + ρI)x = b, direct or streaming CG) for every kernel consumer.

Needs ``zarr>=3`` (a core dependency). The command line: ``zeroloss kernel ... --out K.zarr`` (docs/kernel-jobs.md).
"""

from zeroloss.tiles.job import DryRun, KernelJobResult, estimate_job, kernel_job
from zeroloss.tiles.kinds import KINDS, KernelSpec, register_kind
from zeroloss.tiles.plan import DEFAULT_BLOCK, Tile, TilePlan
from zeroloss.tiles.reader import StoredKernel, open_kernel
from zeroloss.tiles.solve import DEFAULT_TOL, Solution, solve

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_TOL",
    "KINDS",
    "DryRun",
    "KernelJobResult",
    "KernelSpec",
    "Solution",
    "StoredKernel",
    "Tile",
    "TilePlan",
    "estimate_job",
    "kernel_job",
    "open_kernel",
    "register_kind",
    "solve",
]
