"""Errors raised by a user's own code (a model's ``forward``, a factory, a plugin) reported as theirs, in one line.

zeroloss calls code it did not write: the model given to :func:`zeroloss.entk` or :func:`zeroloss.diagnose`, the
factory of ``zeroloss diagnose --model FILE.py:FACTORY``. When that code raises — an ``AssertionError`` of its own,
an ``AttributeError``, a shape error from a torch operation it called — or calls ``sys.exit``, the failure is the
model's, not zeroloss's: :func:`user_code` turns it into a :class:`~zeroloss.errors.ZerolossInputError` naming
the field (``model``, ``--model``), the exception type and its first line. An exception raised inside zeroloss
or torch alone (no frame of the user's code in its traceback) is a zeroloss bug and propagates unchanged.

Examples:
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def forward(self, x):
    ...         assert x.shape[1] == 3, "expects 3 features"
    ...         return x
    >>> try:
    ...     with user_code("model", "the model's forward"):
    ...         Net()(torch.zeros(2, 5))
    ... except ZerolossInputError as exc:
    ...     print(exc)
    model: the model's forward raised AssertionError: expects 3 features
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType

from zeroloss.errors import ZerolossInputError


def _library_roots() -> tuple[str, ...]:
    """Folders whose code is not the user's: zeroloss, torch and the standard library."""
    import torch

    import zeroloss

    roots = {os.path.dirname(os.path.abspath(zeroloss.__file__)), os.path.dirname(os.path.abspath(torch.__file__))}
    for key in ("stdlib", "platstdlib"):
        with contextlib.suppress(KeyError):
            roots.add(os.path.abspath(sysconfig.get_paths()[key]))
    return tuple(sorted(root + os.sep for root in roots))


def _frames(tb: TracebackType | None) -> Iterator[str]:
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename
        tb = tb.tb_next


def raised_in_user_code(exc: BaseException, skip: int = 0) -> bool:
    """Whether the traceback of ``exc`` (less its first ``skip`` frames) passes through a frame outside zeroloss,
    torch and the standard library (code typed at a prompt, ``<stdin>`` or ``<doctest ...>``, counts as the user's)."""
    roots = _library_roots()
    for filename in list(_frames(exc.__traceback__))[skip:]:
        if filename.startswith("<frozen"):  # the interpreter's own modules
            continue
        if not os.path.abspath(filename).startswith(roots):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def user_code(field: str, what: str) -> Iterator[None]:
    """Report an exception (or ``sys.exit``) of the user's code run in the block as a one-line input error.

    Args:
        field: the option or argument that names the user's code (``model``, ``--model``).
        what: what was running, e.g. ``"the model's forward"``.
    """
    try:
        yield
    except ZerolossInputError:
        raise
    except SystemExit as exc:
        raise ZerolossInputError(f"{field}: {what} called sys.exit({exc.code!r}); a model must return, not exit the "
                                 "process") from None
    except Exception as exc:
        if raised_in_user_code(exc, skip=1):  # the first frame holds the `with` block: the caller's, not below it
            raise ZerolossInputError(f"{field}: {what} raised {_first_line(exc)}") from exc
        raise


def user_module_name(path: Path) -> str:
    """The module name a user's file is imported under: derived from its absolute path, the same in every process
    (a worker that unpickles one of its objects imports the file under the name the driver used)."""
    return "zeroloss_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def import_user_file(path: Path, field: str = "--model", shown: str | None = None,
                     reuse: bool = False) -> ModuleType:
    """Import the user's Python file ``path`` as :func:`user_module_name`, writing nothing beside it.

    The module is registered in ``sys.modules`` (dataclasses and pickling in the user's file look it up there);
    no ``__pycache__`` is written into the user's folder (``sys.dont_write_bytecode`` while it runs). An exception
    or ``sys.exit`` raised while the file runs is a one-line :class:`~zeroloss.errors.ZerolossInputError` naming
    ``field``.

    Args:
        path: the ``.py`` file.
        field: the option that named the file, for errors.
        shown: how errors show the file (default: ``path``).
        reuse: return the module already imported from ``path`` instead of running the file again.
    """
    module_name = user_module_name(path)
    if reuse and module_name in sys.modules:
        return sys.modules[module_name]
    shown = str(path) if shown is None else shown
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ZerolossInputError(f"{field}: cannot import {shown!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code (sys.exit included): one line, naming the option
        sys.modules.pop(module_name, None)
        raise ZerolossInputError(f"{field}: importing {shown} failed: {_first_line(exc)}") from exc
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def finite_inputs(x: object, field: str) -> None:
    """Refuse a floating tensor or array ``x`` with NaN or inf entries (a kernel of them would be NaN); anything
    else (None, integer token ids, what the callee refuses itself) passes."""
    import torch

    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.device.type != "meta" \
            and not bool(torch.isfinite(x).all()):
        raise ZerolossInputError(f"{field}: contains NaN or inf entries")
