"""The papers: one wing each (theory, runs, claims, plots, experiments), above a library that knows no paper.

- :mod:`~zeroloss.papers.du2019`, :mod:`~zeroloss.papers.chatterjee2022`, :mod:`~zeroloss.papers.marion2023`.
- :mod:`~zeroloss.papers.base`: what every experiment is (spec per scale, run, plot, claims; the claim record).
- :mod:`~zeroloss.papers.registry`: where experiments are found by name.

Importing this package is cheap: it holds the protocol and the registry. A wing's ``experiments`` module (which
imports matplotlib, scipy, numba) is imported on the first lookup, by
:func:`~zeroloss.papers.registry.load_experiments`.
"""

from __future__ import annotations

from zeroloss.papers.base import REGISTRY, Claim, Experiment, RunOutput, register
from zeroloss.papers.registry import (
    EXTRA_ENV,
    PAPER_MODULES,
    PAPERS,
    experiments_for_paper,
    get_experiment,
    load_experiments,
)

__all__ = [
    "EXTRA_ENV",
    "PAPERS",
    "PAPER_MODULES",
    "REGISTRY",
    "Claim",
    "Experiment",
    "RunOutput",
    "experiments_for_paper",
    "get_experiment",
    "load_experiments",
    "register",
]
