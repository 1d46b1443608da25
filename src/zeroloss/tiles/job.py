"""The driver of a kernel job: plan, budget, resume, run the tiles on an executor, record each as it returns.

:func:`kernel_job` computes K(X, X) (symmetric: upper-triangle tiles only) or K(X, X2) into a zarr folder
(:mod:`zeroloss.tiles.store`), tile by tile on ``local``, ``process`` or ``ray``
(:mod:`zeroloss.sweep.executors`, the sweeps' executors: dead workers are replaced and their tiles resubmitted,
Ray retries). Before anything is allocated or written it states the peak memory of one tile per worker and
compares it with the budget (``memory_budget``: per worker). Running the same call again after a kill of the
driver or of a worker, at any moment, computes exactly the tiles without a record; each tile is a pure function of
its inputs, rows, columns and the kernel spec, so the result is bit for bit the uninterrupted one (same tile size,
device and thread count). Two drivers on one folder refuse each other (the store's lock), and resuming with
other inputs, another kernel or another model is refused in one line.

Examples:
    >>> import tempfile, numpy as np
    >>> from zeroloss.data import sphere_data
    >>> from zeroloss.tiles import open_kernel
    >>> X, _ = sphere_data(n=10, d=3, seed=0)
    >>> out = tempfile.mkdtemp() + "/K.zarr"
    >>> params = {"net": "fc", "depth": 2, "activation": "erf", "kind": "ntk"}
    >>> result = kernel_job(X, "limit", params=params, out=out, block=4, progress=False)
    >>> result.tiles, result.computed                    # 3 × 3 grid, upper triangle
    (6, 6)
    >>> K = open_kernel(out).numpy()
    >>> bool(np.allclose(K, K.T)), K.shape
    (True, (10, 10))
    >>> kernel_job(X, "limit", params=params, out=out, block=4, progress=False).computed   # nothing left to do
    0
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroloss.budget import ARGUMENT, Budget, check_memory, format_bytes, resolve_budget
from zeroloss.errors import ZerolossInputError, choice
from zeroloss.tiles.kinds import KernelSpec, get_kind, prepare_spec, tile_memory_bytes
from zeroloss.tiles.plan import DEFAULT_BLOCK, Tile, TilePlan
from zeroloss.tiles.store import (
    FORMAT,
    array_fingerprint,
    check_resume,
    clean_job,
    create_job,
    kernel_fingerprint,
    read_job,
    read_records,
    write_record,
)
from zeroloss.tiles.task import TileTask, run_tile, tile_values

DTYPES = ("float64", "float32")


@dataclass
class DryRun:
    """What a job will do, stated before it starts (``--dry-run``)."""

    tiles: int
    done: int
    block: int
    bytes_on_disk: int
    worker_bytes: int
    tile_seconds: float
    tile_pairs: int
    to_do_pairs: int
    workers: int

    @property
    def estimated_seconds(self) -> float:
        """Remaining pairs × the measured seconds per pair, shared by the workers (perfect scaling assumed)."""
        return self.to_do_pairs * self.tile_seconds / max(1, self.tile_pairs) / self.workers

    def lines(self) -> list[str]:
        return [f"tiles: {self.tiles} of {self.block} x {self.block} ({self.done} done, {self.tiles - self.done} "
                f"to compute)",
                f"bytes on disk: {format_bytes(self.bytes_on_disk)}",
                f"peak memory per worker: {format_bytes(self.worker_bytes)}",
                f"one tile measured: {self.tile_seconds:.3g} s for {self.tile_pairs} pairs "
                f"({self.tile_seconds / max(1, self.tile_pairs) * 1e9:.3g} ns per pair)",
                f"estimated time: {_duration(self.estimated_seconds)} on {self.workers} worker(s)"]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class KernelJobResult:
    """What a job did: its folder, the tiles of the plan, those already done when it started, those computed now,
    the tiles that failed (their error's last line), the wall seconds, and the dry run when one was asked for."""

    path: Path
    tiles: int
    done_before: int
    computed: int
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: DryRun | None = None

    @property
    def complete(self) -> bool:
        return self.dry_run is None and self.done_before + self.computed == self.tiles


_ADDRESS = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):([0-9]{1,5})")


def check_address(address: str | None) -> None:
    """``--address`` is the HOST:PORT (or ray://HOST:PORT) of a Ray cluster's head, port 1–65535; None: a private
    local instance. Checked before anything starts, so a typo is a one-line error, not a Ray time-out."""
    if address is None:
        return
    match = _ADDRESS.fullmatch(address.strip()) if isinstance(address, str) else None
    if match is None or not 1 <= int(match.group(3)) <= 65535:
        raise ZerolossInputError(f"--address: must be HOST:PORT (or ray://HOST:PORT) of a Ray cluster's head, "
                                 f"got {address!r}; leave it out for a private local instance")


def _as_inputs(X: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X)
    except (TypeError, ValueError):
        raise ZerolossInputError(f"{name}: must be an array of numbers, got {type(X).__name__}") from None
    if a.dtype.kind not in "fiu" or a.ndim < 2 or a.shape[0] == 0:
        raise ZerolossInputError(f"{name}: must be a non-empty numeric array (n, ...), got dtype {a.dtype} "
                                 f"shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ZerolossInputError(f"{name}: contains NaN or inf entries")
    return a


def _spec(kind: str, params: dict[str, Any] | None, model: Any, model_width: int | None, model_seed: int,
          X: np.ndarray) -> KernelSpec:
    get_kind(kind)
    params = dict(params or {})
    blob = None
    if model is not None:
        from zeroloss.tiles.models import serialise_model

        extra, blob = serialise_model(model, model_width, model_seed)
        params.update(extra)
    elif kind in ("entk", "infinite"):
        raise ZerolossInputError(f"model: the {kind} kernel needs a model (an nn.Module or 'FILE.py:FACTORY')")
    return prepare_spec(torch.as_tensor(X), KernelSpec(kind, params, blob))


def _job_dict(spec: KernelSpec, X1: np.ndarray, X2: np.ndarray | None, block: int, dtype: str) -> dict[str, Any]:
    from zeroloss.tiles.models import model_fingerprint
    from zeroloss.version import __version__

    n2 = X1.shape[0] if X2 is None else X2.shape[0]
    return {"format": FORMAT, "kind": spec.kind, "params": dict(spec.params), "shape": [X1.shape[0], n2],
            "symmetric": X2 is None, "block": block, "dtype": dtype, "zeroloss": __version__,
            "fingerprint": {"inputs": array_fingerprint(X1, X2), "kernel": kernel_fingerprint(spec),
                            "model": model_fingerprint(spec)}}


def worker_memory_bytes(plan: TilePlan, X1: np.ndarray, X2: np.ndarray | None, spec: KernelSpec,
                        dtype: str) -> int:
    """Peak memory of one worker: the inputs it holds, one full-size tile's computation (the kind's statement)
    and the tile's float64 values with their stored copy."""
    r, c = min(plan.block, plan.n1), min(plan.block, plan.n2)
    X = torch.as_tensor(X1[:1])
    inputs = X1.nbytes + (0 if X2 is None else X2.nbytes)
    return inputs + tile_memory_bytes(r, c, X, spec) + r * c * (8 + np.dtype(dtype).itemsize)


def kernel_job(
    X: Any,
    kind: str,
    *,
    out: str | Path,
    X2: Any = None,
    params: dict[str, Any] | None = None,
    model: Any = None,
    model_width: int | None = None,
    model_seed: int = 0,
    block: int = DEFAULT_BLOCK,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    threads: int = 1,
    memory_budget: int | str | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    budget_flag: str = ARGUMENT,
) -> KernelJobResult:
    """Compute the kernel ``kind`` of inputs X (and X2) into the zarr folder ``out``, tile by tile; resumable.

    Args:
        X: inputs (n1, ...) (array or tensor; stored and fingerprinted as float64).
        kind: a registered kind (:data:`zeroloss.tiles.kinds.KINDS`): ``"gram"``, ``"limit"``, ``"entk"``,
            ``"infinite"``.
        out: the job folder (conventionally ``K.zarr``); created, or resumed when it holds this same job.
        X2: inputs (n2, ...) for the cross kernel K(X, X2) (all tiles); None for the symmetric K(X, X).
        params: the kind's options (:mod:`zeroloss.tiles.kinds`: ``gram`` — net, width, depth, activation, seed,
            c_res, kernel_size, layer; ``limit`` — net, depth, activation, kind, c_res, kernel_size, nodes).
        model: for ``entk``: an ``nn.Module`` or ``"FILE.py:FACTORY"`` (built with ``model_width``,
            ``model_seed``); see :mod:`zeroloss.tiles.models`.
        block: tile side B (rows and columns per tile).
        executor, workers, address: ``local`` | ``process`` | ``ray`` as for sweeps
            (:func:`zeroloss.sweep.executors.make_executor`); with Ray and ``address`` the folder must be on a
            file system the cluster's workers share.
        dtype: stored dtype, ``"float64"`` or ``"float32"`` (tiles are always computed in float64).
        device: ``"cpu"`` or ``"cuda"`` (process workers take GPUs round robin; Ray asks one GPU per task).
        threads: intra-op threads per tile (1: results independent of the machine's core count).
        memory_budget: per-worker budget (bytes, ``"1GiB"`` or a :class:`~zeroloss.budget.Budget`; default
            :mod:`zeroloss.budget`'s); the statement of
            :func:`worker_memory_bytes` must fit before anything is written.
        dry_run: state the plan and time one tile here; write nothing.
        progress: a progress bar on stderr (tiles done, tiles/s, ETA); None: when stderr is a terminal.
        budget_flag: the setting a budget refusal names (``--max-bytes`` from the command line).

    Returns:
        :class:`KernelJobResult`.

    Raises:
        ZerolossInputError: bad options, a budget exceeded, a folder that is not this job's, another driver.
    """
    from zeroloss.sweep.executors import check_executor_options
    from zeroloss.threads import check_threads

    t_start = time.perf_counter()
    check_executor_options(executor, workers, address)
    check_address(address)
    choice(dtype, "--dtype", DTYPES)
    choice(device.split(":")[0], "--device", ("cpu", "cuda"))
    threads = check_threads(threads)
    X1 = _as_inputs(X, "--inputs")
    X2a = None if X2 is None else _as_inputs(X2, "--inputs2")
    if X2a is not None and X2a.shape[1:] != X1.shape[1:]:
        raise ZerolossInputError(f"--inputs2: must have the sample shape of --inputs {X1.shape[1:]}, got "
                                 f"{X2a.shape[1:]}")
    spec = _spec(kind, params, model, model_width, model_seed, X1 if X2a is None else np.concatenate([X1, X2a]))
    job = _job_dict(spec, X1, X2a, block, dtype)
    plan = TilePlan(job["shape"][0], job["shape"][1], block, job["symmetric"])
    budget = memory_budget if isinstance(memory_budget, Budget) else resolve_budget(memory_budget, budget_flag)
    need = worker_memory_bytes(plan, X1, X2a, spec, dtype)
    check_memory(need, budget, field="--block", flag=budget_flag, hint="use a smaller --block",
                 what=f"one {min(block, plan.n1)} x {min(block, plan.n2)} tile of the {kind} kernel (per worker)")

    from zeroloss.store import check_folder

    out = Path(os.path.abspath(out))
    state = check_folder(out, "kernel")
    existing = read_job(out) if state == "ours" else None
    if existing is not None:
        check_resume(out, existing, job)
    tiles = plan.tiles()
    records = read_records(out) if existing is not None else {}
    todo = [t for t in tiles if (t.i, t.j) not in records]
    n_workers = 1 if executor == "local" else (workers or os.cpu_count() or 1)
    if dry_run:
        probe = max(todo or tiles, key=lambda t: (t.pairs, not t.diagonal))
        payload = {"x1": X1, "x2": X2a, "kind": spec.kind, "params": dict(spec.params), "model": spec.model}
        warm = Tile(-1, probe.i, probe.j, (probe.rows[0], min(probe.rows[1], probe.rows[0] + 8)),
                    (probe.cols[0], min(probe.cols[1], probe.cols[0] + 8)))
        tile_values(payload, warm, plan.symmetric, device, threads)  # one-off costs (tables, caches) not timed
        t0 = time.perf_counter()
        tile_values(payload, probe, plan.symmetric, device, threads)
        info = DryRun(len(tiles), len(tiles) - len(todo), block, plan.bytes_on_disk(np.dtype(dtype).itemsize), need,
                      time.perf_counter() - t0, probe.pairs, sum(t.pairs for t in todo), n_workers)
        return KernelJobResult(out, len(tiles), len(tiles) - len(todo), 0, dry_run=info,
                               seconds=time.perf_counter() - t_start)
    return _run(out, job, plan, spec, X1, X2a, executor, workers, address, device, threads, dtype, progress,
                t_start)


def _run(out: Path, job: dict[str, Any], plan: TilePlan, spec: KernelSpec, X1: np.ndarray, X2: np.ndarray | None,
         executor: str, workers: int | None, address: str | None, device: str, threads: int, dtype: str,
         progress: bool | None, t_start: float) -> KernelJobResult:
    from zeroloss.store import claim_folder, sweep_lock
    from zeroloss.sweep.executors import make_executor

    claim_folder(out, "kernel")
    with sweep_lock(out):
        existing = read_job(out)  # again, under the lock: another driver may have created it meanwhile
        if existing is None:
            create_job(out, job, X1, X2, spec.model)
        else:
            check_resume(out, existing, job)
        clean_job(out)
        tiles = plan.tiles()
        records = read_records(out)
        todo = [t for t in tiles if (t.i, t.j) not in records]
        done_before = len(tiles) - len(todo)
        result = KernelJobResult(out, len(tiles), done_before, 0)
        if todo:
            with make_executor(executor, workers, device, address) as ex:
                key = job["fingerprint"]["inputs"][:16] + job["fingerprint"]["kernel"][:16]
                if ex.name == "ray":
                    payload = {"x1": X1, "x2": X2, "kind": spec.kind, "params": dict(spec.params),
                               "model": spec.model}
                    source = ex.put(payload)  # once, into the object store
                else:
                    source = str(out)
                tasks = [TileTask(k, t, str(out), source, key, plan.symmetric, device, threads, dtype)
                         for k, t in enumerate(todo)]
                _collect(out, ex.run(tasks, run_tile), todo, result, progress)
    result.seconds = time.perf_counter() - t_start
    return result


def _collect(out: Path, results: Any, todo: list[Tile], result: KernelJobResult, progress: bool | None) -> None:
    """Record each tile as its result arrives; show tiles done, throughput and ETA."""
    from tqdm.auto import tqdm

    disable = (not progress) if progress is not None else (not sys.stderr.isatty())
    bar = tqdm(total=result.tiles, initial=result.done_before, unit="tile", desc="kernel", disable=disable,
               file=sys.stderr, smoothing=0.1)
    pairs, t0 = 0, time.perf_counter()
    try:
        for res in results:
            tile = todo[res.index]
            if res.error is not None or not res.outputs:
                result.failed[(tile.i, tile.j)] = (res.error or "no output").strip().splitlines()[-1]
                continue
            write_record(out, tile, res.outputs[0])
            result.computed += 1
            pairs += tile.pairs
            bar.update(1)
            with contextlib.suppress(ZeroDivisionError):
                bar.set_postfix_str(f"{pairs / (time.perf_counter() - t0):.3g} pairs/s", refresh=False)
    finally:
        bar.close()


def estimate_job(n: int, pair_seconds: float, *, gpus: int = 1, itemsize: int = 8, block: int = DEFAULT_BLOCK,
                 symmetric: bool = True, efficiency: float = 1.0) -> dict[str, float]:
    """Wall time and storage of an n × n job from a measured per-pair cost (seconds per kernel entry on one
    worker): pairs = the plan's tiles' entries, wall = pairs × pair_seconds / (gpus × efficiency), disk = the
    plan's chunk bytes.

    Examples:
        >>> e = estimate_job(60_000, 1e-6, gpus=8)
        >>> round(e["pairs"] / 1e9, 2), round(e["hours"], 2), round(e["disk_gib"], 1)
        (1.86, 0.06, 14.5)
    """
    if n < 1 or pair_seconds <= 0 or gpus < 1 or not 0 < efficiency <= 1:
        raise ZerolossInputError("estimate_job: n, pair_seconds, gpus must be positive and efficiency in (0, 1]")
    plan = TilePlan(n, n, block, symmetric)
    T = math.ceil(n / block)
    pairs = plan.pairs() if T <= 2000 else (T * (T + 1) // 2) * block * block  # the exact sum is O(T²) to list
    wall = pairs * pair_seconds / (gpus * efficiency)
    disk = (T * (T + 1) // 2 if symmetric else T * T) * block * block * itemsize
    return {"pairs": float(pairs), "seconds": wall, "hours": wall / 3600, "disk_bytes": float(disk),
            "disk_gib": disk / 2**30}
