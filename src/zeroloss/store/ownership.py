"""Which folders and entries are zeroloss's: the marker, earlier versions' folders, safe creation and replacement.

The ownership rule — zeroloss writes into, deletes or replaces only what it can prove it made:

- A results folder that zeroloss creates carries a marker file, ``.zeroloss`` (JSON ``{"zeroloss_folder": 1,
  "kind": ..., "zeroloss": <version>}``), written before anything else. Its kind names the command that owns the
  folder: ``sweep`` (also each experiment folder of a reproduction), ``reproduce``, ``train``, ``two-timescale``,
  ``diagnose``, ``kernel`` (a tiled kernel job's zarr folder, :mod:`zeroloss.tiles`).
- zeroloss writes into a folder only when it is missing, empty, or marked with the same kind. A non-empty folder
  without the marker, and a folder of another kind, are refused with a one-line error before anything is written.
- Inside its folders zeroloss deletes only its own names: temporaries ``.<name>.<8 chars>.tmp`` whose writer is
  gone (see :mod:`zeroloss.store.atomic`), run folders ``runs/<12 hex>`` without ``_SUCCESS``, and run
  temporaries. Whatever else a user put there stays.
- ``--overwrite`` (``train``, ``two-timescale``, ``diagnose``) replaces a folder only when it is marked with the
  same kind and holds nothing but zeroloss's entries; otherwise it is refused, naming the first entry that is not
  zeroloss's.
- Folders written by earlier versions carry no marker; they are *adopted* (recognised, and marked on the next
  write) when their content proves them zeroloss's: a valid ``sweep.json`` (experiment name and run ids), a valid
  ``reproduce.json`` (paper, scale, experiments), a ``runs/`` holding nothing but run folders (at least one with
  spec.json and _SUCCESS), or exactly the files an earlier ``train`` or ``two-timescale`` wrote, with its
  ``spec.json``. Nothing else is adopted: TensorBoard's ``runs/`` folder, for instance, is not.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = claim_folder(root / "sweep1", "sweep")
    >>> folder_kind(root / "sweep1")
    'sweep'
    >>> (root / "mine").mkdir(); _ = (root / "mine" / "notes.txt").write_text("keep")
    >>> try:
    ...     claim_folder(root / "mine", "sweep")
    ... except ZerolossInputError as exc:
    ...     print("non-empty folder that zeroloss did not create" in str(exc), (root / "mine" / MARKER).exists())
    True False
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from zeroloss.errors import ZerolossInputError
from zeroloss.store.atomic import (
    TOKEN_PATTERN,
    atomic_write_bytes,
    ensure_parent,
    is_temporary_of,
    json_bytes,
    locked_folder,
    make_folder,
    output_errors,
    remove_stale_temporaries,
    temporary_name,
)

MARKER = ".zeroloss"
MARKER_FORMAT = 1
#: The kinds of results folder, by the command that owns them.
KINDS = ("sweep", "reproduce", "train", "two-timescale", "diagnose", "kernel")
#: Kinds whose folder holds ``runs/`` and a manifest (what :func:`zeroloss.load` reads).
RUN_KINDS = ("sweep", "train", "two-timescale", "diagnose")
MANIFEST = "sweep.json"
REPRODUCE_MANIFEST = "reproduce.json"
SUCCESS = "_SUCCESS"
LOCK = ".lock"
CLAIMS = "claims.json"
REPORT = "report.html"
RUNS = "runs"
#: Length of a run id (hex digits of sha256): 48 bits, collisions negligible for any realistic sweep.
RUN_ID_LENGTH = 12
RUN_FILES = frozenset({"spec.json", "env.json", "metrics.parquet", "summary.json", SUCCESS})
#: Top-level files and folders zeroloss writes in a folder of each kind (besides the marker and the lock).
OWN_NAMES = {
    "sweep": frozenset({MANIFEST, RUNS, CLAIMS, REPORT}),
    "train": frozenset({MANIFEST, RUNS}),
    "two-timescale": frozenset({MANIFEST, RUNS}),
    "diagnose": frozenset({MANIFEST, RUNS, "diagnose.html"}),
    "reproduce": frozenset({REPRODUCE_MANIFEST, CLAIMS, REPORT}),
    # a kernel job (zeroloss.tiles.store): the zarr v3 array's metadata and chunks, the job and its tile records
    "kernel": frozenset({"zarr.json", "c", "job.json", "inputs", "model.pt", "records"}),
}
#: What ``zeroloss train`` / ``two-timescale`` wrote before the store owned their output, and the spec keys that
#: identify it (such folders are adopted: ``--overwrite`` may replace them).
LEGACY_FILES = {
    "train": frozenset({"spec.json", "metrics.parquet", "losses.npy", "summary.json", "summary.csv"}),
    "two-timescale": frozenset({"spec.json", "metrics.parquet", "summary.json"}),
}
LEGACY_SPEC_KEYS = {
    "train": frozenset({"net", "width", "depth", "lr", "steps", "members"}),
    "two-timescale": frozenset({"eps", "h", "t_max", "neurons", "repeats"}),
}


# ------------------------------------------------------------------------------------------- names

def is_run_id(name: str) -> bool:
    """Whether ``name`` has the form of a run id (12 lowercase hex digits)."""
    return re.fullmatch(f"[0-9a-f]{{{RUN_ID_LENGTH}}}", name) is not None


def is_run_temporary(name: str) -> bool:
    """A run folder being built: ``.<id>.<8 chars>.tmp`` (or ``.tmp-<id>-<8 chars>`` of earlier versions)."""
    ident = f"[0-9a-f]{{{RUN_ID_LENGTH}}}"
    return (re.fullmatch(rf"\.{ident}\.{TOKEN_PATTERN}\.tmp", name) is not None
            or re.fullmatch(rf"\.tmp-{ident}-{TOKEN_PATTERN}", name) is not None)


def _is_temporary_of_any(entry: str, names: frozenset[str] | set[str]) -> bool:
    return any(is_temporary_of(entry, name) for name in names)


# ------------------------------------------------------------------------------------------- marker

def read_marker(folder: Path | str) -> str | None:
    """The kind recorded in ``folder/.zeroloss``, or None when there is no valid marker."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("zeroloss_folder") == MARKER_FORMAT and data.get("kind") in KINDS:
        return str(data["kind"])
    return None


def write_marker(folder: Path | str, kind: str) -> None:
    """Write ``folder/.zeroloss`` saying that zeroloss made ``folder`` for a ``kind`` output."""
    from zeroloss.version import __version__

    atomic_write_bytes(Path(folder) / MARKER,
                       json_bytes({"zeroloss_folder": MARKER_FORMAT, "kind": kind, "zeroloss": __version__}))


def _json_or_none(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_run_folder(path: Path) -> bool:
    """A run folder zeroloss wrote: only run files (and their temporaries) in it, and a ``spec.json`` that is
    ``{"experiment": name, "spec": {...}}`` whose run id is the folder's name. Nothing else proves it: a user's
    12-hex folder, or one holding a fake ``spec.json`` and ``_SUCCESS``, is not zeroloss's."""
    from zeroloss.store.runs import run_id

    try:
        names = os.listdir(path)
    except OSError:
        return False
    if any(not (name in RUN_FILES or _is_temporary_of_any(name, RUN_FILES)) for name in names):
        return False
    record = _json_or_none(path / "spec.json")
    if not (isinstance(record, dict) and set(record) == {"experiment", "spec"}
            and isinstance(record["experiment"], str) and isinstance(record["spec"], dict)):
        return False
    try:
        return run_id(record["experiment"], record["spec"]) == path.name
    except (TypeError, ValueError):
        return False


def _runs_only(runs: Path) -> bool:
    """``runs/`` holds nothing but run temporaries and run folders that prove to be zeroloss's
    (:func:`_is_run_folder`: a valid spec whose hash is the folder's name), at least one of them finished."""
    try:
        entries = list(os.scandir(runs))
    except OSError:
        return False
    finished = False
    for entry in entries:
        if is_run_temporary(entry.name):
            continue
        path = Path(entry.path)
        if not (is_run_id(entry.name) and entry.is_dir(follow_symlinks=False)):
            return False
        if (path / SUCCESS).is_file():
            if not _is_run_folder(path):
                return False
            finished = True
        elif any(not (name in RUN_FILES or _is_temporary_of_any(name, RUN_FILES)) for name in os.listdir(path)):
            return False  # an unfinished run holds only run files (a killed writer's), never a user's files
    return finished


def legacy_kind(folder: Path | str) -> str | None:
    """The kind of a folder written by an earlier zeroloss (no marker), recognised by its content; else None."""
    folder = Path(folder)
    manifest = _json_or_none(folder / MANIFEST)
    if (isinstance(manifest, dict) and isinstance(manifest.get("experiment"), str)
            and isinstance(manifest.get("run_ids"), list)
            and all(isinstance(r, str) and is_run_id(r) for r in manifest["run_ids"])):
        return "sweep"
    meta = _json_or_none(folder / REPRODUCE_MANIFEST)
    if isinstance(meta, dict) and {"paper", "scale", "experiments"} <= set(meta):
        return "reproduce"
    if _runs_only(folder / RUNS):
        return "sweep"
    spec = _json_or_none(folder / "spec.json")
    if isinstance(spec, dict):
        names = set(os.listdir(folder))
        for kind, files in LEGACY_FILES.items():
            if names <= files and LEGACY_SPEC_KEYS[kind] <= set(spec):
                return kind
    return None


def folder_kind(folder: Path | str) -> str | None:
    """The kind of zeroloss folder ``folder`` is (marker, else adopted by content), or None (not zeroloss's)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return read_marker(folder) or legacy_kind(folder)


def is_legacy_single_run(folder: Path | str) -> bool:
    """An earlier version's ``train`` / ``two-timescale`` output (its own schema, no ``runs/``)."""
    folder = Path(folder)
    return read_marker(folder) is None and legacy_kind(folder) in LEGACY_FILES and not (folder / RUNS).exists()


# ------------------------------------------------------------------------------------------- checks

def _describe(kind: str) -> str:
    return {"sweep": "a sweep", "reproduce": "a reproduction", "train": "a `zeroloss train` output",
            "two-timescale": "a `zeroloss two-timescale` output", "diagnose": "a `zeroloss diagnose` output",
            "kernel": "a `zeroloss kernel --out K.zarr` job"}[kind]


def foreign_entries(folder: Path, kind: str) -> list[Path]:
    """Entries of the ``kind`` folder ``folder`` that zeroloss did not write (what ``--overwrite`` must keep)."""
    if read_marker(folder) is None:  # an adopted folder of an earlier version: exactly its files
        allowed = LEGACY_FILES.get(kind, frozenset()) | OWN_NAMES[kind]
    else:
        allowed = OWN_NAMES[kind] | {MARKER, LOCK}
    out = []
    for entry in sorted(os.listdir(folder)):
        if not (entry in allowed or _is_temporary_of_any(entry, allowed)):
            out.append(folder / entry)
        elif entry == RUNS:
            out.extend(_foreign_in_runs(folder / RUNS))
    return out


def _foreign_in_runs(runs: Path) -> list[Path]:
    if not runs.is_dir() or runs.is_symlink():
        return [runs]
    out = []
    for entry in sorted(os.listdir(runs)):
        path = runs / entry
        if is_run_temporary(entry):
            continue
        if not is_run_id(entry) or path.is_symlink() or not path.is_dir():
            out.append(path)
            continue
        out.extend(path / f for f in sorted(os.listdir(path))
                   if not (f in RUN_FILES or _is_temporary_of_any(f, RUN_FILES)))
    return out


def check_folder(out: Path | str, kind: str, field: str = "--out", *, replace: bool = False,
                 overwrite: bool = False) -> str:
    """Check that a ``kind`` output may go to the folder ``out``; nothing is created or changed.

    Args:
        out: the results folder.
        kind: one of :data:`KINDS`.
        field: the option named in errors.
        replace: the output replaces the whole folder (``train``, ``two-timescale``) rather than being written
            into it (sweeps, reproductions).
        overwrite: with ``replace``, an existing folder of the same kind may be replaced.

    Returns:
        ``"new"`` (``out`` does not exist), ``"empty"`` or ``"ours"`` (a folder of this kind).

    Raises:
        ZerolossInputError: one line naming ``field`` and the reason.
    """
    out = Path(out)
    if out.is_symlink() and (replace or not out.exists()):
        raise ZerolossInputError(f"{field}: {out} is a symbolic link; give a folder path instead")
    if out.exists() and not out.is_dir():
        raise ZerolossInputError(f"{field}: {out} is a file; zeroloss {kind} writes a folder there")
    if not out.exists():
        ensure_parent(out, field, create=False)
        return "new"
    where = out.parent if replace else out
    if not os.access(where, os.W_OK | os.X_OK):
        raise ZerolossInputError(f"{field}: cannot write into {where}: permission denied")
    if not os.access(out, os.R_OK | os.X_OK):
        raise ZerolossInputError(f"{field}: cannot read {out}: permission denied")
    if not os.listdir(out):
        return "empty"
    found = folder_kind(out)
    if found is None:
        raise ZerolossInputError(f"{field}: {out} is a non-empty folder that zeroloss did not create (no {MARKER} "
                                 "marker); zeroloss writes only into new, empty or its own folders")
    if found != kind:
        raise ZerolossInputError(f"{field}: {out} holds {_describe(found)}, not {_describe(kind)}; "
                                 "choose another folder")
    if replace:
        if not overwrite:
            raise ZerolossInputError(f"{field}: {out} already exists; choose a new folder or pass --overwrite "
                                     "to replace it")
        foreign = foreign_entries(out, kind)
        if foreign:
            raise ZerolossInputError(f"{field}: --overwrite replaces only zeroloss output, and {foreign[0]} is not; "
                                     "move it away or choose another folder")
    return "ours"


#: What a results folder holds before its first result: the marker, the lock, the manifests and their temporaries,
#: an empty ``runs/``. A folder holding nothing else that zeroloss created in a failed call is removed again.
_BOOKKEEPING = frozenset({MARKER, LOCK, MANIFEST, REPRODUCE_MANIFEST})


def remove_if_fresh(folder: Path | str) -> bool:
    """Remove ``folder`` when it holds nothing but zeroloss's bookkeeping (no result, nothing of a user's): what a
    call that created it and then failed (a full disk, a refusal) would otherwise leave. Returns whether it did.
    Sub-folders are removed when they are themselves fresh (the experiment folders of a reproduction)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir() or read_marker(folder) is None and os.listdir(folder):
        return False
    for entry in os.listdir(folder):
        path = folder / entry
        if entry in _BOOKKEEPING or _is_temporary_of_any(entry, _BOOKKEEPING):
            if path.is_dir() and not path.is_symlink():
                return False
            continue
        if entry == RUNS and path.is_dir() and not path.is_symlink() and not os.listdir(path):
            continue
        if path.is_dir() and not path.is_symlink() and remove_if_fresh(path):
            continue
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


#: Results folders this process created (absolute paths): only those may be removed again after a failure.
_CREATED: set[str] = set()
#: How many :func:`removed_on_failure` blocks watch each folder (the outermost one ends its "just created" state).
_WATCHED: dict[str, int] = {}


def _lock_is_held(folder: Path) -> bool:
    """Whether another process holds the sweep lock of ``folder`` (it is writing there)."""
    from zeroloss.store.atomic import _try_lock

    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def removed_on_failure(out: Path | str) -> Iterator[None]:
    """Run the block; if it raises and this process created ``out`` in it (:func:`claim_folder`), remove what it
    left of ``out`` as long as that is only bookkeeping (:func:`remove_if_fresh`) and no other process is writing
    there: a failed first call (a full disk, a refusal) leaves no empty results folder."""
    key = os.path.abspath(out)
    _WATCHED[key] = _WATCHED.get(key, 0) + 1
    try:
        yield
    except BaseException:
        if key in _CREATED and not _lock_is_held(Path(key)):
            with contextlib.suppress(OSError):
                remove_if_fresh(key)
        raise
    finally:
        _WATCHED[key] -= 1
        if not _WATCHED[key]:  # the outermost block: the folder is no longer "just created" by this call
            del _WATCHED[key]
            _CREATED.discard(key)


def claim_folder(out: Path | str, kind: str, field: str = "--out") -> Path:
    """Make ``out`` a ``kind`` results folder of zeroloss: check it, create it when missing, mark it.

    Missing parents are created as :func:`~zeroloss.store.atomic.ensure_parent` allows; an adopted folder of an
    earlier version gets its marker now.

    Raises:
        ZerolossInputError: as :func:`check_folder`, or when the folder cannot be written.
    """
    out = Path(out)
    state = check_folder(out, kind, field)
    with removed_on_failure(out), output_errors(field, out):
        if state == "new":
            ensure_parent(out, field)
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked below
                make_folder(out)
                _CREATED.add(os.path.abspath(out))
            check_folder(out, kind, field)
        if read_marker(out) != kind:
            write_marker(out, kind)
    return out


def clean_folder(folder: Path | str, kind: str) -> list[Path]:
    """Remove stale temporaries of zeroloss's own top-level files in a ``kind`` folder (nothing else).

    Does nothing unless ``folder`` is a zeroloss folder of that kind.
    """
    folder = Path(folder)
    if folder_kind(folder) != kind:
        return []
    removed: list[Path] = []
    for name in sorted(OWN_NAMES[kind] | {MARKER}):
        removed += remove_stale_temporaries(folder, name)
    return removed


# ------------------------------------------------------------------------------------------- replacing

def _is_our_temporary_folder(path: Path) -> bool:
    """A dead writer's ``.<name>.<token>.tmp/``: empty, marked, or (earlier versions) only their output files.

    A writer killed while writing the marker leaves at most the marker's own temporary: that counts as empty."""
    names = {name for name in os.listdir(path) if not is_temporary_of(name, MARKER)}
    return (not names or read_marker(path) is not None
            or names <= LEGACY_FILES["train"] | LEGACY_FILES["two-timescale"])


def clean_temporary_folders(out: Path | str) -> list[Path]:
    """Remove ``.<out name>.<token>.tmp/`` folders beside ``out`` that a killed zeroloss left (see
    :func:`building_folder`)."""
    out = Path(out)
    return remove_stale_temporaries(out.parent, out.name, _is_our_temporary_folder)


def _other_live_builder(out: Path, mine: Path) -> bool:
    """Whether another process is building ``out``: a temporary folder of it, other than ``mine``, whose flock is
    held. Checked after ``mine`` is locked, so of two builders started together at least one sees the other (both
    may refuse; never do both go on)."""
    from zeroloss.store.atomic import _try_lock

    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return False
    for entry in entries:
        if entry.name == mine.name or not is_temporary_of(entry.name, out.name) or entry.is_symlink() \
                or not entry.is_dir():
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            continue
        try:
            if not _try_lock(fd):
                return True
        finally:
            os.close(fd)
    return False


@contextlib.contextmanager
def building_folder(out: Path | str, kind: str, overwrite: bool = False, field: str = "--out") -> Iterator[Path]:
    """Build a whole results folder under a temporary name and rename it into place only when complete.

    ``with building_folder(out, "train", overwrite) as tmp:`` — ``tmp`` (``.<name>.<8 hex>.tmp`` beside ``out``,
    already marked) receives the files; on success it becomes ``out`` (an existing folder of the same kind is
    replaced when ``overwrite``: see :func:`check_folder`); on any error it is removed and ``out`` is untouched.
    While it is being built the process holds an flock on it, so that a later start on the same ``out`` removes
    it only once its writer is gone (killed). Such leftovers are removed when the context is entered.

    Raises:
        ZerolossInputError: ``out`` may not be written (checked on entry and again before the rename).
    """
    out = Path(os.path.abspath(out))  # so that out.parent and out.name are real even for "." or "sub/.."
    check_folder(out, kind, field, replace=True, overwrite=overwrite)
    ensure_parent(out, field)
    clean_temporary_folders(out)
    tmp = out.parent / temporary_name(out.name)
    with output_errors(field, out):
        make_folder(tmp)
    try:
        with locked_folder(tmp):
            if _other_live_builder(out, tmp):
                raise ZerolossInputError(f"{field}: {out} is being written by another zeroloss process; wait for it "
                                         "or choose another folder")
            with output_errors(field, out):
                write_marker(tmp, kind)
            yield tmp
            state = check_folder(out, kind, field, replace=True, overwrite=overwrite)
            with output_errors(field, out):
                if state == "ours":
                    old = out.parent / temporary_name(out.name)
                    os.replace(out, old)  # marked: removed by the next start if we die before the rmtree
                    try:
                        os.replace(tmp, out)
                    except BaseException:
                        os.replace(old, out)
                        raise
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(tmp, out)  # onto nothing or onto an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
