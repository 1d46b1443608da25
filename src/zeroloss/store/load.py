"""Reading stored runs: :func:`load` turns any zeroloss results folder into one tidy DataFrame.

Every command that runs something writes the same format (see :mod:`zeroloss.store.runs`): a sweep, each
experiment folder of a reproduction, a ``zeroloss train`` and a ``zeroloss two-timescale`` output. So
:func:`load` reads each of them, and a reproduction (its experiment folders concatenated). A folder that holds no
zeroloss runs, a stored run that cannot be read, and an unreadable manifest are one-line
:class:`~zeroloss.errors.ZerolossInputError` naming the folder or the run — never an empty table.

Examples:
    >>> import tempfile
    >>> try:
    ...     load(tempfile.mkdtemp())
    ... except ZerolossInputError as exc:
    ...     print("holds no zeroloss runs" in str(exc))
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zeroloss.errors import ZerolossInputError
from zeroloss.store.ownership import (
    MANIFEST,
    MARKER,
    RUN_KINDS,
    RUNS,
    folder_kind,
    is_legacy_single_run,
    is_run_id,
)
from zeroloss.store.runs import RunStore

#: Columns of the tidy metrics table that spec/summary columns never overwrite.
METRIC_COLUMNS = ("run_id", "experiment", "step", "metric", "value")


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become tuples (hashable DataFrame cells).

    Examples:
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


def _corrupt(where: Path, what: str, reason: object) -> ZerolossInputError:
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return ZerolossInputError(f"{where}: unreadable zeroloss run: {what} {text}; delete this run folder and run "
                              "the command again to recompute it")


def _read_json_object(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(run_dir, path.name, exc) from None
    if not isinstance(value, dict):
        raise _corrupt(run_dir, path.name, f"is not a JSON object but {type(value).__name__}")
    return value


def read_run(run_dir: Path | str) -> dict[str, Any]:
    """One finished run: ``{"run_id", "experiment", "spec", "summary", "env", "metrics"}``.

    Raises:
        ZerolossInputError: a file of the run is missing or unreadable (the message names the run folder).
    """
    run_dir = Path(run_dir)
    head = _read_json_object(run_dir / "spec.json", run_dir)
    if not isinstance(head.get("experiment"), str) or not isinstance(head.get("spec"), dict):
        raise _corrupt(run_dir, "spec.json", "lacks the keys experiment (text) and spec (object)")
    env_path = run_dir / "env.json"
    try:
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
    except Exception as exc:  # pyarrow raises several types (ArrowInvalid, OSError, ...) for a damaged file
        raise _corrupt(run_dir, "metrics.parquet", exc) from None
    missing = [c for c in ("step", "metric", "value") if c not in metrics.columns]
    if missing:
        raise _corrupt(run_dir, "metrics.parquet", f"lacks the columns {', '.join(missing)}")
    return {
        "run_id": run_dir.name,
        "experiment": head["experiment"],
        "spec": head["spec"],
        "summary": _read_json_object(run_dir / "summary.json", run_dir),
        "env": _read_json_object(env_path, run_dir) if env_path.is_file() else {},
        "metrics": metrics,
    }


def read_manifest(sweep_dir: Path | str) -> dict[str, Any]:
    """The manifest ``sweep.json`` of a results folder (``{}`` when there is none).

    Raises:
        ZerolossInputError: it is unreadable or lacks ``experiment`` / ``run_ids``.
    """
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ZerolossInputError(f"{path}: unreadable zeroloss manifest: {exc}") from None
    if (not isinstance(body, dict) or not isinstance(body.get("experiment"), str)
            or not isinstance(body.get("run_ids"), list)
            or not all(isinstance(r, str) and is_run_id(r) for r in body["run_ids"])):
        raise ZerolossInputError(f"{path}: unreadable zeroloss manifest: needs experiment (text) and run_ids "
                                 "(a list of run ids)")
    return body


def _is_run_folder(path: Path) -> bool:
    return folder_kind(path) in RUN_KINDS and ((path / RUNS).is_dir() or (path / MANIFEST).is_file())


def sweep_dirs(path: Path | str, field: str = "path") -> list[Path]:
    """The results folders under ``path`` that hold runs: ``path`` itself when it is one, else its children that are.

    Raises:
        ZerolossInputError: ``path`` is not a folder, or is an earlier version's ``train`` / ``two-timescale``
            output (its own schema, which :func:`load` does not read).
    """
    path = Path(path)
    if not path.is_dir():
        raise ZerolossInputError(f"{field}: not a folder, got {str(path)!r}")
    if is_legacy_single_run(path):
        raise ZerolossInputError(f"{field}: {path} is a `zeroloss {folder_kind(path)}` output of an earlier "
                                 "zeroloss version, in its own format; read its metrics.parquet with pandas, or run "
                                 "the command again to get the run format that load() reads")
    if _is_run_folder(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and _is_run_folder(p))


def finished_run_dirs(sweep_dir: Path | str, all_runs: bool = False) -> list[Path]:
    """Finished run folders of one results folder: the manifest's runs (all finished runs if ``all_runs``)."""
    store = RunStore(sweep_dir)
    done = store.done_ids()
    manifest = read_manifest(sweep_dir)
    if manifest and not all_runs:
        ids = [rid for rid in manifest["run_ids"] if rid in done]
    else:
        ids = sorted(done)
    return [store.run_dir(rid) for rid in ids]


def _run_frame(run: dict[str, Any]) -> pd.DataFrame:
    metrics = run["metrics"]
    if metrics.empty:  # keep a run without metric rows visible through its spec and summary
        metrics = pd.DataFrame({"step": [np.nan], "metric": [None], "value": [np.nan]})
    taken = {"run_id", "experiment", *metrics.columns}
    constant: dict[str, Any] = {}
    for key, v in flatten(run["spec"]).items():
        if key not in taken:
            constant[key] = v
            taken.add(key)
    for key, v in flatten(run["summary"]).items():
        constant[key if key not in taken else f"summary.{key}"] = v

    def columns(values: dict[str, Any]) -> pd.DataFrame:
        # one frame built at once (not a column at a time: ~15 ms a run); a tuple is one cell per row
        cells = {k: [v] * len(metrics) if isinstance(v, tuple) else v for k, v in values.items()}
        return pd.DataFrame(cells, index=metrics.index)

    head = columns({"run_id": run["run_id"], "experiment": run["experiment"]})
    return pd.concat([head, metrics, columns(constant)], axis=1)


def empty_frame() -> pd.DataFrame:
    """A tidy table with no rows (what a results folder without finished runs contributes)."""
    return pd.DataFrame(columns=list(METRIC_COLUMNS))


def _run_dirs(path: Path | str, all_runs: bool) -> list[Path]:
    """Every finished run folder :func:`load` reads under ``path``; an error when there is none."""
    dirs = sweep_dirs(path)
    if not dirs:
        raise ZerolossInputError(f"path: {path} holds no zeroloss runs (no {MARKER} marker, {MANIFEST} or "
                                 f"{RUNS}/<id>/_SUCCESS, here or in its sub-folders)")
    run_dirs = [d for s in dirs for d in finished_run_dirs(s, all_runs)]
    if not run_dirs:
        listed = sum(len(read_manifest(s).get("run_ids", [])) for s in dirs)
        raise ZerolossInputError(f"path: {path} holds no finished zeroloss run yet ({listed} listed by its "
                                 "manifest); run or resume the command that writes it")
    return run_dirs


def load(path: Path | str, all_runs: bool = False) -> pd.DataFrame:
    """One tidy DataFrame of a results folder (finished runs only: those with ``_SUCCESS``).

    One row per (run, step, metric) with columns ``run_id``, ``experiment``, ``step``, ``metric``, ``value``,
    any other metric columns, the spec flattened with dotted names (``net.width``), then the summary columns
    (a summary key equal to a column already present is prefixed ``summary.``).

    Args:
        path: a results folder of ``zeroloss sweep``, ``train`` or ``two-timescale``, or a ``zeroloss reproduce``
            folder (its experiment folders are concatenated).
        all_runs: include every finished run in the folder, not only those of its latest manifest.

    Raises:
        ZerolossInputError: ``path`` holds no zeroloss runs, none has finished yet, or a stored run or manifest
            cannot be read (the message names it).

    Examples:
        >>> import tempfile, pandas as pd
        >>> from zeroloss.papers.base import RunOutput
        >>> out = tempfile.mkdtemp()
        >>> _ = RunStore(out).write("demo", {"seed": 0}, RunOutput(pd.DataFrame(
        ...     {"step": [0, 1], "metric": "loss", "value": [1.0, 0.5]}), {}))
        >>> load(out)[["step", "value", "seed", "diverged"]].to_dict("list")
        {'step': [0, 1], 'value': [1.0, 0.5], 'seed': [0, 0], 'diverged': [False, False]}
    """
    frames = [_run_frame(read_run(d)) for d in _run_dirs(path, all_runs)]
    return pd.concat(frames, ignore_index=True, sort=False)


def load_runs(path: Path | str, all_runs: bool = False) -> pd.DataFrame:
    """One row per finished run: ``run_id``, ``experiment``, flattened spec and summary columns.

    Raises:
        ZerolossInputError: as :func:`load`.
    """
    rows = []
    for run_dir in _run_dirs(path, all_runs):
        run = read_run(run_dir)
        row = {"run_id": run["run_id"], "experiment": run["experiment"], **flatten(run["spec"])}
        for key, v in flatten(run["summary"]).items():
            row[key if key not in row else f"summary.{key}"] = v
        rows.append(row)
    return pd.DataFrame(rows)
