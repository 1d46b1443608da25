"""The folder of a kernel job: a zarr v3 array (one chunk per tile) plus the job, its inputs and its tile records.

Layout of ``K.zarr`` (a results folder of kind ``kernel``: the store's ownership rules apply)::

    K.zarr/.zeroloss              marker (kind "kernel"), written first
    K.zarr/.lock                  flock of the one driver writing the job (released by the kernel on kill -9)
    K.zarr/zarr.json              the zarr v3 array: shape (n1, n2), chunks (B, B), float64 or float32, no
                                  compression, fill value NaN (a tile never written reads as NaN)
    K.zarr/c/<i>/<j>              chunk (i, j) = tile (i, j), written by the worker that computed it
    K.zarr/inputs/x1.npy, x2.npy  the inputs (x2 only for a cross kernel), read by process workers
    K.zarr/model.pt               the serialised model of an ``entk`` job
    K.zarr/records/<i>_<j>.json   the tile's record: its sha256 (of the chunk's values as stored), seconds
                                  (in the worker) and compute_seconds (the values alone), device, worker pid —
                                  written atomically by the driver once the chunk is written
    K.zarr/job.json               the job: kind, params, shape, block, dtype, fingerprints — written last when the
                                  job is created, so a folder without it holds no finished tile

A tile is complete exactly when its record exists: the record is written after the worker reports the chunk
written, and a chunk is replaced only by rename (:func:`write_chunk`: a temporary ``.<j>.<8 hex>.tmp``, fsync,
rename). A kill at any moment therefore leaves complete tiles and, at worst, a chunk without a record or a dead
writer's temporary: the next start removes those temporaries and recomputes the tiles without a record.

Fingerprints: sha256 of the inputs (dtype float64, shape and bytes, for X1 and X2), of the kernel (kind and
params, canonical JSON) and of the model (:func:`zeroloss.tiles.models.model_fingerprint`). A job is resumed only
when all three, the block and the dtype match; otherwise a one-line error names what differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zeroloss.errors import ZerolossInputError
from zeroloss.store.atomic import atomic_write_bytes, json_bytes, make_folder, output_errors, remove_stale_temporaries
from zeroloss.tiles.kinds import KernelSpec
from zeroloss.tiles.plan import Tile, TilePlan

JOB = "job.json"
INPUTS = "inputs"
MODEL = "model.pt"
RECORDS = "records"
CHUNKS = "c"
FORMAT = 1
_RECORD = re.compile(r"(\d+)_(\d+)\.json")


def array_fingerprint(*arrays: np.ndarray | None) -> str:
    """sha256 over each array's float64 values (shape and C-order bytes); None counts as absent."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(f"{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


#: Params that identify the model (its own fingerprint), left out of the kernel's.
MODEL_KEYS = frozenset({"model_sha256", "file_sha256"})


def kernel_fingerprint(spec: KernelSpec) -> str:
    from zeroloss.store.runs import canonical_json

    params = {k: v for k, v in spec.params.items() if k not in MODEL_KEYS}
    return hashlib.sha256(canonical_json({"kind": spec.kind, "params": params}).encode()).hexdigest()


def tile_checksum(values: np.ndarray) -> str:
    """sha256 of a tile's values as stored (C order), read in place (no copy of the tile's bytes)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(values)).cast("B")).hexdigest()


def raw_bytes_codec(array: Any) -> bool:
    """Whether ``array``'s chunks are encoded by the ``bytes`` codec alone, little endian (as :func:`create_job`
    makes them): then a chunk is its values' raw bytes, which :func:`write_chunk` writes."""
    from zarr.codecs import BytesCodec

    codecs = tuple(array.metadata.codecs)
    return (len(codecs) == 1 and isinstance(codecs[0], BytesCodec) and codecs[0].endian is not None
            and codecs[0].endian.value == "little")


def write_chunk(out: Path, tile: Tile, values: np.ndarray, chunk_shape: tuple[int, int]) -> None:
    """Write ``values`` (the tile's rows × cols, little-endian C order, dtype as stored) as the zarr v3 chunk
    ``c/<i>/<j>`` of an array whose one codec is ``bytes`` (:func:`raw_bytes_codec`): the chunk's C-order bytes,
    padded to ``chunk_shape`` with the fill value NaN where the tile ends at the array's edge.

    Written from the tile's own buffer (zarr's writer copies a chunk twice on the way) by
    :func:`~zeroloss.store.atomic.atomic_write_bytes` — a temporary, fsync, rename; the folder's entry is flushed
    too: a chunk is on disk before its record can be written — and dropped from the page cache (the job never
    reads a chunk back), so the next chunk's write reuses its pages instead of taking new ones (on a VM that backs
    guest memory lazily, first-touch pages cost ≈ 10× more).
    """
    if values.shape != chunk_shape:
        padded = np.full(chunk_shape, np.nan, dtype=values.dtype)
        padded[: values.shape[0], : values.shape[1]] = values
        values = padded
    folder = out / CHUNKS / str(tile.i)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / str(tile.j), memoryview(np.ascontiguousarray(values)).cast("B"),
                       drop_from_cache=True)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_job(out: Path) -> dict[str, Any] | None:
    """The job.json of ``out``, or None when there is none (yet)."""
    try:
        data = json.loads((Path(out) / JOB).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ZerolossInputError(f"--out: {Path(out) / JOB} is not readable ({exc}); delete the folder to start "
                                 "again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ZerolossInputError(f"--out: {Path(out) / JOB} is not a kernel job of this zeroloss version")
    return data


#: What must match to resume a job, and the option named when it does not.
_RESUME_FIELDS = (("inputs", "--inputs", "other inputs"), ("kernel", "--kind", "another kernel (kind or options)"),
                  ("model", "--model", "another model"))


def check_resume(out: Path, job: dict[str, Any], want: dict[str, Any]) -> None:
    """Refuse (one line) to resume the job in ``out`` with other inputs, kernel, model, block or dtype."""
    for key, field, what in _RESUME_FIELDS:
        if job["fingerprint"].get(key) != want["fingerprint"].get(key):
            was, now = str(job["fingerprint"].get(key))[:12], str(want["fingerprint"].get(key))[:12]
            raise ZerolossInputError(f"{field}: {out} is a kernel job of {what} (fingerprint {was}, now {now}); "
                                     "choose another --out to compute this kernel")
    for key, field in (("block", "--block"), ("dtype", "--dtype"), ("shape", "--inputs")):
        if job[key] != want[key]:
            raise ZerolossInputError(f"{field}: {out} holds a job with {key} {job[key]}, not {want[key]}; resume it "
                                     f"with the same {field} or choose another --out")


def create_job(out: Path, job: dict[str, Any], X1: np.ndarray, X2: np.ndarray | None, model: bytes | None) -> None:
    """Write a new job into the claimed, locked, job-less folder ``out``: inputs, model, the zarr array, then
    job.json. Leftovers of a creation that was killed (our own names only) are removed first."""
    import zarr

    for name in (CHUNKS, INPUTS, RECORDS):
        if (out / name).is_dir() and not (out / name).is_symlink():
            shutil.rmtree(out / name)
    for name in ("zarr.json", MODEL):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    with output_errors("--out", out):
        make_folder(out / INPUTS)
        make_folder(out / RECORDS)
        for name, X in (("x1.npy", X1), ("x2.npy", X2)):
            if X is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(X))
                atomic_write_bytes(out / INPUTS / name, buffer.getbuffer())
        if model is not None:
            atomic_write_bytes(out / MODEL, model)
        n1, n2 = job["shape"]
        B = job["block"]
        zarr.create_array(store=str(out), shape=(n1, n2), chunks=(min(B, n1), min(B, n2)), dtype=job["dtype"],
                          fill_value=float("nan"), compressors=None, filters=None, zarr_format=3,
                          attributes={"zeroloss": {"kind": job["kind"], "symmetric": job["symmetric"]}})
        atomic_write_bytes(out / JOB, json_bytes(job))


def clean_job(out: Path) -> None:
    """Remove what dead writers left: the temporaries of chunks and of records whose writer is gone."""
    chunks = out / CHUNKS
    if chunks.is_dir():
        for row in os.scandir(chunks):
            if row.is_dir(follow_symlinks=False) and row.name.isdigit():
                _remove_dead_temporaries(Path(row.path), r"\d+")
    _remove_dead_temporaries(out / RECORDS, r"\d+_\d+\.json")


def _remove_dead_temporaries(folder: Path, names: str) -> None:
    """:func:`~zeroloss.store.atomic.remove_stale_temporaries` for every file name matching ``names`` that has a
    temporary in ``folder``."""
    if not folder.is_dir():
        return
    found = {m.group(1) for e in os.listdir(folder) if (m := re.fullmatch(rf"\.({names})\.[a-z0-9_]{{8}}\.tmp", e))}
    for name in found:
        remove_stale_temporaries(folder, name)


def read_records(out: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """Tile (i, j) → its record, for every complete tile of the job in ``out``."""
    out = Path(out)
    records: dict[tuple[int, int], dict[str, Any]] = {}
    try:
        entries = os.listdir(out / RECORDS)
    except FileNotFoundError:
        return records
    for name in entries:
        m = _RECORD.fullmatch(name)
        if m is None:
            continue
        try:
            data = json.loads((out / RECORDS / name).read_text())
        except (OSError, ValueError):
            continue  # unreadable (never a half-written one: records are atomic): the tile is redone
        if isinstance(data, dict) and isinstance(data.get("sha256"), str):
            records[(int(m.group(1)), int(m.group(2)))] = data
    return records


def write_record(out: Path, tile: Tile, info: dict[str, Any]) -> None:
    """Record tile ``tile`` as complete (atomically): its checksum and how it was computed."""
    record = {"tile": [tile.i, tile.j], "rows": list(tile.rows), "cols": list(tile.cols), **info}
    with output_errors("--out", out):
        atomic_write_bytes(out / RECORDS / f"{tile.i}_{tile.j}.json", json_bytes(record))


def plan_of(job: dict[str, Any]) -> TilePlan:
    n1, n2 = job["shape"]
    return TilePlan(n1, n2, int(job["block"]), bool(job["symmetric"]))
