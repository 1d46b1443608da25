"""Online SGD steps per second: zeroloss's compiled loop against a numpy per-step loop like the official code's.

Same configuration for both (docs/theory.md §3.4: m = 20, η = 4·10⁻³, paper target, ε = 2·10⁻⁵, h = 10⁻³, label noise
U[−1, 1]); the peer is a straightforward numpy loop that draws one sample per step and updates a and u with vector
operations over the neurons, as the official ``experiment.py`` does. Also prints the extrapolated wall time of the
paper configuration (1.75·10⁸ steps per repeat) against the issue's 15-minute target.

    python -m benchmarks.bench_two_timescale_sgd
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import machine
from zeroloss.papers.marion2023.twotimescale import init_positions, online_sgd, target_preset
from zeroloss.papers.marion2023.twotimescale.model import sigma, sigma_d1

PAPER_STEPS = 175_000_000


def numpy_loop(target, u: np.ndarray, steps: int, h: float, eps: float, eta: float, seed: int) -> np.ndarray:
    """The peer: one sample per step, numpy vector updates over the m neurons (no compilation)."""
    rng = np.random.default_rng(seed)
    a = np.zeros(u.size + 1)
    u = u.copy()
    for _ in range(steps):
        x = rng.random()
        y = target(np.array([x]))[0] + rng.uniform(-1.0, 1.0)
        z = (x - u) / eta
        phi = sigma(z)
        r = y - (a[0] + a[1:] @ phi)
        grad_u = 2.0 * r * a[1:] * sigma_d1(z) / eta
        a[0] += h * 2.0 * r
        a[1:] += h * 2.0 * r * phi
        u -= h * eps * grad_u
    return u


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-steps", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=5_000_000)
    args = parser.parse_args()
    target = target_preset("paper")
    u0 = init_positions(20, 1, 0, valid_for=target)
    online_sgd(target, eps=2e-5, h=1e-3, steps=1000, u0=u0, logs=1)  # JIT compile (cached afterwards)
    t0 = time.perf_counter()
    online_sgd(target, eps=2e-5, h=1e-3, steps=args.steps, u0=u0, logs=1)
    ours = args.steps / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    numpy_loop(target, u0[0], args.peer_steps, 1e-3, 2e-5, 4e-3, 0)
    peer = args.peer_steps / (time.perf_counter() - t0)
    print(f"machine: {machine()}")
    print(f"zeroloss online_sgd (numba): {ours:,.0f} steps/s over {args.steps:,} steps (1 repeat)")
    print(f"numpy per-step loop:         {peer:,.0f} steps/s over {args.peer_steps:,} steps")
    print(f"ratio: {ours / peer:.0f}x")
    print(f"paper configuration, 1.75e8 steps per repeat: zeroloss {PAPER_STEPS / ours / 60:.1f} min, "
          f"numpy loop {PAPER_STEPS / peer / 3600:.1f} h")


if __name__ == "__main__":
    main()
