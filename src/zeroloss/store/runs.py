"""Run folders on disk: identity, atomic writing, the sweep lock and the environment a run executed on.

Layout of a results folder ``OUT`` (a sweep, one experiment of a reproduction, a ``train`` or a ``two-timescale``
output — the same format for all)::

    OUT/.zeroloss             marker: zeroloss made this folder, and for which command (see ownership)
    OUT/sweep.json            manifest: experiment name and the run ids of the latest sweep run into OUT
    OUT/runs/<id>/spec.json   {"experiment": name, "spec": {...}}       (the run's identity)
    OUT/runs/<id>/env.json    python/torch/zeroloss versions, device, dtype, start/end times, hostname
    OUT/runs/<id>/metrics.parquet   tidy: one row per (step, metric) with at least step, metric, value
    OUT/runs/<id>/summary.json      one row: flat dict of scalars, always with ``diverged``
    OUT/runs/<id>/_SUCCESS          written last

A run's id is the first 12 hex digits of sha256 over the canonical JSON of ``{"experiment", "spec"}``, so the
same run always lands in the same folder and a finished run is never run twice. A run folder is built under a
temporary name (``runs/.<id>.<8 hex>.tmp``) with every file written atomically, and the whole folder is renamed
into place at the end: a killed sweep leaves no partial ``runs/<id>``, only a stale temporary that the next sweep
removes (:meth:`RunStore.clean_stale`).

Examples:
    >>> import tempfile, pandas as pd
    >>> from zeroloss.papers.base import RunOutput
    >>> from zeroloss.store import load
    >>> store = RunStore(tempfile.mkdtemp())
    >>> rid = store.write("demo.exp", {"width": 8, "seed": 0},
    ...                   RunOutput(pd.DataFrame({"step": [0, 1], "metric": "loss", "value": [1.0, 0.5]}),
    ...                             {"final_loss": 0.5}))
    >>> store.is_done(rid), len(load(store.root))
    (True, 2)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import math
import os
import platform
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zeroloss.errors import ZerolossInputError
from zeroloss.store.atomic import (
    atomic_write_bytes,
    json_bytes,
    make_folder,
    output_errors,
    temporary_name,
    to_jsonable,
)
from zeroloss.store.ownership import (
    LOCK,
    MANIFEST,
    RUNS,
    SUCCESS,
    claim_folder,
    clean_folder,
    folder_kind,
    is_run_id,
    is_run_temporary,
)

# ------------------------------------------------------------------------------------------- identity


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, ASCII; the text that run ids hash."""
    import json

    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True)


def run_id(experiment: str, spec: Mapping[str, Any]) -> str:
    """Short hash of a run: sha256(canonical JSON of {"experiment", "spec"})[:12].

    Examples:
        >>> run_id("x", {"a": 1, "b": 2}) == run_id("x", {"b": 2, "a": 1})
        True
    """
    from zeroloss.store.ownership import RUN_ID_LENGTH

    text = canonical_json({"experiment": experiment, "spec": dict(spec)})
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:RUN_ID_LENGTH]


# ------------------------------------------------------------------------------------------- environment

def environment(device: str, dtype: str | None = None) -> dict[str, Any]:
    """The versions and machine a run executed on (recorded in env.json; never part of the run id)."""
    import torch

    from zeroloss.version import __version__, source_commit

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "zeroloss": __version__,
        "zeroloss_commit": source_commit(),  # None for an installed wheel; "<12 hex>[+dirty]" from a git checkout
        "numpy": np.__version__,
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(torch.device(device))
                        if str(device).startswith("cuda") and torch.cuda.is_available() else cpu_name()),
        "dtype": dtype or str(torch.get_default_dtype()).replace("torch.", ""),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),  # intra-op threads in force (a sweep fixes them per run)
    }


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def now_iso() -> str:
    """UTC time stamp, ISO 8601 to the millisecond."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def python_command() -> str:
    """The command line that produced this process (recorded in reports and manifests)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


# ------------------------------------------------------------------------------------------- writing

def _has_nonfinite(values: Iterable[Any]) -> bool:
    for v in values:
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            return True
    return False


def _only_run_files(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but the files of a run and their temporaries (what a killed writer leaves)."""
    from zeroloss.store.ownership import RUN_FILES, _is_temporary_of_any

    try:
        return all(name in RUN_FILES or _is_temporary_of_any(name, RUN_FILES) for name in os.listdir(folder))
    except OSError:
        return False


class RunStore:
    """The ``runs/`` folder of one results folder: which runs are done, writing one run atomically.

    The first write claims the folder for zeroloss (:func:`~zeroloss.store.ownership.claim_folder`: created when
    missing, refused when it is a non-empty folder zeroloss did not make or a folder of another kind, marked).

    Args:
        root: the results folder ``OUT`` (``OUT/runs`` is created on first write).
        kind: which command's folder it is: ``sweep`` (sweeps and reproductions), ``train`` or ``two-timescale``.
        field: the option named in errors about ``root``.
    """

    def __init__(self, root: Path | str, kind: str = "sweep", field: str = "out") -> None:
        self.root = Path(root)
        self.runs = self.root / RUNS
        self.kind = kind
        self.field = field
        self._claimed = False

    def claim(self) -> None:
        """Check, create and mark the folder (done once, before the first write)."""
        if not self._claimed:
            claim_folder(self.root, self.kind, self.field)
            self._claimed = True

    def run_dir(self, rid: str) -> Path:
        return self.runs / rid

    def is_done(self, rid: str) -> bool:
        """Whether ``runs/<rid>/_SUCCESS`` exists."""
        return (self.runs / rid / SUCCESS).is_file()

    def done_ids(self) -> set[str]:
        """Ids of every finished run in this folder."""
        if not self.runs.is_dir():
            return set()
        return {p.name for p in self.runs.iterdir() if is_run_id(p.name) and (p / SUCCESS).is_file()}

    def clean_stale(self) -> list[Path]:
        """Remove what a killed writer left: run temporaries, run folders without ``_SUCCESS``, file temporaries.

        Only zeroloss's own names are touched, and only in a folder that is zeroloss's (of this store's kind);
        call it only from the one driver that holds :func:`sweep_lock`.
        """
        if folder_kind(self.root) != self.kind:
            return []
        removed = clean_folder(self.root, self.kind)
        if not self.runs.is_dir() or self.runs.is_symlink():
            return removed
        for p in self.runs.iterdir():
            if p.is_symlink():
                continue
            unfinished = is_run_id(p.name) and p.is_dir() and not (p / SUCCESS).is_file()
            if unfinished and not _only_run_files(p):
                continue  # a folder that merely has a run id's name, with a user's files in it: not ours to delete
            if is_run_temporary(p.name) or unfinished:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    def write(self, experiment: str, spec: Mapping[str, Any], output: Any, env: Mapping[str, Any] | None = None,
              ) -> str:
        """Store one run (a :class:`~zeroloss.papers.base.RunOutput`) and return its id.

        ``summary["diverged"]`` is always present: when the experiment did not say, a run is marked diverged
        if a summary value or a metric value is non-finite. Writing a run that is already done is a no-op.
        """
        import pandas as pd

        rid = run_id(experiment, spec)
        if self.is_done(rid):
            return rid
        metrics = output.metrics.reset_index(drop=True)
        for col in ("step", "metric", "value"):
            if col not in metrics.columns:
                raise ZerolossInputError(f"{experiment}.metrics: needs columns step, metric, value; "
                                         f"got {list(metrics.columns)}")
        metrics = metrics.drop(columns=[c for c in ("member", "run_id", "experiment") if c in metrics.columns])
        summary = to_jsonable(dict(output.summary))
        if "diverged" not in summary:
            values = pd.to_numeric(metrics["value"], errors="coerce").to_numpy(dtype=float)
            summary["diverged"] = bool(_has_nonfinite(summary.values()) or not np.isfinite(values).all())
        buf = io.BytesIO()
        metrics.to_parquet(buf, index=False)
        self.claim()
        final = self.run_dir(rid)
        with output_errors(self.field, final):  # a full disk, a folder made read-only meanwhile: one line
            if not self.runs.is_dir():
                with contextlib.suppress(FileExistsError):
                    make_folder(self.runs)
            tmp = self.runs / temporary_name(rid)
            make_folder(tmp)
            try:
                atomic_write_bytes(tmp / "spec.json", json_bytes({"experiment": experiment, "spec": dict(spec)}))
                atomic_write_bytes(tmp / "env.json", json_bytes(dict(env or {})))
                atomic_write_bytes(tmp / "metrics.parquet", buf.getvalue())
                atomic_write_bytes(tmp / "summary.json", json_bytes(summary))
                atomic_write_bytes(tmp / SUCCESS, b"")
                if final.exists():  # a leftover without _SUCCESS (is_done was False): replace it
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return rid

    def result_version(self, rid: str) -> str | None:
        """The result version recorded in ``runs/<rid>/env.json`` (None for a run stored without one)."""
        import json

        try:
            return json.loads((self.run_dir(rid) / "env.json").read_text()).get("result_version")
        except (OSError, ValueError, AttributeError):
            return None

    def discard(self, rid: str) -> None:
        """Remove the finished run ``rid`` (a stale result): renamed to a temporary first, so that a kill midway
        leaves only a temporary, which :meth:`clean_stale` removes. Call it under :func:`sweep_lock`."""
        final = self.run_dir(rid)
        if final.is_dir() and not final.is_symlink():
            tmp = self.runs / temporary_name(rid)
            os.replace(final, tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    def write_manifest(self, experiment: str, run_ids: list[str], extra: Mapping[str, Any] | None = None) -> None:
        """Record which runs make up this folder's (latest) sweep; :func:`~zeroloss.store.load` reads only those."""
        self.claim()
        body = {"experiment": experiment, "run_ids": list(run_ids), **dict(extra or {})}
        with output_errors(self.field, self.root / MANIFEST):
            atomic_write_bytes(self.root / MANIFEST, json_bytes(body))


@contextlib.contextmanager
def sweep_lock(root: Path | str, field: str = "--out") -> Iterator[None]:
    """Exclusive lock on a results folder (``OUT/.lock``), so two drivers never write one folder at once.

    The folder must exist (claim it first). The lock is an ``flock``: the kernel releases it when the holder dies,
    even by ``kill -9``.
    """
    root = Path(root)
    with output_errors(field, root / LOCK):
        handle = open(root / LOCK, "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock, one driver per folder by convention
            pass
        except BlockingIOError:
            raise ZerolossInputError(f"{field}: {root} is being written by another zeroloss process; "
                                     "wait for it or choose another folder") from None
        yield
    finally:
        handle.close()
