"""Experiments: one module per paper, each registering :class:`~zeroloss.experiments.base.Experiment` records.

Importing this package imports every paper module that exists, so :data:`REGISTRY` lists what is available.
"""

from __future__ import annotations

import importlib

from zeroloss.experiments.base import REGISTRY, Claim, Experiment, RunOutput, register

#: Paper modules; one line each. A module not written yet is simply absent.
PAPER_MODULES = [
    "zeroloss.experiments.du2019",
    "zeroloss.experiments.chatterjee2022",
    "zeroloss.experiments.marion2023",
]

for _module in PAPER_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as exc:  # only a missing paper module is tolerated, not a missing dependency
        if exc.name != _module:
            raise


def experiments_for(paper: str) -> list[Experiment]:
    """The registered experiments of one paper (``"all"`` for every paper), in registration order."""
    return [e for e in REGISTRY.values() if paper in ("all", e.paper)]


__all__ = ["REGISTRY", "Claim", "Experiment", "RunOutput", "register", "experiments_for"]
