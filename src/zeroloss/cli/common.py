"""Shared CLI conventions: one-line errors with exit status 2, device/dtype parsing, output file paths.

Every command body is wrapped in :func:`cli_errors`, so a :class:`~zeroloss.errors.ZerolossInputError` (or a
pydantic validation error) becomes ``error: <field>: <what is accepted>, got <value>`` on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from zeroloss.errors import ZerolossInputError, choice, seed_value

if TYPE_CHECKING:
    import torch

F = TypeVar("F", bound=Callable[..., Any])

#: The training dtypes the CLI accepts (names of torch dtypes: torch is imported only when a command runs).
DTYPES = ("float32", "float64")


def fail(message: str) -> None:
    """Print ``error: message`` on one line to stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def cli_errors(fn: F) -> F:
    """Turn input errors raised by ``fn`` into a one-line message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZerolossInputError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # pydantic errors: name the field, keep one line
            if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
                first = exc.errors()[0]  # type: ignore[attr-defined]
                loc = ".".join(str(part) for part in first.get("loc", ())) or "spec"
                fail(f"{loc}: {first.get('msg', 'invalid value')}")
            raise

    return wrapper  # type: ignore[return-value]


def parse_device(device: str) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cpu``; ``cuda`` (an error if CUDA is absent)."""
    from zeroloss.devices import resolve_device

    choice(device, "--device", ("auto", "cpu", "cuda"))
    return resolve_device(device, "--device")


def parse_dtype(dtype: str) -> torch.dtype:
    """``float32`` or ``float64``."""
    import torch

    choice(dtype, "--dtype", DTYPES)
    return getattr(torch, dtype)


def parse_int_list(text: str, field: str) -> list[int]:
    """Parse ``"64,64"`` into ``[64, 64]``; every entry a positive integer."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ZerolossInputError(f"{field}: must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ZerolossInputError(f"{field}: must be comma-separated positive integers, got {text!r}")
    return values


def prepare_output_file(path: Path, field: str = "--out", overwrite: bool = False) -> Path:
    """Check an output *file* path before anything is computed, and make its missing parent folders.

    Refused with a one-line error (nothing created): a path that is a folder, an existing file without
    ``overwrite`` (zeroloss replaces only what it may), a parent that is a file or not writable, a missing parent
    that would have to be created at the file-system root. Missing parents below an existing folder are created
    (with the user's umask), and temporaries ``.NAME.*.tmp`` of this file left by a killed zeroloss are removed.
    Write the file afterwards with :func:`zeroloss.store.atomic_write_bytes` inside
    :func:`zeroloss.store.output_errors`.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> prepare_output_file(folder / "new" / "G.npy") == folder / "new" / "G.npy", (folder / "new").is_dir()
        (True, True)
    """
    from zeroloss.store.atomic import ensure_parent, remove_stale_temporaries

    path = Path(path)
    if path.is_dir():
        raise ZerolossInputError(f"{field}: {path} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ZerolossInputError(f"{field}: {path} already exists; choose a new file name or pass --overwrite")
    ensure_parent(path, field)
    remove_stale_temporaries(path.parent, path.name)
    return path


def check_seed(seed: int, count: int = 1, field: str = "--seed") -> int:
    """A seed of member 0 whose members ``seed + k`` (k < ``count``) all fit the generators (0 ≤ seed + k < 2⁶³).

    Examples:
        >>> check_seed(7, 4)
        7
    """
    return seed_value(seed, field, members=count)


def load_inputs(path: Path, normalise: bool, budget: object = None) -> torch.Tensor:
    """Read ``--inputs`` (a numeric .npy array, or the array ``X`` of an .npz; sized from its header against
    ``budget`` before it is read: :mod:`zeroloss.cli.files`) and validate it for Du et al.'s nets (unit norm, no
    parallel rows)."""
    from zeroloss.cli.files import read_array
    from zeroloss.data import validate_inputs

    array = read_array(path, "--inputs", budget=budget)
    return validate_inputs(array, unit_norm=True, normalise=normalise, name="--inputs")


def input_shape(path: Path, field: str = "--inputs") -> tuple[tuple[int, ...], int] | None:
    """(shape, itemsize) of the array :func:`load_inputs` would read, from the file's header alone (None when an
    .npz holds no single array to read: :func:`load_inputs` then refuses it). A FIFO, a device, a missing or
    unreadable file is refused here, before anything is read."""
    from zeroloss.cli.files import headers

    found = headers(path, field)
    entry = found.get("") or found.get("X") or (next(iter(found.values())) if len(found) == 1 else None)
    return None if entry is None else (entry[0], entry[1].itemsize)


def print_claims(claims: list[dict], html_path: Path, errors: list[str], json_out: bool) -> None:
    """Print a report's claims (table or JSON) and its errors; exit 1 when anything raised (claims may fail)."""
    import json

    from zeroloss.report import claims_table

    if json_out:
        typer.echo(json.dumps(claims, default=str))
    else:
        typer.echo(claims_table(claims))
        typer.echo(f"report: {html_path}")
    for err in errors:
        echo_err(f"error: {err}")
    if errors:
        raise typer.Exit(code=1)


def echo_err(message: str) -> None:
    """Print to stderr (progress and notes; stdout stays machine-readable where --json is asked)."""
    print(message, file=sys.stderr)


def import_extra_experiments() -> None:
    """Import the modules named in ``ZEROLOSS_EXTRA_EXPERIMENTS`` (the registry imports them again, a no-op) so that
    a bad value or a plugin that fails on import is one line naming the variable, exit status 2.

    Each entry must be a module name (``package.module``); a plugin that raises anything, or calls ``sys.exit``,
    while it is imported is reported with its exception's first line.
    """
    import importlib
    import os

    env = "ZEROLOSS_EXTRA_EXPERIMENTS"
    for module in filter(None, (m.strip() for m in os.environ.get(env, "").split(","))):
        if not all(part.isidentifier() for part in module.split(".")):
            raise ZerolossInputError(f"{env}: must be comma-separated module names (like mypackage.experiments), "
                                     f"got {module!r}")
        try:
            importlib.import_module(module)
        except ZerolossInputError:
            raise
        except (Exception, SystemExit) as exc:  # the plugin's own code
            text = (str(exc).strip().splitlines() or [""])[0]
            raise ZerolossInputError(f"{env}: importing {module!r} failed: {type(exc).__name__}"
                                     f"{': ' + text if text else ''}") from None
