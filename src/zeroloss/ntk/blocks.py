"""Block-wise assembly of an eNTK: rows × columns of samples, factors computed per chunk, mirrored when square.

Every method splits the kernel the same way. A *row factor* is what a method computes from a chunk of x1 alone
(per-sample Jacobians, layer inputs and cotangents, vector-Jacobian products); a *column factor* the same from a
chunk of x2; ``pair(row, col)`` turns the two into the block Θ(x1[rows], x2[cols]) of every contribution. When the
kernel is square (x2 is None) only the blocks on and above the diagonal are computed: Θ(x_j, x_i)_{ba} = Θ(x_i,
x_j)_{ab}, so a block below the diagonal is the transpose of its mirror image.

When the plan says every chunk's factors fit (``store``), each chunk's factors are computed once and kept until the
end (a square kernel reuses its row factors as column factors); otherwise a row chunk's factors live while its
row of blocks is computed and the column factors are recomputed for every row chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Plan:
    """How a kernel is computed: chunk sizes, whether factors are kept, and the bytes it needs.

    Attributes:
        method: the method that runs ("structured", "jacobian" or "ntvp").
        rows: samples of x1 per chunk.
        cols: samples of x2 per chunk.
        store: every chunk's factors computed once and kept (else column factors recomputed per row chunk).
        bytes: the memory stated for the whole call (result included), an upper estimate.
        result_bytes: the bytes of the returned kernel(s) alone.
    """

    method: str
    rows: int
    cols: int
    store: bool
    bytes: int
    result_bytes: int


def assemble(
    n1: int,
    n2: int,
    square: bool,
    plan: Plan,
    row_factor: Callable[[int, int], Any],
    col_factor: Callable[[int, int], Any],
    pair: Callable[[Any, Any], dict[str, torch.Tensor]],
    out: dict[str, torch.Tensor],
    shared: bool = True,
) -> dict[str, torch.Tensor]:
    """Fill ``out`` (key → (n1, n2, …) zeros) block by block; see the module docstring.

    For a square kernel with ``shared`` the row factor of a chunk also serves as its column factor (the two factor
    functions compute the same kind of object); without it the diagonal blocks call ``col_factor``.
    """
    col_chunks = [(c0, min(n2, c0 + plan.cols)) for c0 in range(0, n2, plan.cols)]
    rows_kept: dict[int, Any] = {}
    cols_kept: dict[int, Any] = {}
    for r0 in range(0, n1, plan.rows):
        r1 = min(n1, r0 + plan.rows)
        rf = rows_kept.pop(r0) if r0 in rows_kept else row_factor(r0, r1)
        for c0, c1 in col_chunks:
            if square and c1 <= r0:
                continue  # below the diagonal: mirrored from the block above
            if square and shared and (c0, c1) == (r0, r1):
                cf = rf
            elif c0 in cols_kept:
                cf = cols_kept[c0]
            else:
                cf = col_factor(c0, c1)
                if plan.store and square and shared:
                    rows_kept[c0] = cf  # this chunk's row factors, when its row of blocks comes
                elif plan.store:
                    cols_kept[c0] = cf
            blocks = pair(rf, cf)
            for key, block in blocks.items():
                if square and c0 == r0:  # a diagonal block is symmetric up to round-off: make it exactly so
                    block = 0.5 * (block + _mirror(block))
                out[key][r0:r1, c0:c1] = block
                if square and c0 != r0:
                    out[key][c0:c1, r0:r1] = _mirror(block)
            del cf, blocks
        del rf
    return out


def _mirror(block: torch.Tensor) -> torch.Tensor:
    """Θ(x2, x1) from Θ(x1, x2): swap the sample axes, and the output axes when present."""
    block = block.transpose(0, 1)
    return block.transpose(2, 3) if block.ndim == 4 else block
