"""The package's one atomic writer, zeroloss's temporary names, and the permissions of what zeroloss creates.

Every file zeroloss writes goes through :func:`atomic_write_bytes`: the bytes go to a temporary file beside the
target, ``.<name>.<8 hex>.tmp``, which is flushed, fsynced and renamed over the target, so neither a reader nor a
crash ever sees a half-written file. Whole result folders are built the same way (see
:func:`zeroloss.store.ownership.building_folder`).

Permissions: files are created with mode 0o666 and folders with 0o777, both reduced by the process umask — by
the kernel, exactly as for any file the user creates (``mkstemp``/``mkdtemp`` would make them private, 0600/0700,
so a colleague on the same machine could not read the results).

Stale temporaries: the process writing a temporary holds an ``flock`` on it until the rename (the kernel releases
it when the process dies, even by ``kill -9``), so the next zeroloss start can tell a dead writer's temporary from
a live one (:func:`remove_stale_temporaries`). Only names of zeroloss's own pattern are ever considered.

Missing parent folders of an output are created only below an existing folder other than the file-system root
(:func:`ensure_parent`): ``--out /nonexistent/G.npy`` is refused, ``--out results/G.npy`` creates ``results``.

Examples:
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.json"
    >>> atomic_write_bytes(target, b"{}")
    >>> target.read_bytes(), oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    (b'{}', True)
    >>> is_temporary_of(".a.json.0f3c9a1e.tmp", "a.json"), is_temporary_of("a.json.tmp", "a.json")
    (True, False)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zeroloss.errors import ZerolossInputError

#: The random part of a temporary name: 8 characters (new names use lowercase hex; earlier zeroloss versions used
#: ``tempfile``'s [a-z0-9_] alphabet, which this also matches, so their leftovers are recognised too).
TOKEN_PATTERN = "[a-z0-9_]{8}"
FILE_MODE = 0o666  # reduced by the umask when the file is created
DIR_MODE = 0o777
#: A temporary younger than this is never removed, even when its lock is free: its writer takes the lock right after
#: creating it, and a cleaner that tested the lock in between would make the writer's own lock attempt fail.
STALE_AFTER_SECONDS = 1.0


def current_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored, which is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(name: str) -> str:
    """``.<name>.<8 hex>.tmp``: the name of a temporary that will be renamed to ``name``."""
    return f".{name}.{secrets.token_hex(4)}.tmp"


def is_temporary_of(entry: str, name: str) -> bool:
    """Whether ``entry`` is a zeroloss temporary for ``name`` (``.<name>.<8 chars>.tmp``)."""
    return re.fullmatch(rf"\.{re.escape(name)}\.{TOKEN_PATTERN}\.tmp", entry) is not None


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; a temporary is then never "stale"
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_held(fd: int) -> None:
    """Hold an flock on ``fd`` for as long as it is open (nothing on systems without flock)."""
    _try_lock(fd)


def atomic_write_bytes(path: Path | str, data: bytes | memoryview, *, drop_from_cache: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a temporary beside it (umask permissions), fsync, rename.

    The parent folder must exist (see :func:`ensure_parent`). On any error the temporary is removed and ``path``
    is untouched.

    Args:
        path: the file to create or replace.
        data: its new content (any buffer: a memoryview is written in place, not copied).
        drop_from_cache: after the fsync, drop the file's pages from the page cache (``POSIX_FADV_DONTNEED``,
            where the system has it): for large files that this process will not read back, so that the next
            write reuses those pages instead of taking new ones.
    """
    path = Path(path)
    while True:
        tmp = path.parent / temporary_name(path.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
            break
        except FileExistsError:  # pragma: no cover - 2⁻³² per attempt
            continue
    try:
        _lock_held(fd)
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            if drop_from_cache and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/torch scalars, tuples, paths (dict keys become strings)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def json_bytes(value: Any) -> bytes:
    """Indented, key-sorted JSON text (NaN allowed) with a final newline: how zeroloss stores JSON files."""
    return (json.dumps(to_jsonable(value), indent=1, sort_keys=True, allow_nan=True) + "\n").encode()


def make_folder(path: Path | str) -> None:
    """Create one folder with the user's normal permissions (0o777 reduced by the umask)."""
    os.mkdir(path, DIR_MODE)


@contextlib.contextmanager
def locked_folder(path: Path) -> Iterator[None]:
    """Hold an flock on the folder ``path`` itself (its writer is alive while the lock is held)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _lock_held(fd)
        yield
    finally:
        os.close(fd)


def _is_root(path: Path) -> bool:
    return path == Path(path.anchor)


def ensure_parent(path: Path | str, field: str, create: bool = True) -> None:
    """Check (and create, when ``create``) the missing parent folders of the output ``path``.

    Missing folders are created only below an existing folder that is not the file-system root, so a typo such
    as ``--out /nonexistent/G.npy`` does not create ``/nonexistent``.

    Raises:
        ZerolossInputError: ``"<field>: ..."`` when an ancestor is a file, the first missing folder would sit at
            the root, or the existing ancestor is not writable.
    """
    path = Path(os.path.abspath(path))
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise ZerolossInputError(f"{field}: {parent} is a broken symbolic link")
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise ZerolossInputError(f"{field}: {parent} is a file, not a folder, so {path} cannot be created")
    if missing and _is_root(parent):
        raise ZerolossInputError(f"{field}: {missing[-1]} does not exist and zeroloss creates folders only below "
                                 f"an existing folder other than the root; create it first, got {str(path)!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ZerolossInputError(f"{field}: cannot write into {parent}: permission denied")
    if create:
        for folder in reversed(missing):
            with output_errors(field, folder):
                make_folder(folder)


@contextlib.contextmanager
def output_errors(field: str, path: Path | str) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (permission, read-only or full disk) into a one-line input error."""
    try:
        yield
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        raise ZerolossInputError(f"{field}: cannot write {path}: {exc.strerror or exc}") from None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.ENAMETOOLONG):
            raise ZerolossInputError(f"{field}: cannot write {path}: {exc.strerror}") from None
        raise


def remove_stale_temporaries(folder: Path, name: str,
                             is_ours: Callable[[Path], bool] | None = None) -> list[Path]:
    """Remove the temporaries ``.<name>.<token>.tmp`` in ``folder`` whose writer is dead.

    A temporary file is removed when no process holds its flock; a temporary folder when no process holds its
    flock and ``is_ours(folder)`` proves zeroloss made it (by default: never). A temporary younger than
    :data:`STALE_AFTER_SECONDS` and anything else are left alone.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temporary_of(entry.name, name) or entry.is_symlink():
            continue
        path = Path(entry.path)
        if entry.is_file():
            if _stale(path, os.O_RDONLY):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed.append(path)
        elif entry.is_dir() and is_ours is not None and _stale(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)):
            if is_ours(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _stale(path: Path, flags: int) -> bool:
    """Whether ``path`` is older than :data:`STALE_AFTER_SECONDS` and nobody holds its flock (its writer is gone)."""
    try:
        if time.time() - os.lstat(path).st_mtime < STALE_AFTER_SECONDS:
            return False
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)
