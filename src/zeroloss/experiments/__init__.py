"""Experiments: one module per paper, each registering :class:`~zeroloss.experiments.base.Experiment` records.

Importing this package is cheap: it holds the protocol (:mod:`~zeroloss.experiments.base`) and the registry
(:mod:`~zeroloss.experiments.registry`). The paper modules (which import matplotlib, scipy, numba) are imported
on the first lookup, by :func:`~zeroloss.experiments.registry.load_experiments`.
"""

from __future__ import annotations

from zeroloss.experiments.base import REGISTRY, Claim, Experiment, RunOutput, register
from zeroloss.experiments.registry import (
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
