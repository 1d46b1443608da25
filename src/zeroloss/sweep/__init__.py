"""Sweeps: YAML specs → run specs → batches on an executor → run directories; ``reproduce`` a whole paper.

* :mod:`~zeroloss.sweep.spec` — sweep files (``base``/``grid``/``zip``/``seeds``, ``--set`` overrides).
* :mod:`~zeroloss.sweep.runner` — :func:`run_sweep`: skip done runs, batch by the experiment's batch key,
  execute, write each run as it finishes (resumable after a kill at any moment).
* :mod:`~zeroloss.sweep.executors` — ``local``, ``process`` (spawn pool), ``ray``.
* :mod:`~zeroloss.sweep.reproduce` — :func:`reproduce`: every experiment of a paper, claims, HTML report.
* :mod:`~zeroloss.papers.registry` — experiments by name (plus ``ZEROLOSS_EXTRA_EXPERIMENTS`` modules).
"""

from __future__ import annotations

import importlib

#: Where each name is defined; imported on first use (PEP 562), so that a worker process importing
#: ``zeroloss.sweep.executors`` does not pay for pandas, the experiments registry and the YAML loader.
_SOURCES = {
    **dict.fromkeys(("EXTRA_ENV", "experiments_for_paper", "get_experiment", "load_experiments"),
                    "zeroloss.papers.registry"),
    **dict.fromkeys(("EXECUTORS", "Executor", "make_executor"), "zeroloss.sweep.executors"),
    **dict.fromkeys(("SCALES", "ReproduceResult", "reproduce"), "zeroloss.sweep.reproduce"),
    **dict.fromkeys(("SweepResult", "run_sweep"), "zeroloss.sweep.runner"),
    **dict.fromkeys(("SweepSpec", "load_sweep_file", "parse_sweep", "parse_sweep_text"), "zeroloss.sweep.spec"),
}


def __getattr__(name: str) -> object:
    if name not in _SOURCES:
        raise AttributeError(f"module 'zeroloss.sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


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
