"""Reading a finished kernel job: :func:`open_kernel` → :class:`StoredKernel` (lazy, or in memory when it fits).

A :class:`StoredKernel` behaves as the (n1 × n2) float64 matrix whatever is on disk: a symmetric job stores only
the tiles i ≤ j, and the reader mirrors (K[J, I] = K[I, J]ᵀ); float32 storage is returned as float64. It is read
lazily, one tile at a time (``K[a:b, c:d]``, :meth:`StoredKernel.tile`, :meth:`StoredKernel.matmul`, which streams
every stored tile once), unless it was loaded whole (``in_memory``; by default when the mirrored float64 matrix
fits the memory budget). :func:`zeroloss.predict_gd_mse` and :func:`zeroloss.tiles.solve` accept it.

Examples:
    >>> import tempfile, numpy as np
    >>> from zeroloss.data import sphere_data
    >>> from zeroloss.tiles import kernel_job
    >>> X, _ = sphere_data(n=7, d=3, seed=0)
    >>> out = tempfile.mkdtemp() + "/K.zarr"
    >>> _ = kernel_job(X, "limit", params={"net": "fc", "activation": "relu", "kind": "nngp"}, out=out, block=3,
    ...                progress=False)
    >>> lazy, whole = open_kernel(out, in_memory=False), open_kernel(out)
    >>> lazy.in_memory, whole.in_memory, bool(np.array_equal(lazy[2:6, 0:5], whole.numpy()[2:6, 0:5]))
    (False, True, True)
    >>> v = np.ones((7, 1)); bool(np.allclose(lazy.matmul(v), whole.numpy() @ v, rtol=1e-14))
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zeroloss.budget import ARGUMENT, check_memory, resolve_budget
from zeroloss.errors import ZerolossInputError
from zeroloss.tiles.store import plan_of, read_job, read_records, tile_checksum


class StoredKernel:
    """The kernel of a finished job in ``path`` (see the module docstring). ``shape``, ``symmetric``, ``block``,
    ``stored_dtype``; ``in_memory`` says whether the whole matrix was loaded."""

    #: Duck-typing flag: :func:`zeroloss.predict_gd_mse` recognises a stored kernel by it.
    is_stored_kernel = True

    def __init__(self, path: Path, job: dict[str, Any], records: dict[tuple[int, int], dict[str, Any]]) -> None:
        import zarr

        self.path = Path(path)
        self.job = job
        self.records = records
        self.plan = plan_of(job)
        self.shape = (self.plan.n1, self.plan.n2)
        self.symmetric = self.plan.symmetric
        self.block = self.plan.block
        self.stored_dtype = job["dtype"]
        self._array = zarr.open_array(store=str(self.path), mode="r")
        self._full: np.ndarray | None = None

    @property
    def in_memory(self) -> bool:
        return self._full is not None

    @property
    def nbytes(self) -> int:
        """Bytes of the whole float64 matrix in memory."""
        return 8 * self.shape[0] * self.shape[1]

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else "lazy"
        return (f"StoredKernel({str(self.path)!r}, shape={self.shape}, kind={self.job['kind']!r}, "
                f"symmetric={self.symmetric}, {where})")

    def _stored(self, i: int, j: int) -> np.ndarray:
        B = self.block
        a, b = i * B, min((i + 1) * B, self.shape[0])
        c, d = j * B, min((j + 1) * B, self.shape[1])
        return np.asarray(self._array[a:b, c:d], dtype=np.float64)

    def tile(self, i: int, j: int) -> np.ndarray:
        """Tile (i, j) as float64 (for a symmetric kernel, i > j is the transposed tile (j, i))."""
        if self._full is not None:
            B = self.block
            return self._full[i * B:(i + 1) * B, j * B:(j + 1) * B]
        if self.symmetric and i > j:
            return self._stored(j, i).T
        return self._stored(i, j)

    def __getitem__(self, key: Any) -> np.ndarray:
        """``K[a:b, c:d]`` (plain slices, no step) as a float64 array assembled from the tiles it overlaps."""
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)):
            raise ZerolossInputError("key: a stored kernel is indexed by two slices, K[a:b, c:d]")
        (r0, r1, rs), (c0, c1, cs) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        if rs != 1 or cs != 1:
            raise ZerolossInputError("key: slices of a stored kernel take no step")
        if self._full is not None:
            return self._full[r0:r1, c0:c1]
        out = np.empty((max(0, r1 - r0), max(0, c1 - c0)), dtype=np.float64)
        B = self.block
        for i in range(r0 // B, (max(r0, r1 - 1)) // B + 1 if r1 > r0 else 0):
            for j in range(c0 // B, (max(c0, c1 - 1)) // B + 1 if c1 > c0 else 0):
                t = self.tile(i, j)
                a, b = max(r0, i * B), min(r1, (i + 1) * B)
                c, d = max(c0, j * B), min(c1, (j + 1) * B)
                out[a - r0:b - r0, c - c0:d - c0] = t[a - i * B:b - i * B, c - j * B:d - j * B]
        return out

    def numpy(self, memory_budget: int | str | None = None) -> np.ndarray:
        """The whole matrix, float64 (n1, n2), checked against the memory budget first."""
        if self._full is not None:
            return self._full
        check_memory(self.nbytes, memory_budget, field="kernel", flag=ARGUMENT, hint="read it in tiles (K[a:b, c:d])",
                     what=f"the {self.shape[0]} x {self.shape[1]} stored kernel in memory")
        return self[0:self.shape[0], 0:self.shape[1]]

    def torch(self, memory_budget: int | str | None = None) -> Any:
        """The whole matrix as a float64 torch tensor (see :meth:`numpy`)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.numpy(memory_budget)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        full = self.numpy()
        return full if dtype is None else full.astype(dtype)

    def load(self, memory_budget: int | str | None = None) -> StoredKernel:
        """Keep the whole matrix in memory from now on (checked against the budget); returns self."""
        if self._full is None:
            self._full = self.numpy(memory_budget)
        return self

    def diagonal(self) -> np.ndarray:
        """K_ii, i < min(n1, n2), from the diagonal tiles."""
        n, B = min(self.shape), self.block
        return np.concatenate([np.diag(self.tile(i, i)) for i in range((n + B - 1) // B)])[:n]

    def matmul(self, V: np.ndarray) -> np.ndarray:
        """K @ V for V (n2,) or (n2, c), streaming every stored tile once (each off-diagonal tile of a symmetric
        kernel serves both K[I, J] and K[J, I] = K[I, J]ᵀ). Memory: one tile, V and the result."""
        V = np.asarray(V, dtype=np.float64)
        vector = V.ndim == 1
        V2 = V.reshape(V.shape[0], -1)
        if V2.shape[0] != self.shape[1]:
            raise ZerolossInputError(f"V: must have {self.shape[1]} rows, got shape {V.shape}")
        if self._full is not None:
            out = self._full @ V2
        else:
            out = np.zeros((self.shape[0], V2.shape[1]), dtype=np.float64)
            for t in self.plan.tiles():
                (a, b), (c, d) = t.rows, t.cols
                T = self._stored(t.i, t.j)
                out[a:b] += T @ V2[c:d]
                if self.symmetric and not t.diagonal:
                    out[c:d] += T.T @ V2[a:b]
        return out[:, 0] if vector else out

    def verify(self) -> list[tuple[int, int]]:
        """Tiles whose stored values no longer match their recorded sha256 (empty: every tile intact)."""
        bad = []
        for (i, j), record in sorted(self.records.items()):
            B = self.block
            a, b = i * B, min((i + 1) * B, self.shape[0])
            c, d = j * B, min((j + 1) * B, self.shape[1])
            if tile_checksum(np.asarray(self._array[a:b, c:d])) != record["sha256"]:
                bad.append((i, j))
        return bad


def open_kernel(path: str | Path, *, in_memory: bool | None = None, memory_budget: int | str | None = None,
                verify: bool = False) -> StoredKernel:
    """The kernel of the finished job in ``path`` (a ``K.zarr`` folder of :func:`zeroloss.tiles.kernel_job`).

    Args:
        path: the job folder.
        in_memory: True — load it whole (refused over the budget); False — read tiles on demand; None — load it
            when the float64 matrix fits the memory budget, else lazy.
        memory_budget: bytes or a size (default :mod:`zeroloss.budget`'s).
        verify: recompute every tile's sha256 and refuse a kernel whose stored values do not match their record.

    Raises:
        ZerolossInputError: not a kernel job, a job not finished (run the same command again), a corrupted tile.
    """
    path = Path(path)
    job = read_job(path) if path.is_dir() else None
    if job is None:
        raise ZerolossInputError(f"path: {path} is not a zeroloss kernel job (no job.json); compute one with "
                                 "zeroloss kernel --out K.zarr")
    records = read_records(path)
    total = len(plan_of(job).tiles())
    if len(records) < total:
        raise ZerolossInputError(f"path: the kernel job {path} is not finished ({len(records)} of {total} tiles); "
                                 "run the same command again to finish it")
    K = StoredKernel(path, job, records)
    if verify:
        bad = K.verify()
        if bad:
            raise ZerolossInputError(f"path: {len(bad)} tile(s) of {path} do not match their checksum, first "
                                     f"{bad[0]}; delete records/{bad[0][0]}_{bad[0][1]}.json and run the job again")
    if in_memory or (in_memory is None and K.nbytes <= resolve_budget(memory_budget).bytes):
        K.load(memory_budget)
    return K
