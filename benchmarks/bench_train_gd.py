"""train_gd on an ensemble against a Python loop over the same members as separate nn.Modules + torch.optim.SGD.

Both run full-batch GD on L = ½Σ(u − y)² with the same step, the same weights and the same number of steps; only
the loss is evaluated (no probes) so the comparison is the training loop itself. The ensemble runs twice: with
train_gd's default hand-derived backward (zeroloss.train.backprop) and with ``backprop="autograd"``. A second
peer is the torch.func model-ensembling recipe (``stack_module_state`` + ``vmap(grad(functional_call))`` over the
same nn.Modules, updated in place), what a user who knows torch.func would write instead of the loop.

The script also prints the *flop floor* of the run: the matrix-multiply flops every exact implementation of these
steps must do (:func:`gd_step_flops`, :func:`conv_gd_step_flops`: forward, weight and input gradients), divided by
the best matmul rate this machine reaches in the same process (a large square matmul, or a batched one of the net's
own shape). No implementation of the same arithmetic can beat the loop by more than loop time / flop floor: where
the loop is itself compute-bound that ceiling, not the ensemble's overhead, is what limits the ratio.

    python benchmarks/bench_train_gd.py                                 # CPU, 32 members (issue #2 target ≥ 3×)
    python benchmarks/bench_train_gd.py --device cuda --members 64      # H100 target ≥ 30×
    python benchmarks/bench_train_gd.py --net conv-resnet --members 16 --n 64 --d 4 --width 64   # against nn.Conv1d
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from benchmarks._common import machine
from benchmarks.bench_gram import UserFC
from zeroloss.data import patch_data, sphere_data
from zeroloss.kernels.empirical import gram
from zeroloss.nets import ConvResNet, FullyConnected
from zeroloss.spectra import lambda_max
from zeroloss.train.gd import train_gd


def gd_step_flops(n: int, d: int, m: int, depth: int) -> int:
    """Matmul flops of one full-batch GD step of one member of Du's FC net (2 per multiply-add).

    forward 2nm(d + (H−1)m + 1); weight gradients the same; input gradients 2nm((H−1)m + 1) (layer 1 needs none).
    """
    forward = 2 * n * m * (d + (depth - 1) * m + 1)
    return 2 * forward + 2 * n * m * ((depth - 1) * m + 1)


def conv_gd_step_flops(n: int, channels: int, positions: int, m: int, depth: int, q: int = 3) -> int:
    """Matmul flops of one GD step of one member of Du's convolutional ResNet, counted like :func:`gd_step_flops`.

    Every layer is a (n·p, q·c_in) @ (q·c_in, m) product (c_in = channels for layer 1, m after): forward and
    weight gradient each, input gradient for layers 2..H; the output u = ⟨a, x_H⟩ is 2npm forward and as much for
    ∂a (∂x_H = r a is a broadcast product, no matmul). Zero padding is counted as data (im2col does that arithmetic).
    """
    first, hidden = 2 * n * positions * q * channels * m, 2 * n * positions * q * m * m
    output = 2 * n * positions * m
    return 2 * (first + (depth - 1) * hidden + output) + (depth - 1) * hidden


def best_matmul_rate(members: int, rows: int, inner: int, cols: int, device: torch.device, repeats: int = 5,
                     ) -> float:
    """The best matmul rate (flop/s) this machine reaches, float32: a 2048² square matmul, or a batched one of
    the net's hidden-layer shape (members, rows, inner) @ (members, inner, cols)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cases = [(torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device), 2 * 2048**3),
             (torch.randn(members, rows, inner, device=device), torch.randn(members, inner, cols, device=device),
              2 * members * rows * inner * cols)]
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


class UserConvResNet(nn.Module):
    """Du's convolutional ResNet as a user would write it with nn.Conv1d (no bias, zero padding), weights copied in.

    Our W (m, q·c) has column k·c + ch; Conv1d's weight (m, c, q) has [o, ch, k]: the same cross-correlation.
    """

    def __init__(self, net: ConvResNet) -> None:
        super().__init__()
        q = net.kernel_size
        self.convs = nn.ModuleList()
        for h in range(1, net.depth + 1):
            W = getattr(net, f"W{h}")[0].detach()
            conv = nn.Conv1d(W.shape[1] // q, W.shape[0], q, padding=(q - 1) // 2, bias=False, dtype=W.dtype,
                             device=W.device)
            conv.weight.data.copy_(W.view(W.shape[0], q, -1).permute(0, 2, 1))
            self.convs.append(conv)
        self.a = nn.Parameter(net.a.detach()[0].clone())
        self.first_scale, self.residual_scale = net.first_scale, net.residual_scale
        self.act = net.activation.fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_scale * self.act(self.convs[0](x))
        for conv in self.convs[1:]:
            x = x + self.residual_scale * self.act(conv(x))
        return (x * self.a).sum(dim=(1, 2))


def _user_module(net: FullyConnected | ConvResNet) -> type[nn.Module]:
    """The nn.Module a user would write for this net (weights copied from a single-member net)."""
    return UserConvResNet if isinstance(net, ConvResNet) else UserFC


def loop_of_modules(net: FullyConnected | ConvResNet, X: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
                    ) -> torch.Tensor:
    """The peer: one nn.Module and one torch.optim.SGD per member, trained one after the other."""
    user_module = _user_module(net)
    finals = []
    for k in range(net.members):
        model = user_module(net.member(k))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * (model(X) - y).pow(2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            finals.append(0.5 * (model(X) - y).pow(2).sum())
    return torch.stack(finals)


def vmap_ensemble(net: FullyConnected | ConvResNet, X: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
                  ) -> torch.Tensor:
    """The second peer: PyTorch's model-ensembling recipe on the same nn.Modules.

    ``stack_module_state`` stacks the members' parameters (leading members dimension), ``vmap(grad(...))`` of a
    ``functional_call`` on a "meta" copy gives every member's gradient in one call, and the update is in place.
    """
    user_module = _user_module(net)
    models = [user_module(net.member(k)) for k in range(net.members)]
    params, buffers = stack_module_state(models)
    params = {name: p.detach() for name, p in params.items()}
    base = user_module(net.member(0)).to("meta")

    def member_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                    ) -> torch.Tensor:
        return 0.5 * (functional_call(base, (p, b), (X,)) - y).pow(2).sum()

    gradients = vmap(grad(member_loss), in_dims=(0, 0, None, None))
    for _ in range(steps):
        for name, g in gradients(params, buffers, X, y).items():
            params[name].sub_(g, alpha=lr)
    return vmap(member_loss, in_dims=(0, 0, None, None))(params, buffers, X, y)


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
    parser.add_argument("--lr", type=float, default=None,
                        help="step for every member (default: 1/max_s λ_max(G_s(0)), inside every member's stable "
                             "range, so that no implementation times diverging arithmetic)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs of each")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one ensemble run")
    parser.add_argument("--net", choices=["fc", "conv-resnet"], default="fc",
                        help="conv-resnet: --d is the channels, --positions the positions, kernel size 3")
    parser.add_argument("--positions", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.net == "fc":
        X, y = sphere_data(args.n, args.d, seed=0)
        shape = f"d={args.d}"
    else:
        X, y = patch_data(args.n, args.d, args.positions, seed=0)
        shape = f"channels={args.d} positions={args.positions} q=3"
    X, y = X.float().to(device), y.float().to(device)
    print(f"machine: {machine()}")
    print(f"{args.net}: S={args.members} n={args.n} {shape} m={args.width} H={args.depth} steps={args.steps} "
          f"float32 on {device}")

    def build() -> FullyConnected | ConvResNet:
        if args.net == "fc":
            return FullyConnected(args.d, args.width, args.depth, "softplus", args.members, 0, torch.float32, device)
        return ConvResNet(args.d, args.positions, args.width, args.depth, 3, "softplus", args.members, 0,
                          torch.float32, device)

    template, net = build(), build()
    if args.lr is None:  # outside the timed region: every implementation below takes this one step
        args.lr = float(1.0 / lambda_max(gram(template, X)).max())
        print(f"lr = 1/max_s λ_max(G_s(0)) = {args.lr:.3g}")
    for mode in ("auto", "autograd"):  # warm-up
        train_gd(net, X, y, args.lr, 2, probes=["loss"], progress=False, backprop=mode)
    ours_runs: list[float] = []
    autograd_runs: list[float] = []
    peer_runs: list[float] = []
    vmap_runs: list[float] = []

    def timed_ensemble(mode: str):
        net.load_state_dict(template.state_dict())
        sync()
        t0 = time.perf_counter()
        result = train_gd(net, X, y, args.lr, args.steps, probe_every=args.steps, probes=["loss"], progress=False,
                          backprop=mode)
        sync()
        return result, time.perf_counter() - t0

    vmap_ensemble(template, X, y, args.lr, 2)  # warm-up
    for _ in range(args.repeats):  # alternate the four, so that a noisy stretch of the machine hits all
        run, seconds = timed_ensemble("auto")
        ours_runs.append(seconds)
        autograd_run, seconds = timed_ensemble("autograd")
        autograd_runs.append(seconds)
        t0 = time.perf_counter()
        finals = loop_of_modules(template, X, y, args.lr, args.steps)
        sync()
        peer_runs.append(time.perf_counter() - t0)
        sync()
        t0 = time.perf_counter()
        vmap_finals = vmap_ensemble(template, X, y, args.lr, args.steps)
        sync()
        vmap_runs.append(time.perf_counter() - t0)
    ours, peer = min(ours_runs), min(peer_runs)
    diff = float((torch.as_tensor(run.losses[-1]) - finals.double().cpu()).abs().max() / finals.abs().max())
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
    vmapped = min(vmap_runs)
    vmap_diff = float((vmap_finals.double().cpu() - finals.double().cpu()).abs().max() / finals.abs().max())
    vmap_median = statistics.median(vmap_runs) / statistics.median(ours_runs)
    print(f"torch.func ensemble, vmap(grad(functional_call)): {vmapped:.3f} s (best of {_runs(vmap_runs)}; final "
          f"losses differ from the loop's by {vmap_diff:.1e} relative); ratio vmap / ensemble "
          f"{vmapped / ours:.1f}x (median over median {vmap_median:.1f}x)")
    if args.profile:
        net.load_state_dict(template.state_dict())
        with torch.profiler.profile() as prof:
            train_gd(net, X, y, args.lr, args.steps, probe_every=args.steps, probes=["loss"], progress=False)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12))
    if args.net == "fc":
        step_flops = gd_step_flops(args.n, args.d, args.width, args.depth)
        rate = best_matmul_rate(args.members, args.n, args.width, args.width, device)
    else:
        step_flops = conv_gd_step_flops(args.n, args.d, args.positions, args.width, args.depth)
        rate = best_matmul_rate(args.members, args.n * args.positions, 3 * args.width, args.width, device)
    floor = args.steps * args.members * step_flops / rate
    print(f"flop floor: {floor:.3f} s ({step_flops * args.members / 1e9:.2f} GFLOP a step) at the best measured "
          f"matmul rate {rate / 1e9:.0f} GFLOP/s; no implementation of these steps can beat the loop by more than "
          f"{peer / floor:.1f}x here (the ensemble reaches {floor / ours:.0%} of that floor)")


if __name__ == "__main__":
    main()
