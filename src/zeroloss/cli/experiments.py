"""``zeroloss experiments``: the registered experiments, their papers and run counts per scale.

The example sweep file that ``zeroloss sweep --example EXPERIMENT`` prints is built by
:func:`zeroloss.sweep.example.example_sweep`.
"""

from __future__ import annotations

import json
import textwrap

import typer

from zeroloss.cli.common import cli_errors


@cli_errors
def experiments(
    json_out: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
    full: bool = typer.Option(False, "--full", help="also print what each experiment does (its description)"),
) -> None:
    """List the registered experiments: name, paper and number of runs per scale (--full: and what each does)."""
    from zeroloss.cli.common import import_extra_experiments
    from zeroloss.papers.registry import load_experiments
    from zeroloss.report.texttable import terminal_width, wrap_table

    import_extra_experiments()

    registry = load_experiments()
    ordered = sorted(registry.values(), key=lambda e: (e.paper, e.name))
    if json_out:
        typer.echo(json.dumps([{"name": e.name, "paper": e.paper, "description": e.description,
                                "scales": {scale: len(s) for scale, s in e.specs.items()}} for e in ordered]))
        return
    header = ("experiment", "paper", "runs per scale")
    rows = [(e.name, e.paper, ", ".join(f"{scale} {len(s)}" for scale, s in e.specs.items())) for e in ordered]
    typer.echo(wrap_table(header, rows))
    if full:  # each description as a paragraph under its name: a column beside long names would be too narrow
        width = terminal_width()
        for e in ordered:
            typer.echo(f"\n{e.name}")
            typer.echo("\n".join(textwrap.wrap(e.description, width, initial_indent="  ", subsequent_indent="  ",
                                                break_long_words=False, break_on_hyphens=False)))
    footer = (f"{len(ordered)} experiments. `zeroloss experiments --full` says what each does; `zeroloss sweep "
              "--example NAME` prints a sweep file for one; `zeroloss reproduce PAPER --scale tiny` runs a paper's "
              "tiny scale.")
    typer.echo("\n".join(textwrap.wrap(footer, terminal_width())))


def register(app: typer.Typer) -> None:
    app.command("experiments")(experiments)
