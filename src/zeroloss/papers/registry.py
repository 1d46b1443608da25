"""Finding experiments by name: the paper modules, plus user modules named in ``ZEROLOSS_EXTRA_EXPERIMENTS``.

This is the one place that knows where experiments come from; the CLI, sweeps, reproductions and the report
all look experiments up here.

``ZEROLOSS_EXTRA_EXPERIMENTS`` is a comma-separated list of importable module names; each is imported (and so
registers its experiments) before a lookup. Use it to sweep your own experiment with ``zeroloss sweep`` or
``zeroloss reproduce``; worker processes inherit the variable, so the ``process`` executor sees them too.

Examples:
    >>> "du2019" in PAPERS
    True
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.base import REGISTRY

if TYPE_CHECKING:
    from zeroloss.papers.base import Experiment

#: Environment variable: comma-separated modules that register extra experiments.
EXTRA_ENV = "ZEROLOSS_EXTRA_EXPERIMENTS"
PAPERS = ("du2019", "chatterjee2022", "marion2023")
#: The paper modules, imported on the first lookup (they import matplotlib, scipy and numba).
PAPER_MODULES = tuple(f"zeroloss.papers.{paper}.experiments" for paper in PAPERS)


def load_experiments() -> dict[str, Experiment]:
    """Import the paper modules and the extra modules; return the registry (name → experiment)."""
    for module in PAPER_MODULES:
        importlib.import_module(module)
    for module in filter(None, (m.strip() for m in os.environ.get(EXTRA_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ZerolossInputError(f"{EXTRA_ENV}: cannot import {module!r} ({exc})") from None
    return REGISTRY


def get_experiment(name: str, module: str | None = None) -> Experiment:
    """The registered experiment ``name`` (importing ``module`` first when given, as worker processes do)."""
    if module:
        importlib.import_module(module)
    registry = load_experiments()
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise ZerolossInputError(f"experiment: must be a registered experiment ({known}), got {name!r}")
    return registry[name]


def experiments_for_paper(paper: str) -> list[Experiment]:
    """The experiments of ``paper`` (or every paper for ``"all"``); a clear error when none is registered."""
    registry = load_experiments()
    papers = sorted({e.paper for e in registry.values()})
    if paper != "all" and paper not in PAPERS and paper not in papers:
        raise ZerolossInputError(f"paper: must be one of {', '.join((*PAPERS, 'all'))}, got {paper!r}")
    chosen = [e for e in registry.values() if paper in ("all", e.paper)]
    if not chosen:
        listing = "; ".join(f"{p}: {', '.join(e.name for e in registry.values() if e.paper == p)}"
                            for p in papers) or "none"
        raise ZerolossInputError(f"paper: no experiments registered for {paper!r}; registered: {listing}")
    return chosen
