"""``zeroloss reproduce PAPER``: run (or resume) every registered experiment of a paper; claims and report.

Exit status 0 when everything ran, even if a claim fails (a failed claim is a finding); 1 when a run, a claim
evaluation or a figure raised; 2 on bad input (nothing written). ``--dry-run`` lists the runs and an estimated time
and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zeroloss.cli.common import cli_errors, echo_err, import_extra_experiments, print_claims


@cli_errors
def reproduce(
    paper: str = typer.Argument(..., help="du2019 | chatterjee2022 | marion2023 | all"),
    scale: str = typer.Option("tiny", help="tiny (minutes on a CPU) | medium | paper: any scale the paper's "
                                           "experiments define (the others are skipped, with a note)"),
    executor: str = typer.Option("auto", help="auto (a process per core, or local on one core) | local | process | "
                                              "ray"),
    workers: int | None = typer.Option(None, help="process pool size / Ray CPUs (auto: the usable cores)"),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local instance)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("zeroloss-results"), help="results directory; re-running resumes"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the runs and an estimated time; write nothing"),
    json_out: bool = typer.Option(False, "--json", help="print claims.json's content (with --dry-run: the plan) "
                                                        "on stdout"),
    keep_stale: bool = typer.Option(False, "--keep-stale", help="keep finished runs computed by other code (another "
                                    "result version) instead of running them again; said in the report"),
) -> None:
    """Reproduce a paper's experiments: sweeps, claims.json, report.html, and the claims table."""
    import_extra_experiments()
    if dry_run:
        import json

        from zeroloss.sweep.dry_run import dry_run as plan_runs

        listing = plan_runs(paper, scale=scale, out=out)
        typer.echo(json.dumps(listing.to_dict()) if json_out else listing.format())
        return
    from zeroloss.sweep.executors import check_executor_options, resolve_executor
    from zeroloss.sweep.reproduce import reproduce as run
    from zeroloss.sweep.runner import resolve_device

    check_executor_options(executor, workers, address)
    engine, count = resolve_executor(executor, workers, resolve_device(device))

    result = run(paper, scale=scale, out=out, executor=executor, device=device, workers=workers,
                 address=address, keep_stale=keep_stale)
    echo_err(f"note: ran on {count} worker processes (--executor {engine}, one intra-op thread each)"
             if engine == "process" else f"note: ran in this process (--executor {engine})")
    for note in result.skipped:
        echo_err(f"note: {note}")
    for sweep in result.sweeps:
        for note in sweep.reuse_notes():
            echo_err(note)
    print_claims(result.report.claims, result.report.html_path, result.errors, json_out)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
