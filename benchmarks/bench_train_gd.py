"""train_gd on an ensemble against a Python loop over the same members as separate nn.Modules + torch.optim.SGD.

Both run full-batch GD on L = ½Σ(u − y)² with the same step, the same weights and the same number of steps; only
the loss is evaluated (no probes) so the comparison is the training loop itself.

    python benchmarks/bench_train_gd.py                                 # CPU, 32 members (issue #2 target ≥ 3×)
    python benchmarks/bench_train_gd.py --device cuda --members 64      # H100 target ≥ 30×
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import machine
from benchmarks.bench_gram import UserFC
from zeroloss.data import sphere_data
from zeroloss.nets import FullyConnected
from zeroloss.train.gd import train_gd


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
    train_gd(net, X, y, args.lr, 2, probes=["loss"], progress=False)  # warm-up
    net.load_state_dict(template.state_dict())
    sync()
    t0 = time.perf_counter()
    run = train_gd(net, X, y, args.lr, args.steps, probes=["loss"], progress=False)
    sync()
    ours = time.perf_counter() - t0

    sync()
    t0 = time.perf_counter()
    finals = loop_of_modules(template, X, y, args.lr, args.steps)
    sync()
    peer = time.perf_counter() - t0
    diff = float((torch.as_tensor(run.losses[-1]) - finals.double().cpu()).abs().max() / finals.abs().max())
    print(f"zeroloss.train_gd ensemble: {ours:.3f} s")
    print(f"loop of nn.Module + SGD:    {peer:.3f} s   (max relative difference of final losses {diff:.1e})")
    print(f"ratio loop / ensemble: {peer / ours:.1f}x")


if __name__ == "__main__":
    main()
