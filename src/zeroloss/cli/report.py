"""``zeroloss report DIR``: rebuild claims.json and report.html from stored results (nothing is re-run)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zeroloss.cli.common import cli_errors, echo_err
from zeroloss.errors import ZerolossInputError


@cli_errors
def report(
    directory: Path = typer.Argument(..., help="a `zeroloss reproduce` or `zeroloss sweep` output directory"),
    json_out: bool = typer.Option(False, "--json", help="print claims.json's content on stdout"),
) -> None:
    """Re-evaluate claims and figures of stored runs; write DIR/claims.json and DIR/report.html."""
    from zeroloss.report import claims_table, write_report
    from zeroloss.store import sweep_dirs

    if not directory.is_dir():
        raise ZerolossInputError(f"DIR: not a directory, got {str(directory)!r}")
    if not sweep_dirs(directory):
        raise ZerolossInputError(f"DIR: holds no sweep (no runs/ or sweep.json), got {str(directory)!r}")
    result = write_report(directory)
    if json_out:
        typer.echo(json.dumps(result.claims, default=str))
    else:
        typer.echo(claims_table(result.claims))
        typer.echo(f"report: {result.html_path}")
    for err in result.errors:
        echo_err(f"error: {err}")
    if result.errors:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
