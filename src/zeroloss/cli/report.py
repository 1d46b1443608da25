"""``zeroloss report DIR``: rebuild claims.json and report.html from stored results (nothing is re-run).

DIR must be a zeroloss sweep or reproduce folder (see :mod:`zeroloss.store.ownership`): a user's own
``report.html`` / ``claims.json`` in any other folder is never overwritten. A stored run that cannot be read is a
one-line error naming it (exit 2).
"""

from __future__ import annotations

from pathlib import Path

import typer

from zeroloss.cli.common import cli_errors, import_extra_experiments, print_claims


@cli_errors
def report(
    directory: Path = typer.Argument(..., help="a `zeroloss reproduce` or `zeroloss sweep` output directory"),
    json_out: bool = typer.Option(False, "--json", help="print claims.json's content on stdout"),
) -> None:
    """Re-evaluate claims and figures of stored runs; write DIR/claims.json and DIR/report.html."""
    import_extra_experiments()
    from zeroloss.report import write_report

    result = write_report(directory, field="DIR")
    print_claims(result.claims, result.html_path, result.errors, json_out)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
