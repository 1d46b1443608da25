"""The experiment protocol: an experiment is data plus three functions (docs/architecture.md).

An :class:`Experiment` has run specs per scale (``tiny`` for CI, ``paper`` for the real thing), a ``run_batch``
that turns a list of run specs into results, ``plot(df)`` and ``claims(df)``. The sweep machinery
(:mod:`zeroloss.sweep`) expands, hashes, batches, executes, stores and resumes; experiments never touch files.

Batching: runs whose :attr:`Experiment.batch_key` agree (by default: equal specs apart from ``seed`` and
``lr``) may be handed to ``run_batch`` together, so that seeds and step sizes of one shape train as one ensemble.

A claim (:class:`Claim`) is a measured quantity, a threshold with its provenance (:class:`Provenance`) and a
verdict that can go either way: PASS, FAIL, or INCONCLUSIVE when the runs cannot decide (docs/architecture.md).

Examples:
    >>> from zeroloss.papers.base import Claim
    >>> Claim("du2019.linear_rate", "per-step contraction ≤ 1 − ηλ₀/2", 0.91, "≤ 0.95", True).passed
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Spec = dict[str, Any]

#: Keys that never split a batch: runs differing only in these train together as one ensemble.
ENSEMBLE_KEYS = ("seed", "lr")


#: The three verdicts a claim can reach. INCONCLUSIVE: the evidence does not decide (for example, the claim rests on
#: runs that hit their step budget before reaching their target: *censored* runs); its ``reason`` says why.
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)
#: Where a claim's threshold comes from, and how far it can be trusted as the paper's own statement:
#: ``theorem`` (a theorem's constant, rate or inequality, in the theorem's own range), ``remark`` (a remark or
#: conjecture of the paper, not proved there), ``paper`` (a paper's figure, table or text), ``derived`` (derived
#: here from the paper's definitions, e.g. the linearised dynamics; docs/theory.md gives the derivation),
#: ``code`` (the authors' official code), ``third-party`` (a text that is not the paper), ``lab`` (a choice made
#: here, whose ``source`` gives the reason).
PROVENANCE_KINDS = ("theorem", "remark", "paper", "derived", "code", "third-party", "lab")
_PROVENANCE_LABELS = {"theorem": "theorem", "remark": "paper's remark", "paper": "paper", "derived": "derived",
                      "code": "official code", "third-party": "third-party text", "lab": "lab choice"}


@dataclass(frozen=True)
class Provenance:
    """Where a claim's threshold comes from.

    Args:
        kind: one of :data:`PROVENANCE_KINDS`: ``"theorem"``, ``"remark"``, ``"paper"``, ``"derived"``,
            ``"code"``, ``"third-party"`` or ``"lab"`` (a choice made here).
        source: the exact place (``"Du et al. 2019, Thm 4.1: L(k) ≤ (1 − ηλ₀/2)^k L(0)"``) or, for a lab
            choice, the reason for the number.

    Examples:
        >>> str(Provenance("lab", "2× fewer steps: fixed before running, a margin over seed noise"))
        'lab choice: 2× fewer steps: fixed before running, a margin over seed noise'
    """

    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in PROVENANCE_KINDS:
            raise ValueError(f"provenance kind: must be one of {', '.join(PROVENANCE_KINDS)}, got {self.kind!r}")
        if not self.source.strip():
            raise ValueError("provenance source: must say where the threshold comes from")

    def __str__(self) -> str:
        label = _PROVENANCE_LABELS[self.kind]
        return f"{label}: {self.source}"


@dataclass(frozen=True)
class Claim:
    """A machine-checked statement: what was measured, the threshold it is held to, and a verdict.

    Args:
        experiment: the experiment's registry name.
        claim: the statement in words, e.g. "loss decays geometrically at rate ≤ 1 − ηλ₀/2".
        measured: the measured value (number or short text).
        expected: the prediction or threshold, as text (e.g. "≤ 0.95", "-0.5 ± 0.15").
        verdict: ``"PASS"``, ``"FAIL"`` or ``"INCONCLUSIVE"`` (a bool is read as PASS / FAIL).
        details: optional context (tolerance and why, sample sizes).
        provenance: where the threshold comes from (:class:`Provenance`).
        reason: why the verdict is INCONCLUSIVE (required then), e.g. "3 of 4 widths censored at 3000 steps".

    Examples:
        >>> c = Claim("du2019.kernel", "per-step contraction ≤ 1 − ηλ₀/2", 0.91, "≤ 0.95", True,
        ...           provenance=Provenance("theorem", "Du et al. 2019, Thm 4.1"))
        >>> c.verdict, c.passed
        ('PASS', True)
    """

    experiment: str
    claim: str
    measured: Any
    expected: str
    verdict: str | bool
    details: str = ""
    provenance: Provenance | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        verdict = self.verdict
        if isinstance(verdict, (bool, np.bool_)):
            verdict = PASS if verdict else FAIL
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: must be one of {', '.join(VERDICTS)} or a bool, got {self.verdict!r}")
        if verdict == INCONCLUSIVE and not self.reason.strip():
            raise ValueError("reason: an INCONCLUSIVE claim must say why")
        object.__setattr__(self, "verdict", verdict)

    @property
    def passed(self) -> bool:
        """True for a PASS (False for FAIL and INCONCLUSIVE)."""
        return self.verdict == PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numbers become floats, other measured values strings; provenance as text)."""
        out = asdict(self)
        measured = self.measured
        if hasattr(measured, "item"):
            measured = measured.item()
        if not isinstance(measured, (int, float, str, bool, type(None))):
            measured = json.dumps(measured, default=str)
        out["measured"] = measured
        out["passed"] = self.passed
        out["provenance"] = str(self.provenance) if self.provenance is not None else ""
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


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported when a figure is drawn: a worker process that only trains
    never pays for matplotlib (~0.45 s of its start-up, measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def one_row_per_run(df: pd.DataFrame, key: str | list[str] = "run_id") -> pd.DataFrame:
    """One row per run — its spec and summary columns — from a sweep's tidy frame (one row per step and metric).

    Args:
        df: tidy frame as :func:`zeroloss.load` returns it (``step``, ``metric``, ``value`` and per-run columns).
        key: the column(s) that identify a run (``run_id`` in stored sweeps).

    Examples:
        >>> tidy = pd.DataFrame({"run_id": ["a", "a", "b"], "step": [0, 1, 0], "metric": "loss",
        ...                      "value": [1.0, 0.5, 2.0], "width": [64, 64, 128]})
        >>> one_row_per_run(tidy)
          run_id  width
        0      a     64
        1      b    128
    """
    cols = [c for c in df.columns if c not in ("step", "metric", "value")]
    return df[cols].drop_duplicates(key).reset_index(drop=True)


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
        estimate_seconds: optional cost model, ``spec -> seconds`` one run takes on the machine it was calibrated
            on (amortised over its batch when runs train together); ``zeroloss reproduce --dry-run`` sums it over
            the runs still to do. Its constants are measured timings, stored beside the experiment.
        validate_spec: optional ``spec -> None`` that raises :class:`~zeroloss.errors.ZerolossInputError` for a run
            spec the per-key checks cannot judge alone (keys one architecture needs, values that only fail
            together); :func:`zeroloss.sweep.checks.validate_runs` calls it before anything is written.
        version: raised by hand only for a change that zeroloss's own code does not show (a data file, a
            dependency's behaviour); code changes give a new result version by themselves
            (:func:`zeroloss.sweep.versions.result_version`).
    """

    name: str
    paper: str
    description: str
    specs: dict[str, list[Spec]]
    run_batch: Callable[..., list[RunOutput]]
    plot: Callable[[pd.DataFrame], dict[str, Any]]
    claims: Callable[[pd.DataFrame], list[Claim]]
    batch_key: Callable[[Spec], str] = field(default=default_batch_key)
    estimate_seconds: Callable[[Spec], float] | None = None
    validate_spec: Callable[[Spec], None] | None = None
    version: int = 1


#: name → Experiment. Paper modules add themselves with :func:`register`.
REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`REGISTRY` (a name may be registered once) and return it."""
    if experiment.name in REGISTRY and REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    REGISTRY[experiment.name] = experiment
    return experiment
