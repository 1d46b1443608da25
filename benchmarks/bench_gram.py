"""zeroloss.gram(layer="all") against the torch.func tutorial's Jacobian contraction, same net, same inputs.

The peer is what a user writes today (PyTorch's "Neural Tangent Kernels" tutorial): an nn.Module, then
``vmap(jacrev(functional_call))`` over the samples and an einsum over every parameter's flattened Jacobian.

    python benchmarks/bench_gram.py                         # CPU, n=256, m=1024, H=3, float64 (issue #2 target ≥ 20×)
    python benchmarks/bench_gram.py --device cuda --n 256 --width 2048 --depth 4 --dtype float32   # H100 target ≥ 50×
    python benchmarks/bench_gram.py --device cuda --n 8192 --width 4096 --depth 4 --dtype float32 --no-peer
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from benchmarks._common import best_time, machine
from zeroloss.data import sphere_data
from zeroloss.kernels.empirical import gram, gram_memory_bytes
from zeroloss.nets import FullyConnected
from zeroloss.precision import no_tf32


class UserFC(nn.Module):
    """Du's fully-connected net as a user would write it with nn.Linear (no bias), weights copied in."""

    def __init__(self, net: FullyConnected) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for h in range(1, net.depth + 1):
            W = getattr(net, f"W{h}")[0]
            layer = nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=W.dtype, device=W.device)
            layer.weight.data.copy_(W.detach())
            self.layers.append(layer)
        self.out = nn.Linear(net.width, 1, bias=False, dtype=W.dtype, device=W.device)
        self.out.weight.data.copy_(net.a.detach()[0].unsqueeze(0))
        self.scale = math.sqrt(net.activation.c_sigma / net.width)
        self.act = net.activation.fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.scale * self.act(layer(x))
        return self.out(x).squeeze(-1)


def tutorial_ntk(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The torch.func tutorial's empirical NTK: Jacobians by vmap(jacrev), then an einsum contraction."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), (None, 0))(params, X)
    jac = [j.flatten(1) for j in jac.values()]
    return sum(torch.einsum("Na,Ma->NM", j, j) for j in jac)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="only zeroloss (sizes the Jacobian cannot reach)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    sync = device.type == "cuda"
    X, _ = sphere_data(args.n, args.d, seed=0)
    X = X.to(dtype=dtype, device=device)
    net = FullyConnected(args.d, args.width, args.depth, "softplus", 1, 0, dtype, device)
    need = gram_memory_bytes(net, args.n, dtype=dtype)
    print(f"machine: {machine()}")
    print(f"n={args.n} d={args.d} m={args.width} H={args.depth} {args.dtype} on {device}; "
          f"zeroloss.gram needs about {need / 2**30:.2f} GiB")
    with no_tf32():
        ours = best_time(lambda: gram(net, X, dtype=dtype), args.repeats, sync)
        print(f"zeroloss.gram(layer='all'): {ours:.4f} s")
        if args.no_peer:
            return
        model = UserFC(net)
        jac_bytes = args.n * sum(p.numel() for p in model.parameters()) * X.element_size()
        print(f"peer Jacobian holds {jac_bytes / 2**30:.2f} GiB")
        G_ours = gram(net, X, dtype=dtype)[0]
        G_peer = tutorial_ntk(model, X)
        err = float((G_ours - G_peer).norm() / G_peer.norm())
        peer = best_time(lambda: tutorial_ntk(model, X), max(1, args.repeats - 2), sync)
    print(f"torch.func vmap(jacrev)+einsum: {peer:.4f} s   (relative difference {err:.1e})")
    print(f"ratio peer / zeroloss: {peer / ours:.1f}x")


if __name__ == "__main__":
    main()
