"""The tile plan of an (n1 × n2) kernel: B × B tiles, only the upper triangle of a symmetric kernel.

Tile (i, j) covers rows [iB, min((i+1)B, n1)) and columns [jB, min((j+1)B, n2)); it is one zarr chunk, so no two
tasks ever write the same chunk. A symmetric kernel (K(X, X)) has T(T + 1)/2 tiles, i ≤ j, for T = ⌈n/B⌉; the
reader mirrors the others (K[J, I] = K[I, J]ᵀ).

Bytes on disk: zarr v3 stores every chunk at the full chunk shape (edge chunks padded), uncompressed here, so a
job takes (tiles) × B² × itemsize bytes plus a few kB of metadata and one small record per tile.

Examples:
    >>> plan = TilePlan(n1=2500, n2=2500, block=1000, symmetric=True)
    >>> plan.grid, len(plan.tiles()), plan.tiles()[1]
    ((3, 3), 6, Tile(index=1, i=0, j=1, rows=(0, 1000), cols=(1000, 2000)))
    >>> plan.bytes_on_disk(8) == 6 * 1000 * 1000 * 8, plan.pairs()    # 3 full, 2 half and 1 quarter tile
    (True, 4250000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zeroloss.errors import ZerolossInputError

#: The default tile side B: 2048² float64 = 32 MiB per tile, large enough that per-tile overhead (scheduling,
#: a zarr chunk write, a record) stays a few percent of the compute of the kernels zeroloss computes, small enough
#: that a tile's working memory fits a 1 GB worker for the lab nets (the dry run states it).
DEFAULT_BLOCK = 2048


@dataclass(frozen=True)
class Tile:
    """One tile: its position ``index`` in the plan, grid coordinates (i, j), and row / column ranges."""

    index: int
    i: int
    j: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def diagonal(self) -> bool:
        return self.rows == self.cols

    @property
    def pairs(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


@dataclass(frozen=True)
class TilePlan:
    """Tiles of an (n1 × n2) kernel with side ``block``; ``symmetric`` (n1 = n2, K(X, X)) keeps i ≤ j."""

    n1: int
    n2: int
    block: int
    symmetric: bool

    def __post_init__(self) -> None:
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ZerolossInputError(f"--block: must be a positive integer (tile side), got {self.block!r}")
        if self.symmetric and self.n1 != self.n2:
            raise ZerolossInputError(f"inputs: a symmetric kernel is square, got {self.n1} × {self.n2}")

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.n1 / self.block), math.ceil(self.n2 / self.block)

    def tiles(self) -> list[Tile]:
        """Every tile of the plan, row by row (i, then j ≥ i for a symmetric kernel)."""
        B, (T1, T2) = self.block, self.grid
        out = []
        for i in range(T1):
            for j in range(i if self.symmetric else 0, T2):
                out.append(Tile(len(out), i, j, (i * B, min((i + 1) * B, self.n1)),
                                (j * B, min((j + 1) * B, self.n2))))
        return out

    def pairs(self) -> int:
        """Kernel entries the tiles compute (the diagonal tiles' lower halves included)."""
        return sum(t.pairs for t in self.tiles())

    def bytes_on_disk(self, itemsize: int) -> int:
        """Chunk bytes (every chunk at the full B × B shape, uncompressed)."""
        return len(self.tiles()) * self.block * self.block * itemsize
