"""The sweep driver: hash, skip what is done, batch the rest, execute, write each run as its batch returns.

Resumability: a run is done exactly when ``runs/<id>/_SUCCESS`` exists, and a run directory appears only
complete (see :mod:`zeroloss.store`). So killing a sweep at any moment and running it again runs exactly the
runs that are missing, and the set of runs and their values equal an uninterrupted sweep's (the same ids; the
same values up to float round-off when a resumed ensemble holds fewer members than the original batch).

Failures: a member that diverges is a result (``summary["diverged"]``), never an error. A batch whose
``run_batch`` raises is retried one run at a time, so one bad configuration does not sink its neighbours; a
run that still raises is reported in :attr:`SweepResult.failed` and the sweep goes on.

Examples:
    >>> from zeroloss.sweep.runner import resolve_device
    >>> resolve_device("cpu")
    'cpu'
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from zeroloss.errors import choice
from zeroloss.store import RunStore, run_id, sweep_lock
from zeroloss.store.ownership import claim_folder, removed_on_failure
from zeroloss.sweep.checks import validate_runs
from zeroloss.sweep.executors import Executor, Task, make_executor
from zeroloss.sweep.versions import ENV_KEY as VERSION_KEY
from zeroloss.sweep.versions import result_version
from zeroloss.threads import check_threads

if TYPE_CHECKING:  # zeroloss.papers imports every paper module (and matplotlib)
    from zeroloss.papers.base import Experiment, Spec


@dataclass
class SweepResult:
    """What a sweep did: its run ids (in spec order), how many ran now / were already done, and problems."""

    out: Path
    experiment: str
    run_ids: list[str]
    ran: int = 0
    skipped: int = 0
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: finished runs computed by other code (another result version): recomputed, or kept when asked
    stale_recomputed: list[str] = field(default_factory=list)
    stale_kept: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def reuse_notes(self) -> list[str]:
        """What this sweep took from earlier runs rather than computing, one line each (empty when nothing)."""
        notes = []
        reused = self.skipped - len(self.stale_kept)
        if reused:
            notes.append(f"note: {self.experiment}: {reused} finished runs of the same code reused from {self.out}")
        if self.stale_recomputed:
            notes.append(f"note: {self.experiment}: {len(self.stale_recomputed)} finished runs were computed by other "
                         "code (another result version) and were run again")
        if self.stale_kept:
            notes.append(f"warning: {self.experiment}: {len(self.stale_kept)} finished runs computed by other code "
                         "(another result version) were kept (--keep-stale); the report says so")
        return notes


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without CUDA is an input error."""
    from zeroloss.devices import resolve_device as resolve

    choice(device.split(":")[0], "--device", ("auto", "cpu", "cuda"))
    return str(resolve(device, "--device"))


def unique_runs(experiment: str, specs: Sequence[Spec]) -> list[tuple[str, Spec]]:
    """(id, spec) for each distinct run, first occurrence order (identical specs are one run)."""
    seen: dict[str, Spec] = {}
    for spec in specs:
        seen.setdefault(run_id(experiment, spec), spec)
    return list(seen.items())


def plan_batches(experiment: Experiment, runs: Sequence[tuple[str, Spec]]) -> list[list[tuple[str, Spec]]]:
    """Group runs by ``experiment.batch_key`` (first-appearance order): each group trains as one ensemble."""
    groups: dict[str, list[tuple[str, Spec]]] = {}
    for rid, spec in runs:
        groups.setdefault(experiment.batch_key(spec), []).append((rid, spec))
    return list(groups.values())


def run_sweep(
    experiment: Experiment,
    specs: Sequence[Spec],
    out: Path | str,
    executor: str | Executor = "local",
    device: str = "auto",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    manifest: dict[str, Any] | None = None,
    threads: int | None = None,
    keep_stale: bool = False,
) -> SweepResult:
    """Run (or resume) ``specs`` of ``experiment`` into the sweep directory ``out``.

    Args:
        experiment: a registered :class:`~zeroloss.papers.base.Experiment`.
        specs: run specs (JSON-ready dicts); duplicates are run once.
        out: sweep folder; finished runs go to ``out/runs/<id>/``, the run list to ``out/sweep.json``. It must be
            missing, empty, or a zeroloss sweep folder (``ZerolossInputError`` otherwise: nothing is written).
        executor: ``local``, ``process``, ``ray`` or an :class:`Executor` instance (left open).
        device: ``auto``, ``cpu``, ``cuda`` (``cuda:k``).
        workers: pool size for ``process`` / CPUs for a local ``ray``.
        address: Ray cluster address.
        progress: show a tqdm bar over runs on stderr (hidden when stderr is not a terminal).
        manifest: extra fields for ``sweep.json`` (scale, command, sweep file).
        threads: intra-op threads of each run (None: :data:`zeroloss.threads.DEFAULT_THREADS`); fixed
            for the run whatever the process's count, restored afterwards, recorded in env.json.
        keep_stale: keep finished runs whose result version (:mod:`zeroloss.sweep.versions`) is not the
            current code's, instead of recomputing them; they are listed in ``result.stale_kept`` and in
            ``sweep.json`` (so the report says so).

    Returns:
        :class:`SweepResult`.
    """
    device = resolve_device(device)
    threads = check_threads(threads)
    validate_runs(experiment, specs)  # every run's values, before anything is hashed or created
    runs = unique_runs(experiment.name, specs)
    # The folder is claimed: created when missing, refused when it is a non-empty folder zeroloss did not make (see
    # zeroloss.store.ownership); if this call created it and fails before a run is stored, it is removed again.
    with removed_on_failure(out):
        return _run_claimed(experiment, runs, out, executor, device, workers, address, progress, manifest, threads,
                            keep_stale)


def _run_claimed(experiment: Experiment, runs: list[tuple[str, Spec]], out: Path | str, executor: str | Executor,
                 device: str, workers: int | None, address: str | None, progress: bool,
                 manifest: dict[str, Any] | None, threads: int, keep_stale: bool) -> SweepResult:
    ids = [rid for rid, _ in runs]
    claim_folder(out, "sweep")
    store = RunStore(out, "sweep", field="--out")
    result = SweepResult(Path(out), experiment.name, ids)
    module = experiment.run_batch.__module__
    version = result_version(experiment)
    with sweep_lock(out):
        store.clean_stale()  # only zeroloss's own leftovers: run temporaries, runs without _SUCCESS, .NAME.*.tmp
        done = store.done_ids()
        stale = [rid for rid in ids if rid in done and store.result_version(rid) != version]
        if keep_stale:
            result.stale_kept = stale
        else:
            for rid in stale:  # computed by other code: never reused silently
                store.discard(rid)
            result.stale_recomputed = stale
            done -= set(stale)
        store.write_manifest(experiment.name, ids, {"specs": [s for _, s in runs], "result_version": version,
                                                    "stale_kept": result.stale_kept, **(manifest or {})})
        pending = [(rid, spec) for rid, spec in runs if rid not in done]
        result.skipped = len(runs) - len(pending)
        if not pending:
            return result
        own = isinstance(executor, str)
        ex = make_executor(executor, workers, device, address) if isinstance(executor, str) else executor
        bar = tqdm(total=len(runs), initial=result.skipped, unit="run", desc=experiment.name, file=sys.stderr,
                   disable=None if progress else True, dynamic_ncols=True)
        try:
            batches = plan_batches(experiment, pending)
            while batches:
                tasks = [Task(i, experiment.name, module, [s for _, s in b], device, threads)
                         for i, b in enumerate(batches)]
                retry: list[list[tuple[str, Spec]]] = []
                for res in ex.run(tasks):
                    batch = batches[res.index]
                    if res.outputs is None:
                        if len(batch) > 1:
                            retry.extend([[run] for run in batch])  # isolate the failing configuration
                        else:
                            result.failed[batch[0][0]] = res.error or "unknown error"
                            bar.update(1)
                        continue
                    for (rid, spec), output in zip(batch, res.outputs, strict=True):
                        env = {**res.env, "dtype": spec.get("dtype", res.env.get("dtype")),
                               "executor": ex.name, VERSION_KEY: version}
                        store.write(experiment.name, spec, output, env)
                        result.ran += 1
                        if bool(output.summary.get("diverged", False)):
                            result.diverged.append(rid)
                        bar.update(1)
                batches = retry
        finally:
            bar.close()
            if own:
                ex.close()
    # a run whose experiment did not say "diverged" is classified by the store; pick those up too
    result.diverged = sorted(set(result.diverged) | _diverged_in_store(store, ids))
    return result


def _diverged_in_store(store: RunStore, ids: Sequence[str]) -> set[str]:
    import json

    out = set()
    for rid in ids:
        path = store.run_dir(rid) / "summary.json"
        if path.is_file() and json.loads(path.read_text()).get("diverged"):
            out.add(rid)
    return out
