"""Reading a user's array files (``.npy``, ``.npz``) without surprises: sized before read, refused in one line.

Every array file the CLI reads goes through :func:`read_array` or :func:`read_archive`, which

1. refuse anything but a readable regular file (a FIFO or a device would block the read forever, a folder is a
   mistake) — before opening it;
2. read the shape and dtype from the ``.npy`` header (for an ``.npz``, from each member's header: a few hundred
   bytes are decompressed, never the data), check the dtype (numbers only: pickled Python objects are never
   loaded) and compare the array's size, once loaded and converted to float64, with the memory budget — before
   any data is read or decompressed;
3. load the data (``allow_pickle=False``) and convert it to native byte order, and ``longdouble`` / ``float16`` to
   float64 (a value beyond float64's range becomes inf and is then refused as non-finite by the caller's checks).

Errors are :class:`~zeroloss.errors.ZerolossInputError` naming the option; numpy's own advice ("load it unsafely
using allow_pickle") is never passed on.

Examples:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "X.npy"
    >>> np.save(path, np.arange(6.0).reshape(3, 2).astype(">f8"))  # big-endian
    >>> X = read_array(path, "--inputs")
    >>> X.dtype.isnative, X.shape
    (True, (3, 2))
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from zeroloss.errors import ZerolossInputError

if TYPE_CHECKING:
    import numpy as np

#: Array kinds accepted: float, signed and unsigned integers (bools, complex, text, objects are refused).
NUMERIC_KINDS = "fiu"
#: The first bytes of a zip archive (an ``.npz``).
ZIP_MAGIC = b"PK\x03\x04"


def regular_file(path: Path | str, field: str) -> Path:
    """``path`` after checking it is an existing, readable regular file (never opened here).

    A FIFO, socket or device is refused: reading one blocks until another process writes to it.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ZerolossInputError(f"{field}: no such file {str(path)!r}") from None
    except OSError as exc:
        raise ZerolossInputError(f"{field}: cannot read {str(path)!r} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ZerolossInputError(f"{field}: {str(path)!r} is a folder; give a .npy file")
    if not stat.S_ISREG(info.st_mode):
        raise ZerolossInputError(f"{field}: {str(path)!r} is not a regular file (a FIFO, socket or device, which "
                                 "would block the read); give a regular file")
    if not os.access(path, os.R_OK):
        raise ZerolossInputError(f"{field}: cannot read {str(path)!r}: permission denied")
    return path


def _read_header(handle, field: str, where: str) -> tuple[tuple[int, ...], np.dtype]:
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, SyntaxError) as exc:
        raise ZerolossInputError(f"{field}: {where} is not a readable .npy array ({_plain(exc)})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _plain(exc: BaseException) -> str:
    """numpy's message on one line, without its advice to load pickled data unsafely."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "allow_pickle" in text or "pickle" in text.lower():
        return "it holds pickled Python objects, which zeroloss never loads; save a numeric array with numpy.save"
    return text


def check_dtype(dtype: np.dtype, field: str) -> None:
    """Refuse anything but real numbers (pickled objects, text, booleans, complex numbers)."""
    if dtype.hasobject:
        raise ZerolossInputError(f"{field}: holds pickled Python objects, which zeroloss never loads; save a numeric "
                                 "array with numpy.save")
    if dtype.kind not in NUMERIC_KINDS:
        raise ZerolossInputError(f"{field}: must be a numeric array (floats or integers), got dtype {dtype}")


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a zip archive (an ``.npz``), from its first bytes."""
    with open(path, "rb") as handle:
        return handle.read(4) == ZIP_MAGIC


def headers(path: Path | str, field: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in a ``.npy`` (key ``""``) or ``.npz`` file, from the headers alone.

    An archive member's header is read through the decompressor: a few hundred bytes, whatever the data's size.
    """
    path = regular_file(path, field)
    try:
        archive = is_archive(path)
    except OSError as exc:
        raise ZerolossInputError(f"{field}: cannot read {str(path)!r} ({exc.strerror or exc})") from None
    if not archive:
        with open(path, "rb") as handle:
            shape, dtype = _read_header(handle, field, repr(str(path)))
            data_at = handle.tell()
        need = math.prod(shape) * dtype.itemsize
        if not dtype.hasobject and data_at + need > path.stat().st_size:
            raise ZerolossInputError(f"{field}: {str(path)!r} is truncated: its header states shape {shape} "
                                     f"({need:,} bytes of data) but the file is {path.stat().st_size:,} bytes")
        return {"": (shape, dtype)}
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as member:
                    out[info.filename[:-4]] = _read_header(member, field, f"{info.filename} in {str(path)!r}")
    except ZerolossInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, zlib.error,
            NotImplementedError) as exc:
        raise ZerolossInputError(f"{field}: not a readable .npz archive ({_plain(exc)})") from None
    return out


def _check_size(shape: tuple[int, ...], dtype: np.dtype, field: str, budget: object, what: str) -> None:
    from zeroloss.budget import check_memory

    entries = math.prod(shape)  # per entry: the array as read plus its float64 copy
    check_memory(entries * (dtype.itemsize + 8), budget, field=field,
                 what=f"{what} of shape {shape} ({dtype}, then float64)", hint="use a smaller array")


def native(array: np.ndarray, field: str) -> np.ndarray:
    """``array`` in native byte order, with ``longdouble`` and ``float16`` as float64."""
    import numpy as np

    if array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        with np.errstate(over="ignore"):
            return array.astype(np.float64)
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def read_array(path: Path | str, field: str, *, budget: object = None, key: str = "X") -> np.ndarray:
    """One numeric array from a ``.npy`` file, or from an ``.npz`` archive (its array ``key``, or its only array),
    checked as the module docstring says; native byte order, float64 for long/half floats."""
    import numpy as np

    found = headers(path, field)
    if "" in found:
        name = ""
    elif key in found:
        name = key
    elif len(found) == 1:
        name = next(iter(found))
    else:
        raise ZerolossInputError(f"{field}: an .npz archive must hold one array or an array named {key!r}, got "
                                 f"{sorted(found) or 'none'}")
    shape, dtype = found[name]
    check_dtype(dtype, field)
    _check_size(shape, dtype, field, budget, "an array")
    try:
        if name:
            with np.load(path, allow_pickle=False) as archive:
                array = archive[name]
        else:
            array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise ZerolossInputError(f"{field}: not a readable array ({_plain(exc)})") from None
    return native(array, field)


def read_archive(path: Path | str, field: str, *, budget: object = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, each checked from its header (all sizes together against the budget)
    before anything is decompressed."""
    import numpy as np

    found = headers(path, field)
    if "" in found:
        raise ZerolossInputError(f"{field}: must be an .npz archive (numpy.savez), got a .npy array")
    for name, (_, dtype) in found.items():
        check_dtype(dtype, f"{field}: {name}")
    total = sum(math.prod(shape) * (dtype.itemsize + 8) for shape, dtype in found.values())
    from zeroloss.budget import check_memory

    check_memory(total, budget, field=field, what=f"the arrays of {Path(path).name} "
                 f"({', '.join(f'{k} {s}' for k, (s, _) in found.items())}, as float64)", hint="use smaller arrays")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: native(archive[name], field) for name in found}
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise ZerolossInputError(f"{field}: not a readable .npz archive ({_plain(exc)})") from None
