"""Shared CLI conventions: one-line errors with exit status 2, device/dtype parsing, atomic output files.

Every command body is wrapped in :func:`cli_errors`, so a :class:`~zeroloss.errors.ZerolossInputError` (or a
pydantic validation error) becomes ``error: <field>: <what is accepted>, got <value>`` on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from zeroloss.errors import ZerolossInputError, choice

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_inputs(path: Path, normalise: bool) -> torch.Tensor:
    """Read ``--inputs`` (a numeric .npy array) and validate it for Du et al.'s nets (unit norm, no parallel rows)."""
    import numpy as np

    from zeroloss.data import validate_inputs

    if not path.exists():
        raise ZerolossInputError(f"--inputs: no such file {str(path)!r}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ZerolossInputError(f"--inputs: not a readable .npy array ({exc})") from None
    if array.dtype.kind not in "fiu":
        raise ZerolossInputError(f"--inputs: must be a numeric array, got dtype {array.dtype}")
    return validate_inputs(array, unit_norm=True, normalise=normalise, name="--inputs")


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


class AtomicDirectory:
    """Build a result directory under a temporary name and rename it into place only when complete.

    ``with AtomicDirectory(out, overwrite=False) as tmp: write files into tmp`` — on success ``tmp`` becomes
    ``out``; on any error the temporary directory is removed and ``out`` is untouched, so a failed or killed command
    never leaves a half-written result directory.
    """

    def __init__(self, out: Path | str, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        if self.out.exists() and not overwrite:
            raise ZerolossInputError(f"--out: {self.out} already exists; choose a new directory or pass --overwrite")
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        import shutil

        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
