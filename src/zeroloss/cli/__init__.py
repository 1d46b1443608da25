"""The ``zeroloss`` command line (typer). Each command lives in its own module and registers itself here.

Commands: ``train`` and ``gram`` (foundation), ``kernel`` (infinite-width kernels), ``certify`` (Chatterjee),
``two-timescale`` (Marion & Berthier), ``sweep``, ``reproduce`` and ``report`` (experiments). A module that
is not present yet is simply absent from the app.
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
    "zeroloss.cli.sweep",
    "zeroloss.cli.reproduce",
    "zeroloss.cli.report",
    "zeroloss.cli.diagnose",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point."""
    app()
