"""Sweeps: YAML specs → run specs → batches on an executor → run directories; ``reproduce`` a whole paper.

* :mod:`~zeroloss.sweep.spec` — sweep files (``base``/``grid``/``zip``/``seeds``, ``--set`` overrides).
* :mod:`~zeroloss.sweep.runner` — :func:`run_sweep`: skip done runs, batch by the experiment's batch key,
  execute, write each run as it finishes (resumable after a kill at any moment).
* :mod:`~zeroloss.sweep.executors` — ``local``, ``process`` (spawn pool), ``ray``.
* :mod:`~zeroloss.sweep.reproduce` — :func:`reproduce`: every experiment of a paper, claims, HTML report.
* :mod:`~zeroloss.papers.registry` — experiments by name (plus ``ZEROLOSS_EXTRA_EXPERIMENTS`` modules).
"""

from __future__ import annotations

from zeroloss.papers.registry import EXTRA_ENV, experiments_for_paper, get_experiment, load_experiments
from zeroloss.sweep.executors import EXECUTORS, Executor, make_executor
from zeroloss.sweep.reproduce import SCALES, ReproduceResult, reproduce
from zeroloss.sweep.runner import SweepResult, run_sweep
from zeroloss.sweep.spec import SweepSpec, load_sweep_file, parse_sweep, parse_sweep_text

__all__ = [
    "EXECUTORS",
    "EXTRA_ENV",
    "SCALES",
    "Executor",
    "ReproduceResult",
    "SweepResult",
    "SweepSpec",
    "experiments_for_paper",
    "get_experiment",
    "load_experiments",
    "load_sweep_file",
    "make_executor",
    "parse_sweep",
    "parse_sweep_text",
    "reproduce",
    "run_sweep",
]
