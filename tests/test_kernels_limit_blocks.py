"""Block-wise infinite-width kernels: the block size changes nothing, and the stated memory bounds the real peak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import STATUS_FUNCTION
from zeroloss import limit_gram_by_layer, limit_kernel
from zeroloss.data import patch_data, sphere_data
from zeroloss.kernels.limit import BLOCK_ARRAYS_EXTRA, BLOCK_ARRAYS_PER_LAYER, block_rows, limit_kernel_memory_bytes


def _inputs(net: str, n: int = 11) -> torch.Tensor:
    if net == "conv-resnet":
        return patch_data(n, channels=2, positions=4, seed=2)[0]
    return sphere_data(n, d=5, seed=2)[0]


@pytest.mark.parametrize("net", ["fc", "resnet", pytest.param("conv-resnet", marks=pytest.mark.slow)])  # 2–9 s each
@pytest.mark.parametrize("activation", ["erf", "softplus", "gelu"])
def test_one_row_per_block_gives_the_same_kernel_as_one_block(net, activation):
    """block_bytes=1 forces one row per block (n blocks); the default budget takes the whole kernel in one block.

    erf takes its closed form, softplus and gelu the ρ-table on the FC net and the ResNet (unit-norm inputs) and
    the per-block quadrature on the conv-ResNet (unequal pixel variances); every path must agree with itself
    across block sizes up to round-off, because every pair (i ≤ j) goes through the same entrywise recursion.
    """
    # 7 conv inputs (7 one-row blocks against one): its per-block quadrature costs 2× more at 11 and tests no more
    X = _inputs(net, n=7 if net == "conv-resnet" else 11)
    for kind in ("du", "nngp", "ntk"):
        whole = limit_kernel(X, net=net, depth=3, activation=activation, kind=kind)
        rows = limit_kernel(X, net=net, depth=3, activation=activation, kind=kind, block_bytes=1)
        assert torch.equal(rows, rows.T)
        # only the batched reductions' summation order (einsum over nodes, the position sum) may differ
        assert (whole - rows).abs().max() <= 1e-14 * whole.abs().max(), kind


def test_per_layer_limits_are_block_size_independent_and_sum_to_the_ntk():
    X = _inputs("resnet", n=9)
    small = limit_gram_by_layer(X, net="resnet", depth=3, activation="softplus", block_bytes=2000)
    whole = limit_gram_by_layer(X, net="resnet", depth=3, activation="softplus")
    assert sorted(small) == [1, 2, 3, 4]
    for h in whole:
        assert torch.equal(small[h], small[h].T)
        assert (small[h] - whole[h]).abs().max() <= 1e-15 * whole[h].abs().max()
    ntk = limit_kernel(X, net="resnet", depth=3, activation="softplus", kind="ntk", block_bytes=2000)
    assert torch.allclose(ntk, sum(whole.values()), rtol=0, atol=1e-14)


def test_blocks_fit_the_budget():
    n, H, p = 5000, 5, 3
    per_entry = p * 8 * (BLOCK_ARRAYS_PER_LAYER * H + BLOCK_ARRAYS_EXTRA)
    for budget in (2**20, 64 * 2**20, 2**30):
        for cols in (n, n // 2, 1):
            rows = block_rows(n, cols, H, p, budget)
            assert 1 <= rows <= n
            assert rows == 1 or rows * cols * per_entry <= budget  # fits (one row at least, whatever its size)
            assert rows == n or (rows + 1) * cols * per_entry > budget  # and is the largest that fits
    assert block_rows(n, n, H, p, 1) == 1  # a budget below one row still makes progress, one row at a time


def test_memory_estimate_is_the_result_plus_bounded_work():
    budget = 256 * 2**20
    big = limit_kernel_memory_bytes(20000, depth=5, block_bytes=budget, quadrature=True)
    result = 20000 * 20000 * 8
    # the (n, n) result dominates; the block and the quadrature chunk each stay within the budget
    assert result < big <= result + 2 * budget + 20000 * 8 * (2 * 5 + BLOCK_ARRAYS_EXTRA)
    per_layer = limit_kernel_memory_bytes(20000, depth=5, block_bytes=budget, quadrature=True, outputs=6)
    assert per_layer - big == 5 * result


_PEAK_SCRIPT = STATUS_FUNCTION + textwrap.dedent(
    """
    import json, sys, torch
    from zeroloss import limit_kernel
    from zeroloss.data import sphere_data
    from zeroloss.kernels.limit import limit_kernel_memory_bytes

    n, activation, spread, nodes, budget = sys.argv[1], sys.argv[2], float(sys.argv[3]), *map(int, sys.argv[4:])
    n = int(n)
    torch.set_num_threads(1)
    X = sphere_data(n, 8, seed=0)[0] * torch.linspace(1 - spread, 1 + spread, n, dtype=torch.float64)[:, None]
    args = dict(net="fc", depth=5, activation=activation, kind="ntk", nodes=nodes, block_bytes=budget)
    limit_kernel(X[:50], **args)  # warm: libraries loaded, ρ-tables built
    before = status("VmRSS")
    K = limit_kernel(X, **args)
    peak = status("VmHWM")
    quadrature = spread > 0 and activation not in ("erf", "relu")
    stated = limit_kernel_memory_bytes(n, 5, nodes=nodes, block_bytes=budget, quadrature=quadrature)
    print(json.dumps({"peak": peak - before, "stated": stated, "finite": bool(torch.isfinite(K).all())}))
    """
)


@pytest.mark.slow  # a fresh process per case: the peak-memory tests are not the fast tier
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident-set peak from /proc")
@pytest.mark.parametrize(("activation", "n", "spread", "nodes"),
                         [("erf", 1500, 0.0, 96), ("softplus", 1500, 0.0, 96), ("softplus", 300, 0.2, 16)])
def test_measured_peak_stays_within_the_stated_memory(activation, n, spread, nodes):
    """A fresh process computes an H = 5 NTK with an 8 MiB budget and reads its resident-set peak from /proc.

    Three paths: erf's closed form and softplus's ρ-table on unit inputs at n = 1500 (where one array per layer,
    as the previous implementation held, would be ≈ 18 × 18 MB), and softplus's per-block quadrature on inputs
    whose norms spread over [0.8, 1.2] (unequal variances; 16 nodes and n = 300 keep it fast, and the chunks
    still hit the budget). The kernel's own peak — the resident size before the call subtracted, after a
    warm-up call loaded the libraries and ρ-tables — must stay within what limit_kernel_memory_bytes states.
    """
    budget = 8 * 2**20
    # glibc raises its mmap threshold after large frees and then keeps freed blocks in the heap, which adds up
    # to ~2 budgets of retained pages to the resident peak (measured: erf 15 MB over the result instead of 6).
    # A fixed threshold returns every large free to the system, so the peak is that of the live arrays — the
    # quantity the estimate states (as torch.cuda.max_memory_allocated would on a GPU).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), activation, str(spread), str(nodes),
                          str(budget)], capture_output=True, text=True, check=True, env=env)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    block = info["stated"] - n * n * 8
    print(f"{activation} n={n}: peak above the result {(info['peak'] - n * n * 8) / 2**20:.1f} MiB of a stated "
          f"{block / 2**20:.1f} MiB")
    assert info["finite"]
    assert info["peak"] >= n * n * 8  # the measurement sees at least the result the call must hold
    assert info["peak"] <= info["stated"], info
