"""One tile task and the function a worker runs for it: compute the tile, write its chunk, return its checksum.

:func:`run_tile` is the function the executors of :mod:`zeroloss.sweep.executors` run for a kernel job (they call
``fn(task)`` on a local loop, a spawn-context process pool or Ray tasks). It never raises: an exception comes back
as the :class:`~zeroloss.sweep.executors.BatchResult`'s error text, a dead worker as the executor's retry.

The inputs reach a worker once, not once per task: a process worker reads the job folder's ``inputs/*.npy`` (memory
mapped) and ``model.pt``; a Ray task gets a reference to one object holding them (``ray.put`` by the driver, read
from the node's object store). Either way the worker keeps them, and the net or model it builds, for the next tile
of the same job (per-process caches keyed by the job's fingerprint).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroloss.sweep.executors import BatchResult
from zeroloss.tiles.kinds import KernelSpec, cached, compute_tile
from zeroloss.tiles.plan import Tile


@dataclass(frozen=True)
class TileTask:
    """One tile of one job: where the job lives (``out``), where its inputs come from (``source``: the job folder,
    or a Ray object reference to the payload), and how to compute (device, intra-op threads, stored dtype)."""

    index: int
    tile: Tile
    out: str
    source: Any
    job_key: str
    symmetric: bool
    device: str = "cpu"
    threads: int = 1
    dtype: str = "float64"


def payload_from_folder(out: str) -> dict[str, Any]:
    """The inputs, kernel spec and model of the job in ``out`` (inputs memory-mapped)."""
    folder = Path(out)
    job = json.loads((folder / "job.json").read_text())
    x2 = folder / "inputs" / "x2.npy"
    model = folder / "model.pt"
    return {"x1": np.load(folder / "inputs" / "x1.npy", mmap_mode="r"),
            "x2": np.load(x2, mmap_mode="r") if x2.is_file() else None,
            "kind": job["kind"], "params": job["params"], "model": model.read_bytes() if model.is_file() else None}


def _payload(task: TileTask) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        if isinstance(task.source, str):
            return payload_from_folder(task.source)
        import ray

        return ray.get(task.source)

    return cached(f"payload:{task.job_key}", load)


def _device(task: TileTask) -> str:
    from zeroloss.sweep import executors

    if task.device.startswith("cuda") and executors._WORKER_DEVICE is not None:
        return executors._WORKER_DEVICE  # the process pool's round-robin GPU of this worker
    return task.device


def _array(out: str) -> Any:
    import zarr

    return cached(f"zarr:{out}", lambda: zarr.open_array(store=out, mode="r+"))


def tile_values(payload: dict[str, Any], tile: Tile, symmetric: bool, device: str, threads: int) -> np.ndarray:
    """The float64 values of ``tile`` (rows × cols) of the job described by ``payload``, computed here."""
    import torch

    from zeroloss.threads import intra_op_threads

    x1, x2 = payload["x1"], payload["x2"]
    spec = KernelSpec(payload["kind"], payload["params"], payload["model"])
    (a, b), (c, d) = tile.rows, tile.cols
    X1 = torch.as_tensor(np.array(x1[a:b])).to(device)
    if symmetric and tile.diagonal:
        X2 = None
    else:
        X2 = torch.as_tensor(np.array((x1 if x2 is None else x2)[c:d])).to(device)
    with intra_op_threads(threads):
        K = compute_tile(X1, X2, spec)
    return K.detach().cpu().numpy()


def run_tile(task: TileTask) -> BatchResult:
    """Compute ``task``'s tile, write it as its chunk, return ``[{"sha256", "seconds", "compute_seconds", ...}]``
    (``seconds``: input, compute, write and checksum in the worker; ``compute_seconds``: the tile's values alone);
    never raises."""
    from zeroloss.tiles.store import raw_bytes_codec, tile_checksum, write_chunk

    t0 = time.perf_counter()
    device = task.device
    try:
        device = _device(task)
        values = tile_values(_payload(task), task.tile, task.symmetric, device, task.threads)
        computed = time.perf_counter() - t0
        stored = np.ascontiguousarray(values, dtype=np.dtype(task.dtype).newbyteorder("<"))
        array = _array(task.out)
        if not raw_bytes_codec(array):
            raise RuntimeError(f"{task.out}: the array's chunks are not raw little-endian bytes (zarr codecs "
                               f"{array.metadata.codecs}); a kernel job writes only arrays that create_job made")
        # the checksum is computed beside the chunk write (hashlib releases the GIL on large buffers): the two
        # passes over the tile's bytes overlap instead of adding up
        with ThreadPoolExecutor(max_workers=1) as hasher:
            checksum = hasher.submit(tile_checksum, stored)
            write_chunk(Path(task.out), task.tile, stored, tuple(array.chunks))
            digest = checksum.result()
        info = {"sha256": digest, "seconds": time.perf_counter() - t0, "compute_seconds": computed, "device": device,
                "threads": task.threads, "pid": os.getpid()}
        return BatchResult(task.index, [info], None)
    except Exception:  # returned, not raised: the driver reports it
        return BatchResult(task.index, None, traceback.format_exc())
