"""``reproduce(paper)``: run (or resume) every registered experiment of a paper, then claims and the report.

Layout of ``out``: one sweep directory per experiment (``out/<experiment>/runs/<id>/...``), ``reproduce.json``
(paper, scale, experiments, command), ``claims.json`` and ``report.html`` (see :mod:`zeroloss.report`).

Scales are per experiment (the keys of its ``specs``): a scale is accepted when at least one of the paper's
experiments defines it, and the experiments that do not are skipped with a note (``--scale medium`` exists for
du2019 only). :func:`zeroloss.sweep.dry_run.dry_run` lists what a call would run, with an estimated time.

Examples:
    >>> from zeroloss.sweep.reproduce import SCALES
    >>> SCALES
    ('tiny', 'medium', 'paper')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.registry import experiments_for_paper
from zeroloss.store import REPRODUCE_MANIFEST, atomic_write_bytes, json_bytes, python_command, sweep_lock
from zeroloss.store.ownership import check_folder, claim_folder, clean_folder, removed_on_failure
from zeroloss.sweep.executors import make_executor
from zeroloss.sweep.runner import SweepResult, resolve_device, run_sweep

if TYPE_CHECKING:  # zeroloss.papers (every paper module) and the report import matplotlib: lazily
    from zeroloss.papers.base import Experiment
    from zeroloss.report import Report

#: The conventional scale names, smallest first (for listings); an experiment may define any subset, or others.
SCALES = ("tiny", "medium", "paper")


@dataclass
class ReproduceResult:
    """The sweeps run and the report written; ``skipped`` names the experiments without the asked scale."""

    sweeps: list[SweepResult]
    report: Report
    skipped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Runs that raised and claims/plots that raised: anything that is an error, not a finding."""
        errs = [f"{s.experiment}: run {rid} failed: {msg.strip().splitlines()[-1]}"
                for s in self.sweeps for rid, msg in s.failed.items()]
        return errs + self.report.errors


def scales_of(experiments: list[Experiment]) -> list[str]:
    """The scales any of ``experiments`` defines, conventional ones (:data:`SCALES`) first, in their order."""
    names = {scale for e in experiments for scale, specs in e.specs.items() if specs}
    return [s for s in SCALES if s in names] + sorted(names - set(SCALES))


def plan(paper: str, scale: str) -> tuple[list[Experiment], list[Experiment]]:
    """(experiments to run at ``scale``, experiments of the paper without it), checked before anything is written.

    Raises:
        ZerolossInputError: unknown paper, or no experiment of the paper defines ``scale`` (the message lists the
            scales that exist).
    """
    experiments = experiments_for_paper(paper)
    chosen = [e for e in experiments if e.specs.get(scale)]
    if not chosen:
        whose = "the registered experiments" if paper == "all" else f"{paper}'s experiments"
        raise ZerolossInputError(f"--scale: one of {', '.join(scales_of(experiments))} (the scales {whose} "
                                 f"define), got {scale!r}")
    return chosen, [e for e in experiments if not e.specs.get(scale)]


def skip_note(experiment: Experiment, scale: str) -> str:
    """One line saying that ``experiment`` is skipped at ``scale`` and which scales it has."""
    return (f"{experiment.name} has no {scale!r} scale (it has: {', '.join(scales_of([experiment]))}): "
            "skipped")


def reproduce(paper: str, scale: str = "tiny", out: Path | str = "zeroloss-results", executor: str = "auto",
              device: str = "auto", workers: int | None = None, address: str | None = None,
              progress: bool = True, keep_stale: bool = False) -> ReproduceResult:
    """Run (or resume) each registered experiment of ``paper`` (``"all"`` for every paper) and write the report.

    Args:
        paper: ``du2019``, ``chatterjee2022``, ``marion2023`` or ``all``.
        scale: ``tiny`` (CI, minutes on a laptop CPU), ``medium`` or ``paper`` — any scale one of the paper's
            experiments defines; the others are skipped (``result.skipped``).
        out: results folder: missing, empty, or one that zeroloss reproduce made (anything else is refused
            before a file is written); re-running into it resumes (finished runs are skipped).
        executor: ``auto`` (one worker process per usable core, :func:`zeroloss.sweep.executors.resolve_executor`),
            ``local``, ``process`` or ``ray``; ``workers`` and ``address`` as in :func:`zeroloss.sweep.run_sweep`.
        device: ``auto``, ``cpu`` or ``cuda``.
        keep_stale: keep finished runs computed by other code (:func:`zeroloss.sweep.run_sweep`).

    Returns:
        :class:`ReproduceResult`; ``result.report.claims`` holds the claims (a failed claim is a finding).

    Examples:
        >>> import zeroloss
        >>> callable(zeroloss.reproduce)
        True
    """
    from zeroloss.report import write_report

    experiments, skipped = plan(paper, scale)
    device = resolve_device(device)
    out = Path(out)
    check_folder(out, "reproduce")  # every folder checked before anything is written
    for e in experiments:
        check_folder(out / e.name, "sweep")
    command = python_command()
    sweeps = []
    with removed_on_failure(out), make_executor(executor, workers, device, address) as ex:
        claim_folder(out, "reproduce")
        # one writer at a time: a second reproduce into this folder, whatever its paper, is refused at once
        with sweep_lock(out):
            clean_folder(out, "reproduce")
            previous = _previous_experiments(out)
            for e in experiments:
                sweeps.append(run_sweep(e, e.specs[scale], out / e.name, executor=ex, device=device,
                                        progress=progress, manifest={"scale": scale, "paper": e.paper},
                                        keep_stale=keep_stale))
            # the report covers every experiment reproduced into this folder, earlier papers included
            names = [*previous, *(e.name for e in experiments if e.name not in previous)]
            papers = sorted({paper, *_previous_papers(out)} - {""})
            meta = {"paper": paper if papers == [paper] else "+".join(papers), "papers": papers, "scale": scale,
                    "experiments": names, "command": command}
            atomic_write_bytes(out / REPRODUCE_MANIFEST, json_bytes(meta))
            report = write_report(out, names)
    return ReproduceResult(sweeps, report, [skip_note(e, scale) for e in skipped])


def _previous_meta(out: Path) -> dict:
    import json

    try:
        meta = json.loads((out / REPRODUCE_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _previous_experiments(out: Path) -> list[str]:
    """The experiments an earlier reproduce recorded in ``out`` whose sweep folders are still there."""
    names = _previous_meta(out).get("experiments")
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and "/" not in n and (out / n / "sweep.json").is_file()]


def _previous_papers(out: Path) -> list[str]:
    meta = _previous_meta(out)
    papers = meta.get("papers", [meta.get("paper")])
    return [p for p in papers if isinstance(p, str)] if isinstance(papers, list) else []
