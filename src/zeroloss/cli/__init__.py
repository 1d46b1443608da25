"""The ``zeroloss`` command line (typer). Each command lives in its own module and registers itself here.

Commands: ``train`` and ``gram`` (foundation), ``kernel`` (infinite-width kernels), ``certify`` (Chatterjee),
``two-timescale`` (Marion & Berthier), ``experiments``, ``sweep``, ``reproduce`` and ``report`` (experiments);
``zeroloss --version``. A module that is not present yet is simply absent from the app.

Start-up rule: this package and every command module import only typer, the standard library and the light
``zeroloss.errors`` / ``zeroloss.version`` at top level; torch, numpy, pandas, matplotlib, scipy, numba, pydantic and
the experiments are imported inside the command bodies. Typer needs only the commands' signatures (plain defaults,
never a torch object) to build ``--help``, so ``zeroloss --help`` and ``zeroloss COMMAND --help`` answer without
importing torch (``tests/test_cli_startup.py`` checks it; ``benchmarks/bench_cli_startup.py`` times it).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="zeroloss",
    help="zeroloss: a laboratory for the convergence theory of gradient descent on neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, each with a ``register(app)`` function. Add one line per new command module.
COMMAND_MODULES = [
    "zeroloss.cli.train",
    "zeroloss.cli.gram",
    "zeroloss.cli.kernel",
    "zeroloss.cli.certify",
    "zeroloss.cli.two_timescale",
    "zeroloss.cli.experiments",
    "zeroloss.cli.sweep",
    "zeroloss.cli.reproduce",
    "zeroloss.cli.report",
    "zeroloss.cli.diagnose",
]


def _print_version(value: bool) -> None:
    if value:
        from zeroloss.version import describe_version

        typer.echo(describe_version())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the zeroloss version (and git commit of a source checkout) and exit"),
) -> None:
    """zeroloss: a laboratory for the convergence theory of gradient descent on neural networks."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point."""
    app()
