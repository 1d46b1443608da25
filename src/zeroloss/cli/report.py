"""``zeroloss report DIR``: rebuild claims.json and report.html from stored results (nothing is re-run)."""

from __future__ import annotations

from pathlib import Path

import typer

from zeroloss.cli.common import cli_errors, print_claims
from zeroloss.errors import ZerolossInputError


@cli_errors
def report(
    directory: Path = typer.Argument(..., help="a `zeroloss reproduce` or `zeroloss sweep` output directory"),
    json_out: bool = typer.Option(False, "--json", help="print claims.json's content on stdout"),
) -> None:
    """Re-evaluate claims and figures of stored runs; write DIR/claims.json and DIR/report.html."""
    from zeroloss.report import write_report
    from zeroloss.store import sweep_dirs

    if not directory.is_dir():
        raise ZerolossInputError(f"DIR: not a directory, got {str(directory)!r}")
    if not sweep_dirs(directory):
        raise ZerolossInputError(f"DIR: holds no sweep (no runs/ or sweep.json), got {str(directory)!r}")
    result = write_report(directory)
    print_claims(result.claims, result.html_path, result.errors, json_out)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
