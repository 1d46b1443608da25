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
import typer.core


class OneLineErrors(typer.core.TyperGroup):
    """The app's command group: a command-line parsing error (an option that is not an integer, a missing or unknown
    option) is printed as one line, ``error: <option>: <problem>``, with exit status 2, like every other input
    error of zeroloss (typer would draw a multi-line box)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001
        import sys

        click = _click()
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `zeroloss` alone: the help, as typer prints it
                exc.show()
            else:
                typer.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _click():
    """The click typer parses with: its vendored copy (typer ≥ 0.26) or the click package."""
    try:
        from typer import _click as click
    except ImportError:  # an older typer: it uses the click package
        import click
    return click


def one_line(exc: Exception) -> str:
    """``<option>: <problem>`` on one line for a click error (the option as the user typed it where known)."""
    click = _click()
    param = getattr(exc, "param", None)
    name = None
    if param is not None:
        name = param.opts[0] if getattr(param, "opts", None) else param.human_readable_name
    elif getattr(exc, "option_name", None):
        name = exc.option_name
    text = exc.format_message() if isinstance(exc, click.exceptions.ClickException) else str(exc)
    if name:
        text = text.replace(f"Invalid value for '{name}': ", "").replace(f"Invalid value for {name!r}: ", "")
    text = " ".join(text.split())
    return f"{name}: {text}" if name else text


app = typer.Typer(
    cls=OneLineErrors,
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
