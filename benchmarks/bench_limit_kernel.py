"""zeroloss.limit_kernel at n = 2000, H = 5 (issue 3), against a per-pair loop and the per-block quadrature.

Peers, measured in the same process:
* closed-form activations (erf, relu): a straightforward per-pair Python loop of the same closed-form recursion
  (what one writes from the paper's formulas with ``math``), timed on a small n and scaled by n² — the
  vectorised recursion is what zeroloss adds;
* quadrature-only activations (softplus): the exact per-block tensor Gauss–Hermite rule (``method="quadrature"``,
  nodes² evaluations per block), timed on a small n and scaled by n² — the ρ-table (``method="auto"``) is what
  zeroloss adds. The two are also compared on the small n for their largest difference.

    python benchmarks/bench_limit_kernel.py                      # CPU, n=2000, H=5, FC, kind du and ntk
    python benchmarks/bench_limit_kernel.py --device cuda --n 20000 --no-peer
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from benchmarks._common import best_time, machine
from zeroloss.activations import get_activation
from zeroloss.data import sphere_data
from zeroloss.gaussian import _TABLE_CACHE
from zeroloss.kernels.limit import limit_kernel


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
                return limit_kernel(X, "fc", args.depth, a, k)

            ours = best_time(run, args.repeats, sync)
            line = f"  {activation:8s} {kind:4s} zeroloss {ours:8.3f} s"
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
