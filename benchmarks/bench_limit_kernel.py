"""zeroloss.limit_kernel at n = 2000, H = 5 (issue 3), against a per-pair loop and the per-block quadrature.

Peers, measured in the same process:
* closed-form activations (erf, relu): a straightforward per-pair Python loop of the same closed-form recursion
  (what one writes from the paper's formulas with ``math``), timed on a small n and scaled by n² — the
  vectorised recursion is what zeroloss adds;
* quadrature-only activations (softplus): the exact per-block tensor Gauss–Hermite rule (``method="quadrature"``,
  nodes² evaluations per block), timed on a small n and scaled by n² — the ρ-table (``method="auto"``) is what
  zeroloss adds. The two are also compared on the small n for their largest difference.

Memory: each row prints what ``limit_kernel_memory_bytes`` states before the call and, on CUDA, the peak
measured during it (``torch.cuda.max_memory_allocated``). On the CPU an in-process resident-set reading is
blurred by pages glibc keeps between calls, so measure the whole process instead (``/usr/bin/time -v``: its
maximum resident set size includes torch itself, ≈ 0.4 GB); tests/test_limit_blocks.py checks the per-call
peak against the statement in fresh processes.

    python -m benchmarks.bench_limit_kernel                      # CPU, n=2000, H=5, FC, kind du and ntk
    python -m benchmarks.bench_limit_kernel --n 20000 --no-peer --repeats 1   # chunked, CPU (≈ 3.2 GB result)
    python -m benchmarks.bench_limit_kernel --device cuda --n 20000 --no-peer
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from benchmarks._common import best_time, machine
from zeroloss.activations import get_activation
from zeroloss.data import sphere_data
from zeroloss.kernels.gaussian import _TABLE_CACHE
from zeroloss.kernels.limit import limit_kernel, limit_kernel_memory_bytes


def _cuda_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak CUDA memory allocated during one call of fn, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _loop_fc_du(X: torch.Tensor, depth: int, activation: str) -> list[list[float]]:
    """The FC "du" recursion pair by pair with ``math`` (closed forms for erf and relu), the naive peer."""
    c = get_activation(activation).c_sigma
    rows = X.tolist()
    n = len(rows)

    def ss(a: float, b: float, cc: float) -> float:
        if activation == "erf":
            return 2 / math.pi * math.asin(2 * b / math.sqrt((1 + 2 * a) * (1 + 2 * cc)))
        norm = math.sqrt(a * cc)
        t = math.acos(max(-1.0, min(1.0, b / norm)))
        return norm * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)

    def dd(a: float, b: float, cc: float) -> float:
        if activation == "erf":
            return 4 / math.pi / math.sqrt((1 + 2 * a) * (1 + 2 * cc) - 4 * b * b)
        return (math.pi - math.acos(max(-1.0, min(1.0, b / math.sqrt(a * cc))))) / (2 * math.pi)

    K = [[sum(u * v for u, v in zip(rows[i], rows[j], strict=True)) for j in range(n)] for i in range(n)]
    for _ in range(1, depth):
        K = [[c * ss(K[i][i], K[i][j], K[j][j]) for j in range(n)] for i in range(n)]
    return [[c * K[i][j] * dd(K[i][i], K[i][j], K[j][j]) for j in range(n)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peer-n", type=int, default=100, help="n at which the peers are timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--block-bytes", type=int, default=None, help="block size (default: the device's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = device.type == "cuda"
    X, _ = sphere_data(args.n, args.d, seed=0)
    X = X.to(device)
    small = X[: args.peer_n]
    scale = (args.n / args.peer_n) ** 2
    print(f"machine: {machine()}")
    print(f"limit_kernel, FC, n={args.n}, H={args.depth}, float64 on {device}")
    for activation in ("erf", "relu", "softplus"):
        for kind in ("du", "ntk"):
            def run(a: str = activation, k: str = kind) -> torch.Tensor:
                _TABLE_CACHE.clear()  # cold: every call builds its ρ-tables, as a fresh process would
                return limit_kernel(X, "fc", args.depth, a, k, block_bytes=args.block_bytes)

            # unit inputs: closed forms, or the ρ-table, which is built by one quadrature chunk
            stated = limit_kernel_memory_bytes(args.n, args.depth, block_bytes=args.block_bytes, device=device,
                                               quadrature=activation == "softplus")
            ours = best_time(run, args.repeats, sync)
            line = f"  {activation:8s} {kind:4s} zeroloss {ours:8.3f} s | memory stated {stated / 2**30:.2f} GiB"
            if sync:
                line += f", peak {_cuda_peak_bytes(run) / 2**30:.2f} GiB"
            if not args.no_peer and kind == "du":
                if activation == "softplus":
                    t0 = time.perf_counter()
                    ref = limit_kernel(small, "fc", args.depth, activation, kind, method="quadrature")
                    peer_small = time.perf_counter() - t0
                    diff = float((ref - limit_kernel(small, "fc", args.depth, activation, kind)).abs().max())
                    name = f"per-block quadrature (n={args.peer_n} ×{scale:.0f})"
                    line += f" | {name} {peer_small * scale:8.1f} s (table − quadrature max |Δ| {diff:.1e})"
                else:
                    t0 = time.perf_counter()
                    loop = _loop_fc_du(small.cpu(), args.depth, activation)
                    peer_small = time.perf_counter() - t0
                    vec = limit_kernel(small, "fc", args.depth, activation, kind).cpu()
                    diff = float((torch.tensor(loop, dtype=torch.float64) - vec).abs().max())
                    line += (f" | per-pair loop (n={args.peer_n} ×{scale:.0f}) {peer_small * scale:8.1f} s "
                             f"(max |Δ| {diff:.1e})")
                line += f" | ratio {peer_small * scale / ours:.0f}x"
            print(line)


if __name__ == "__main__":
    main()
