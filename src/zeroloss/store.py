"""Run directories on disk: idempotent, atomic, resumable; :func:`load` turns a sweep into one tidy DataFrame.

Layout of a sweep directory ``OUT``::

    OUT/sweep.json            manifest: experiment name and the run ids of the latest sweep run into OUT
    OUT/runs/<id>/spec.json   {"experiment": name, "spec": {...}}       (the run's identity)
    OUT/runs/<id>/env.json    python/torch/zeroloss versions, device, dtype, start/end times, hostname
    OUT/runs/<id>/metrics.parquet   tidy: one row per (step, metric) with at least step, metric, value
    OUT/runs/<id>/summary.json      one row: flat dict of scalars, always with ``diverged``
    OUT/runs/<id>/_SUCCESS          written last

A run's id is the first 12 hex digits of sha256 over the canonical JSON of ``{"experiment", "spec"}``, so the
same run always lands in the same directory and a finished run is never run twice. A run directory is built
under a temporary name (``runs/.tmp-<id>-*``) with every file written to a temporary name and renamed, and the
whole directory is renamed into place at the end: a killed sweep leaves no partial ``runs/<id>``, only a stale
temporary directory that the next sweep removes (:meth:`RunStore.clean_stale`).

Example:
    >>> import tempfile, pandas as pd
    >>> from zeroloss.experiments.base import RunOutput
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
import json
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zeroloss.errors import ZerolossInputError

#: Length of a run id (hex digits of sha256): 48 bits, collisions negligible for any realistic sweep.
RUN_ID_LENGTH = 12
SUCCESS = "_SUCCESS"
MANIFEST = "sweep.json"
TMP_PREFIX = ".tmp-"
#: Columns of the tidy metrics table that spec/summary columns never overwrite.
METRIC_COLUMNS = ("run_id", "experiment", "step", "metric", "value")


# ------------------------------------------------------------------------------------------- identity

def to_jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/torch scalars, tuples, paths (dict keys become strings)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, ASCII; the text that run ids hash."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True)


def run_id(experiment: str, spec: Mapping[str, Any]) -> str:
    """Short hash of a run: sha256(canonical JSON of {"experiment", "spec"})[:12].

    Example:
        >>> run_id("x", {"a": 1, "b": 2}) == run_id("x", {"b": 2, "a": 1})
        True
    """
    text = canonical_json({"experiment": experiment, "spec": dict(spec)})
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:RUN_ID_LENGTH]


# ------------------------------------------------------------------------------------------- writing

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Modes for files and directories (mkstemp/mkdtemp create them private; results are ordinary files).
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync it, and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(to_jsonable(value), indent=1, sort_keys=True, allow_nan=True) + "\n").encode()


def _has_nonfinite(values: Iterable[Any]) -> bool:
    for v in values:
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            return True
    return False


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


class RunStore:
    """The ``runs/`` folder of one sweep directory: which runs are done, writing one run atomically.

    Args:
        root: the sweep directory ``OUT`` (``OUT/runs`` is created on first write).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def run_dir(self, rid: str) -> Path:
        return self.runs / rid

    def is_done(self, rid: str) -> bool:
        """Whether ``runs/<rid>/_SUCCESS`` exists."""
        return (self.runs / rid / SUCCESS).is_file()

    def done_ids(self) -> set[str]:
        """Ids of every finished run in this directory."""
        if not self.runs.is_dir():
            return set()
        return {p.name for p in self.runs.iterdir() if not p.name.startswith(".") and (p / SUCCESS).is_file()}

    def clean_stale(self) -> list[Path]:
        """Remove temporary run directories left by a killed sweep and run dirs without ``_SUCCESS``.

        Call only from the one driver that owns this directory (see :func:`sweep_lock`).
        """
        removed: list[Path] = []
        if not self.runs.is_dir():
            return removed
        for p in self.runs.iterdir():
            stale = p.name.startswith(TMP_PREFIX) or (p.is_dir() and not (p / SUCCESS).is_file())
            if stale:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    def write(self, experiment: str, spec: Mapping[str, Any], output: Any, env: Mapping[str, Any] | None = None,
              ) -> str:
        """Store one run (a :class:`~zeroloss.experiments.base.RunOutput`) and return its id.

        ``summary["diverged"]`` is always present: when the experiment did not say, a run is marked diverged
        if a summary value or a metric value is non-finite. Writing a run that is already done is a no-op.
        """
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
        self.runs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{rid}-", dir=self.runs))
        try:
            os.chmod(tmp, DIR_MODE)
            buf = io.BytesIO()
            metrics.to_parquet(buf, index=False)
            _atomic_write(tmp / "spec.json", _json_bytes({"experiment": experiment, "spec": dict(spec)}))
            _atomic_write(tmp / "env.json", _json_bytes(dict(env or {})))
            _atomic_write(tmp / "metrics.parquet", buf.getvalue())
            _atomic_write(tmp / "summary.json", _json_bytes(summary))
            _atomic_write(tmp / SUCCESS, b"")
            final = self.run_dir(rid)
            if final.exists():  # a leftover without _SUCCESS (is_done was False): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return rid

    def write_manifest(self, experiment: str, run_ids: list[str], extra: Mapping[str, Any] | None = None) -> None:
        """Record which runs make up this directory's (latest) sweep; :func:`load` reads only those."""
        self.root.mkdir(parents=True, exist_ok=True)
        body = {"experiment": experiment, "run_ids": list(run_ids), **dict(extra or {})}
        _atomic_write(self.root / MANIFEST, _json_bytes(body))


@contextlib.contextmanager
def sweep_lock(root: Path | str) -> Iterator[None]:
    """Exclusive lock on a sweep directory (``OUT/.lock``), so two drivers never write one sweep at once.

    The lock is an ``flock``: the kernel releases it when the holder dies, even by ``kill -9``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock, one driver per directory by convention
            pass
        except BlockingIOError:
            raise ZerolossInputError(f"--out: {root} is being written by another zeroloss process; "
                                     "wait for it or choose another directory") from None
        yield
    finally:
        handle.close()


# ------------------------------------------------------------------------------------------- reading

def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become tuples (hashable DataFrame cells).

    Example:
        >>> flatten({"net": {"width": 8}, "widths": [1, 2]})
        {'net.width': 8, 'widths': (1, 2)}
    """
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{name}."))
        elif isinstance(v, list):
            out[name] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        else:
            out[name] = v
    return out


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_run(run_dir: Path | str) -> dict[str, Any]:
    """One finished run: ``{"run_id", "experiment", "spec", "summary", "env", "metrics"}``."""
    run_dir = Path(run_dir)
    head = _read_json(run_dir / "spec.json")
    env_path = run_dir / "env.json"
    return {
        "run_id": run_dir.name,
        "experiment": head["experiment"],
        "spec": head["spec"],
        "summary": _read_json(run_dir / "summary.json"),
        "env": _read_json(env_path) if env_path.is_file() else {},
        "metrics": pd.read_parquet(run_dir / "metrics.parquet"),
    }


def sweep_dirs(path: Path | str) -> list[Path]:
    """The sweep directories under ``path``: ``path`` itself when it holds ``runs/``, else its children that do."""
    path = Path(path)
    if (path / "runs").is_dir() or (path / MANIFEST).is_file():
        return [path]
    if not path.is_dir():
        raise ZerolossInputError(f"dir: not a directory, got {str(path)!r}")
    return sorted(p for p in path.iterdir() if p.is_dir() and ((p / "runs").is_dir() or (p / MANIFEST).is_file()))


def finished_run_dirs(sweep_dir: Path | str, all_runs: bool = False) -> list[Path]:
    """Finished run directories of one sweep dir: the manifest's runs (all finished runs if ``all_runs``)."""
    store = RunStore(sweep_dir)
    done = store.done_ids()
    manifest = Path(sweep_dir) / MANIFEST
    if manifest.is_file() and not all_runs:
        ids = [rid for rid in _read_json(manifest)["run_ids"] if rid in done]
    else:
        ids = sorted(done)
    return [store.run_dir(rid) for rid in ids]


def _run_frame(run: dict[str, Any]) -> pd.DataFrame:
    metrics = run["metrics"].copy()
    if metrics.empty:  # keep a run without metric rows visible through its spec and summary
        metrics = pd.DataFrame({"step": [np.nan], "metric": [None], "value": [np.nan]})
    metrics.insert(0, "experiment", run["experiment"])
    metrics.insert(0, "run_id", run["run_id"])
    taken = set(metrics.columns)
    for key, v in flatten(run["spec"]).items():
        if key not in taken:
            metrics[key] = [v] * len(metrics) if isinstance(v, tuple) else v
            taken.add(key)
    for key, v in flatten(run["summary"]).items():
        name = key if key not in taken else f"summary.{key}"
        metrics[name] = [v] * len(metrics) if isinstance(v, tuple) else v
    return metrics


def load(path: Path | str, all_runs: bool = False) -> pd.DataFrame:
    """One tidy DataFrame of a whole sweep (only runs with ``_SUCCESS``).

    One row per (run, step, metric) with columns ``run_id``, ``experiment``, ``step``, ``metric``, ``value``,
    any other metric columns, the spec flattened with dotted names (``net.width``), then the summary columns
    (a summary key equal to a column already present is prefixed ``summary.``).

    Args:
        path: a sweep directory (holds ``runs/``), or a ``zeroloss reproduce`` directory (its experiment
            sub-directories are concatenated).
        all_runs: include every finished run in the directory, not only those of the latest sweep manifest.

    Example:
        >>> import tempfile
        >>> load(tempfile.mkdtemp()).empty
        True
    """
    frames = []
    for sweep_dir in sweep_dirs(path):
        for run_dir in finished_run_dirs(sweep_dir, all_runs):
            frames.append(_run_frame(read_run(run_dir)))
    if not frames:
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    return pd.concat(frames, ignore_index=True, sort=False)


def load_runs(path: Path | str, all_runs: bool = False) -> pd.DataFrame:
    """One row per finished run: ``run_id``, ``experiment``, flattened spec and summary columns."""
    rows = []
    for sweep_dir in sweep_dirs(path):
        for run_dir in finished_run_dirs(sweep_dir, all_runs):
            run = read_run(run_dir)
            row = {"run_id": run["run_id"], "experiment": run["experiment"], **flatten(run["spec"])}
            for key, v in flatten(run["summary"]).items():
                row[key if key not in row else f"summary.{key}"] = v
            rows.append(row)
    return pd.DataFrame(rows)


def python_command() -> str:
    """The command line that produced this process (recorded in reports)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
