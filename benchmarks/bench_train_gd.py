"""train_gd on an ensemble against a Python loop over the same members as separate nn.Modules + torch.optim.SGD.

Both run full-batch GD on L = ½Σ(u − y)² with the same step, the same weights and the same number of steps; only
the loss is evaluated (no probes) so the comparison is the training loop itself. The ensemble runs twice: with
train_gd's default hand-derived backward (zeroloss.train.backprop) and with ``backprop="autograd"``.

The script also prints the *flop floor* of the run: the matrix-multiply flops every exact implementation of these
steps must do (:func:`gd_step_flops`: forward, weight gradients, input gradients), divided by the best matmul rate
this machine reaches in the same process (a large square matmul, or a batched one of the net's own shape). No
implementation of the same arithmetic can beat the loop by more than loop time / flop floor: where the loop is
itself compute-bound that ceiling, not the ensemble's overhead, is what limits the ratio.

    python benchmarks/bench_train_gd.py                                 # CPU, 32 members (issue #2 target ≥ 3×)
    python benchmarks/bench_train_gd.py --device cuda --members 64      # H100 target ≥ 30×
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._common import machine
from benchmarks.bench_gram import UserFC
from zeroloss.data import sphere_data
from zeroloss.nets import FullyConnected
from zeroloss.train.gd import train_gd


def gd_step_flops(n: int, d: int, m: int, depth: int) -> int:
    """Matmul flops of one full-batch GD step of one member of Du's FC net (2 per multiply-add).

    forward 2nm(d + (H−1)m + 1); weight gradients the same; input gradients 2nm((H−1)m + 1) (layer 1 needs none).
    """
    forward = 2 * n * m * (d + (depth - 1) * m + 1)
    return 2 * forward + 2 * n * m * ((depth - 1) * m + 1)


def best_matmul_rate(members: int, n: int, m: int, device: torch.device, repeats: int = 5) -> float:
    """The best matmul rate (flop/s) this machine reaches, float32: a 2048² square matmul, or a batched one of
    the net's hidden-layer shape (members, n, m) @ (members, m, m)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cases = [(torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device), 2 * 2048**3),
             (torch.randn(members, n, m, device=device), torch.randn(members, m, m, device=device),
              2 * members * n * m * m)]
    best = 0.0
    for A, B, flops in cases:
        A @ B
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            A @ B
            sync()
            best = max(best, flops / (time.perf_counter() - t0))
    return best


def loop_of_modules(net: FullyConnected, X: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """The peer: one nn.Module and one torch.optim.SGD per member, trained one after the other."""
    finals = []
    for k in range(net.members):
        model = UserFC(net.member(k))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * (model(X) - y).pow(2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            finals.append(0.5 * (model(X) - y).pow(2).sum())
    return torch.stack(finals)


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times) + " s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs of each")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one ensemble run")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    X, y = sphere_data(args.n, args.d, seed=0)
    X, y = X.float().to(device), y.float().to(device)
    print(f"machine: {machine()}")
    print(f"S={args.members} n={args.n} d={args.d} m={args.width} H={args.depth} steps={args.steps} "
          f"float32 on {device}")
    template = FullyConnected(args.d, args.width, args.depth, "softplus", args.members, 0, torch.float32, device)

    net = FullyConnected(args.d, args.width, args.depth, "softplus", args.members, 0, torch.float32, device)
    for mode in ("auto", "autograd"):  # warm-up
        train_gd(net, X, y, args.lr, 2, probes=["loss"], progress=False, backprop=mode)
    ours_runs: list[float] = []
    autograd_runs: list[float] = []
    peer_runs: list[float] = []

    def timed_ensemble(mode: str):
        net.load_state_dict(template.state_dict())
        sync()
        t0 = time.perf_counter()
        result = train_gd(net, X, y, args.lr, args.steps, probe_every=args.steps, probes=["loss"], progress=False,
                          backprop=mode)
        sync()
        return result, time.perf_counter() - t0

    for _ in range(args.repeats):  # alternate the three, so that a noisy stretch of the machine hits all
        run, seconds = timed_ensemble("auto")
        ours_runs.append(seconds)
        autograd_run, seconds = timed_ensemble("autograd")
        autograd_runs.append(seconds)
        t0 = time.perf_counter()
        finals = loop_of_modules(template, X, y, args.lr, args.steps)
        sync()
        peer_runs.append(time.perf_counter() - t0)
    ours, peer = min(ours_runs), min(peer_runs)
    diff = float((torch.as_tensor(run.losses[-1]) - finals.double().cpu()).abs().max() / finals.abs().max())
    rate = best_matmul_rate(args.members, args.n, args.width, device)
    floor = args.steps * args.members * gd_step_flops(args.n, args.d, args.width, args.depth) / rate
    autograd = min(autograd_runs)
    gap = float((torch.as_tensor(run.losses[-1]) - torch.as_tensor(autograd_run.losses[-1])).abs().max()
                / finals.abs().max())
    print(f"zeroloss.train_gd ensemble: {ours:.3f} s (best of {_runs(ours_runs)}; hand-derived backward)")
    print(f"  same, backprop='autograd': {autograd:.3f} s (best of {_runs(autograd_runs)}; "
          f"{autograd / ours:.2f}x the hand-derived; final losses differ by {gap:.1e} relative)")
    print(f"loop of nn.Module + SGD:    {peer:.3f} s (best of {_runs(peer_runs)}; max relative difference of "
          f"final losses {diff:.1e})")
    print(f"ratio loop / ensemble: {peer / ours:.1f}x (best over best; median over median "
          f"{statistics.median(peer_runs) / statistics.median(ours_runs):.1f}x)")
    if args.profile:
        net.load_state_dict(template.state_dict())
        with torch.profiler.profile() as prof:
            train_gd(net, X, y, args.lr, args.steps, probe_every=args.steps, probes=["loss"], progress=False)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"flop floor: {floor:.3f} s at the best measured matmul rate {rate / 1e9:.0f} GFLOP/s; no implementation "
          f"of these steps can beat the loop by more than {peer / floor:.1f}x here "
          f"(the ensemble reaches {floor / ours:.0%} of that floor)")


if __name__ == "__main__":
    main()
