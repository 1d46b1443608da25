"""``zeroloss sweep FILE.yaml``: a user's own sweep over a registered experiment's run function.

The file is validated (unknown keys and malformed values rejected with the key named, exit status 2), sized
against the memory budget (``--max-bytes``; :mod:`zeroloss.budget`), expanded, and every run's values are checked
(:mod:`zeroloss.sweep.checks`) before anything is written; ``--dry-run`` prints the runs and their count; otherwise
the runs go to ``--out DIR/runs/<id>/`` and re-running the same command resumes. ``--max-bytes`` bounds the
expansion of the runs here; the runs themselves follow ``ZEROLOSS_MAX_BYTES`` or their default budget.
``zeroloss sweep --example EXPERIMENT`` prints a commented sweep file for a registered experiment (its tiny runs) to
start from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zeroloss.cli.common import cli_errors, echo_err, import_extra_experiments
from zeroloss.errors import ZerolossInputError

if TYPE_CHECKING:
    from zeroloss.papers.base import Experiment, Spec
    from zeroloss.sweep.spec import SweepSpec


def check_run_keys(sweep: SweepSpec, experiment: Experiment, runs: list[Spec]) -> list[str]:
    """Missing keys are an error; keys no registered run of ``experiment`` has come back as warnings.

    A run spec must set every key that all of the experiment's registered runs set (otherwise ``run_batch``
    would fail deep inside). A key that none of them sets may be an optional key the experiment reads with a
    default, or a typo: it is passed on (and is part of the run id) with a warning naming it.
    """
    registered = [s for specs in experiment.specs.values() for s in specs]
    if not registered:
        return []
    known = set().union(*(s.keys() for s in registered))
    required = set.intersection(*(set(s.keys()) for s in registered))
    for spec in runs:
        missing = sorted(required - set(spec))
        if missing:
            raise ZerolossInputError(f"base: missing {', '.join(missing)} (every {experiment.name} run sets them)")
    warnings = []
    for where, keys in (("base", sweep.base), ("grid", sweep.grid), ("zip", sweep.zip)):
        for key in keys:
            if key.split(".")[0] not in known:
                warnings.append(f"{where}.{key}: not a key of {experiment.name}'s registered runs "
                                f"(known: {', '.join(sorted(known))}); passed to its run function as is")
    return warnings


@cli_errors
def sweep(
    file: Path | None = typer.Argument(None, show_default=False,
                                       help="sweep file (YAML): experiment, base, grid, zip, seeds; "
                                            "required unless --example"),
    set_: list[str] = typer.Option([], "--set", help="override KEY=VALUE, dotted key (base.steps=50); repeatable"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the expanded runs and their count; run nothing"),
    out: Path | None = typer.Option(None, show_default=False,
                                    help="sweep directory (runs go to OUT/runs/<id>/); required unless --dry-run "
                                         "or --example"),
    executor: str = typer.Option("local", help="local | process | ray"),
    workers: int | None = typer.Option(None, help="process pool size / Ray CPUs"),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local instance)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output on stdout"),
    example: str | None = typer.Option(None, "--example", metavar="EXPERIMENT", show_default=False,
                                       help="print a commented sweep file for EXPERIMENT (see `zeroloss "
                                            "experiments`) that runs as is, and exit"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget for expanding the runs, e.g. "
                                         "8GiB (default: half the available memory, or ZEROLOSS_MAX_BYTES)"),
    keep_stale: bool = typer.Option(False, "--keep-stale", help="keep finished runs computed by other code (another "
                                    "result version) instead of running them again; said in the report"),
) -> None:
    """Run (or resume) a sweep of a registered experiment; finished runs are skipped.

    Start from `zeroloss sweep --example EXPERIMENT > my.yaml`; `zeroloss experiments` lists the experiments.
    """
    from zeroloss.budget import FLAG, resolve_budget
    from zeroloss.papers.registry import get_experiment
    from zeroloss.store import check_folder
    from zeroloss.sweep.checks import validate_runs
    from zeroloss.sweep.executors import check_executor_options, make_executor
    from zeroloss.sweep.runner import resolve_device, run_sweep, unique_runs
    from zeroloss.sweep.spec import load_sweep_file

    import_extra_experiments()
    if example is not None:
        from zeroloss.papers.registry import load_experiments
        from zeroloss.sweep.example import example_sweep

        registry = load_experiments()
        if example not in registry:
            raise ZerolossInputError(f"--example: must be a registered experiment (see `zeroloss experiments`: "
                                     f"{', '.join(sorted(registry))}), got {example!r}")
        typer.echo(example_sweep(registry[example])[1], nl=False)
        return
    if file is None:
        raise ZerolossInputError("FILE: a sweep file is needed (or --example EXPERIMENT to print one), got nothing")
    check_executor_options(executor, workers, address)
    budget = resolve_budget(max_bytes, FLAG)
    spec = load_sweep_file(file, set_)
    experiment = get_experiment(spec.name)
    spec.check_size(budget, FLAG)  # before anything is expanded or hashed
    runs = spec.expand(budget)
    for warning in check_run_keys(spec, experiment, runs):
        echo_err(f"warning: {warning}")
    validate_runs(experiment, runs)
    if dry_run:
        unique = unique_runs(experiment.name, runs)
        if json_out:
            typer.echo(json.dumps({"experiment": experiment.name, "count": len(unique),
                                   "runs": [{"run_id": rid, "spec": s} for rid, s in unique]}))
        else:
            for rid, s in unique:
                typer.echo(f"{rid}  {json.dumps(s, sort_keys=True)}")
            typer.echo(f"{len(unique)} runs of {experiment.name}")
        return
    if out is None:
        raise ZerolossInputError("--out: a sweep directory is needed unless --dry-run, got nothing")
    check_folder(out, "sweep")  # a foreign --out is refused before workers (or Ray) start
    device = resolve_device(device)
    with make_executor(executor, workers, device, address) as ex:
        result = run_sweep(experiment, runs, out, executor=ex, device=device, keep_stale=keep_stale,
                           manifest={"sweep_file": str(file), "overrides": list(set_)})
    line = (f"{len(result.run_ids)} runs of {experiment.name}: {result.ran} ran, {result.skipped} already done, "
            f"{len(result.diverged)} diverged, {len(result.failed)} failed → {out}")
    if json_out:
        typer.echo(json.dumps({"experiment": experiment.name, "out": str(out), "runs": len(result.run_ids),
                               "ran": result.ran, "skipped": result.skipped, "diverged": result.diverged,
                               "failed": sorted(result.failed), "stale_recomputed": result.stale_recomputed,
                               "stale_kept": result.stale_kept}))
    else:
        typer.echo(line)
    for note in result.reuse_notes():
        echo_err(note)
    for rid, msg in result.failed.items():
        echo_err(f"error: run {rid} failed: {msg.strip().splitlines()[-1]}")
    if result.failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
