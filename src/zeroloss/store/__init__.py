"""The store: every results folder zeroloss writes, in one format, and who may touch what.

- :mod:`~zeroloss.store.atomic` — the package's one atomic writer, temporary names, umask permissions, parents.
- :mod:`~zeroloss.store.ownership` — the ``.zeroloss`` marker and the ownership rule: zeroloss writes into,
  deletes or replaces only what it can prove it made; earlier versions' folders adopted by their manifest.
- :mod:`~zeroloss.store.runs` — run ids, :class:`RunStore` (one run folder per run, atomically), the sweep lock.
- :mod:`~zeroloss.store.load` — :func:`load` / :func:`load_runs`: any results folder → one tidy DataFrame.

Examples:
    >>> import tempfile, pandas as pd
    >>> from zeroloss.papers.base import RunOutput
    >>> out = tempfile.mkdtemp()
    >>> _ = RunStore(out).write("demo", {"seed": 1}, RunOutput(pd.DataFrame(
    ...     {"step": [0], "metric": "loss", "value": [2.0]}), {"final_loss": 2.0}))
    >>> load_runs(out)[["seed", "final_loss", "diverged"]].to_dict("records")
    [{'seed': 1, 'final_loss': 2.0, 'diverged': False}]
"""

from zeroloss.store.atomic import atomic_write_bytes, ensure_parent, json_bytes, output_errors, to_jsonable
from zeroloss.store.load import (
    METRIC_COLUMNS,
    empty_frame,
    finished_run_dirs,
    flatten,
    load,
    load_runs,
    read_manifest,
    read_run,
    sweep_dirs,
)
from zeroloss.store.ownership import (
    CLAIMS,
    KINDS,
    MANIFEST,
    MARKER,
    REPORT,
    REPRODUCE_MANIFEST,
    RUN_ID_LENGTH,
    SUCCESS,
    building_folder,
    check_folder,
    claim_folder,
    clean_folder,
    folder_kind,
)
from zeroloss.store.runs import (
    RunStore,
    canonical_json,
    cpu_name,
    environment,
    now_iso,
    python_command,
    run_id,
    sweep_lock,
)

__all__ = [
    "CLAIMS",
    "KINDS",
    "MANIFEST",
    "MARKER",
    "METRIC_COLUMNS",
    "REPORT",
    "REPRODUCE_MANIFEST",
    "RUN_ID_LENGTH",
    "SUCCESS",
    "RunStore",
    "atomic_write_bytes",
    "building_folder",
    "canonical_json",
    "check_folder",
    "claim_folder",
    "clean_folder",
    "cpu_name",
    "empty_frame",
    "ensure_parent",
    "environment",
    "finished_run_dirs",
    "flatten",
    "folder_kind",
    "json_bytes",
    "load",
    "load_runs",
    "now_iso",
    "output_errors",
    "python_command",
    "read_manifest",
    "read_run",
    "run_id",
    "sweep_dirs",
    "sweep_lock",
    "to_jsonable",
]
