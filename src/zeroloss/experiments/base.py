"""The experiment protocol: an experiment is data plus three functions (DESIGN "Key ideas").

An :class:`Experiment` has run specs per scale (``tiny`` for CI, ``paper`` for the real thing), a ``run_batch``
that turns a list of run specs into results, ``plot(df)`` and ``claims(df)``. The sweep machinery
(:mod:`zeroloss.sweep`) expands, hashes, batches, executes, stores and resumes; experiments never touch files.

Batching: runs whose :attr:`Experiment.batch_key` agree (by default: equal specs apart from ``seed`` and
``lr``) may be handed to ``run_batch`` together, so that seeds and step sizes of one shape train as one ensemble.

Example:
    >>> from zeroloss.experiments.base import Claim
    >>> Claim("du2019.linear_rate", "per-step contraction ≤ 1 − ηλ₀/2", 0.91, "≤ 0.95", True).passed
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

Spec = dict[str, Any]

#: Keys that never split a batch: runs differing only in these train together as one ensemble.
ENSEMBLE_KEYS = ("seed", "lr")


@dataclass(frozen=True)
class Claim:
    """A machine-checked statement: what was measured, what was predicted (or the threshold), pass/fail.

    Args:
        experiment: the experiment's registry name.
        claim: the statement in words, e.g. "loss decays geometrically at rate ≤ 1 − ηλ₀/2".
        measured: the measured value (number or short text).
        expected: the prediction or threshold, as text (e.g. "≤ 0.95", "-0.5 ± 0.15").
        passed: whether the measurement satisfies the prediction.
        details: optional context (tolerance and why, sample sizes).
    """

    experiment: str
    claim: str
    measured: Any
    expected: str
    passed: bool
    details: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numbers become floats, other measured values strings)."""
        out = asdict(self)
        measured = self.measured
        if hasattr(measured, "item"):
            measured = measured.item()
        if not isinstance(measured, (int, float, str, bool, type(None))):
            measured = json.dumps(measured, default=str)
        out["measured"] = measured
        out["passed"] = bool(self.passed)
        return out


@dataclass(frozen=True)
class RunOutput:
    """What one run produces: a tidy metrics table and a one-row summary.

    Args:
        metrics: tidy DataFrame, columns at least ``step``, ``metric``, ``value`` (``member`` dropped: one run
            is one member).
        summary: flat dict of scalars (final loss, diverged, steps, seconds, …).
    """

    metrics: pd.DataFrame
    summary: dict[str, Any]


def default_batch_key(spec: Spec) -> str:
    """Canonical JSON of the spec without :data:`ENSEMBLE_KEYS`: equal keys may share one ensemble."""
    reduced = {k: v for k, v in spec.items() if k not in ENSEMBLE_KEYS}
    return json.dumps(reduced, sort_keys=True, default=str)


@dataclass(frozen=True)
class Experiment:
    """One paper claim's experiment.

    Args:
        name: registry name, ``"<paper>.<short name>"`` (e.g. ``"marion2023.eps_sweep"``).
        paper: ``"du2019"``, ``"chatterjee2022"`` or ``"marion2023"``.
        description: one paragraph for the report.
        specs: scale name (``"tiny"``, ``"paper"``) → list of run specs (JSON-serialisable dicts).
        run_batch: ``(specs, device) -> list[RunOutput]`` in the same order as ``specs``; the specs of one
            call share a batch key. A member that diverges is reported in its summary, never raised.
        plot: ``(df) -> dict[str, matplotlib.figure.Figure]`` from the sweep's tidy DataFrame (see
            :func:`zeroloss.load`): one row per (run, step, metric) plus the spec and summary columns.
        claims: ``(df) -> list[Claim]``.
        batch_key: which specs may run together (default :func:`default_batch_key`).
    """

    name: str
    paper: str
    description: str
    specs: dict[str, list[Spec]]
    run_batch: Callable[..., list[RunOutput]]
    plot: Callable[[pd.DataFrame], dict[str, Any]]
    claims: Callable[[pd.DataFrame], list[Claim]]
    batch_key: Callable[[Spec], str] = field(default=default_batch_key)


#: name → Experiment. Paper modules add themselves with :func:`register`.
REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`REGISTRY` (a name may be registered once) and return it."""
    if experiment.name in REGISTRY and REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    REGISTRY[experiment.name] = experiment
    return experiment
