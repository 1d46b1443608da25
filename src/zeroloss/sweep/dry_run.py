"""``reproduce --dry-run``: what ``zeroloss reproduce PAPER --scale SCALE --out DIR`` would run, and how long it would
take, without writing anything.

Per experiment: the number of runs (how many are already finished in ``DIR``, how many are left), the settings
(each spec key with its values) and the estimated seconds of the runs left. The estimate comes from the
experiment's cost model (:attr:`~zeroloss.papers.base.Experiment.estimate_seconds`: measured per-unit costs,
stored beside the experiment). When ``DIR`` already holds finished runs of the experiment, their measured times
(``env.json``: ``batch_seconds / batch_size``) calibrate it to this machine: the model is scaled by Σ measured /
Σ modelled over those runs; without a cost model the mean measured run time is used. The estimate is for the local
executor, one run after another; a process pool of k workers takes about 1/k of it.

Examples:
    >>> format_seconds(42), format_seconds(5400), format_seconds(None)
    ('42 s', '1.5 h', 'unknown')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroloss.store import RunStore
from zeroloss.sweep.reproduce import plan, skip_note
from zeroloss.sweep.runner import unique_runs

if TYPE_CHECKING:
    from zeroloss.papers.base import Experiment, Spec


@dataclass
class ExperimentPlan:
    """One experiment's part of a dry run.

    Attributes:
        experiment: its registry name.
        runs: distinct runs at this scale; ``done`` of them finished in the output folder, ``pending`` left.
        settings: spec key → a short text of its values (``"0.001, 1e-05"``, ``"0–9"``, ``"16 values 0.01–0.45"``).
        seconds: estimated seconds for the pending runs (None: no cost model and nothing measured).
        basis: where the estimate comes from.
    """

    experiment: str
    runs: int
    done: int
    pending: int
    settings: dict[str, str]
    seconds: float | None
    basis: str


@dataclass
class DryRun:
    """What a reproduction would run: per-experiment plans, skipped experiments and the total estimate."""

    paper: str
    scale: str
    out: str
    experiments: list[ExperimentPlan]
    skipped: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        """Total estimated seconds (None when an experiment has no estimate)."""
        values = [p.seconds for p in self.experiments if p.pending]
        return None if any(v is None for v in values) else float(sum(values))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}

    def format(self) -> str:
        """A plain-text listing (what the CLI prints)."""
        lines = [f"dry run: zeroloss reproduce {self.paper} --scale {self.scale} --out {self.out} (nothing written)"]
        for p in self.experiments:
            lines.append(f"{p.experiment}: {p.runs} runs, {p.done} done, {p.pending} to run — "
                         f"{format_seconds(p.seconds) if p.pending else 'nothing to run'}"
                         f"{f' ({p.basis})' if p.pending else ''}")
            lines += [f"    {key}: {values}" for key, values in p.settings.items()]
        lines += [f"note: {note}" for note in self.skipped]
        lines.append(f"estimated total: {format_seconds(self.seconds)} (local executor, one run after another)")
        return "\n".join(lines)


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3.5 min``, ``1.5 h`` or ``unknown``."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def _values_text(values: list[Any]) -> str:
    distinct = sorted({json.dumps(v, sort_keys=True, default=str) for v in values})
    parsed = [json.loads(v) for v in distinct]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed)
    if numbers:
        parsed.sort()
        if all(isinstance(v, int) for v in parsed) and parsed == list(range(parsed[0], parsed[-1] + 1)) \
                and len(parsed) > 2:
            return f"{parsed[0]}–{parsed[-1]}"
        if len(parsed) > 4:
            return f"{len(parsed)} values {_number(parsed[0])}–{_number(parsed[-1])}"
        return ", ".join(_number(v) for v in parsed)
    text = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in parsed)
    return text if len(text) <= 80 else f"{len(parsed)} values"


def settings_of(specs: Sequence[Spec]) -> dict[str, str]:
    """Each key of ``specs`` with a short text of its values, keys in first-appearance order."""
    keys: dict[str, None] = {}
    for spec in specs:
        keys.update(dict.fromkeys(spec))
    return {k: _values_text([s[k] for s in specs if k in s]) for k in keys}


def measured_seconds(sweep_dir: Path, done: set[str]) -> dict[str, tuple[dict, float]]:
    """run id → (spec, measured seconds) of the finished runs in ``sweep_dir`` that recorded their time."""
    out = {}
    for rid in done:
        run = sweep_dir / "runs" / rid
        try:
            env = json.loads((run / "env.json").read_text())
            spec = json.loads((run / "spec.json").read_text())["spec"]
            out[rid] = (spec, float(env["batch_seconds"]) / max(int(env.get("batch_size", 1)), 1))
        except (OSError, KeyError, ValueError, TypeError):
            continue
    return out


def experiment_plan(experiment: Experiment, specs: Sequence[Spec], sweep_dir: Path) -> ExperimentPlan:
    """The dry-run row of one experiment whose sweep directory would be ``sweep_dir``."""
    runs = unique_runs(experiment.name, specs)
    done_ids = RunStore(sweep_dir).done_ids()
    pending = [spec for rid, spec in runs if rid not in done_ids]
    measured = measured_seconds(sweep_dir, done_ids)
    model = experiment.estimate_seconds
    if model is not None:
        seconds = float(sum(model(s) for s in pending))
        modelled = sum(model(spec) for spec, _ in measured.values())
        if measured and modelled > 0:
            factor = sum(t for _, t in measured.values()) / modelled
            seconds *= factor
            basis = f"cost model × {factor:.2g}, calibrated on {len(measured)} finished runs in the folder"
        else:
            basis = "cost model"
    elif measured:
        seconds = len(pending) * sum(t for _, t in measured.values()) / len(measured)
        basis = f"mean of {len(measured)} finished runs in the folder"
    else:
        seconds, basis = None, "no cost model"
    return ExperimentPlan(experiment.name, len(runs), len(runs) - len(pending), len(pending),
                          settings_of([s for _, s in runs]), seconds, basis)


def dry_run(paper: str, scale: str = "tiny", out: Path | str = "zeroloss-results") -> DryRun:
    """What :func:`zeroloss.reproduce` would run for ``paper`` at ``scale`` into ``out``; writes nothing.

    Args:
        paper: ``du2019``, ``chatterjee2022``, ``marion2023`` or ``all``.
        scale: any scale one of the paper's experiments defines.
        out: the results folder a real run would use (read only, to count finished runs and calibrate).

    Returns:
        :class:`DryRun` (``.format()`` is the listing the CLI prints).
    """
    experiments, skipped = plan(paper, scale)
    out = Path(out)
    rows = [experiment_plan(e, e.specs[scale], out / e.name) for e in experiments]
    return DryRun(paper, scale, str(out), rows, [skip_note(e, scale) for e in skipped])
