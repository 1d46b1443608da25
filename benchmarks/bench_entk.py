"""zeroloss.entk against the two torch.func tutorial methods, same model, same inputs, one process.

The peers are the two recipes of PyTorch's "Neural Tangent Kernels" tutorial (torch.func), written out below as a
user copies them: ``tutorial_jacobian`` (``vmap(jacrev)`` Jacobians of x1 and x2, then an einsum) and
``tutorial_ntvp`` (``vmap`` over every pair (x1_i, x2_j) of a ``vjp`` then a ``jvp``). Both are applied over
blocks of samples when their memory would not fit (``--peer-block``; the tutorial's code is unchanged inside a
block). Where x2 is x1 the Jacobian peer computes J once (the tutorial computes it twice: the peer is given the
saving). The ratio is against the faster peer.

    python -m benchmarks.bench_entk --case mlp          # 3 hidden layers of 1024, n = 256, float64 (target ≥ 50×)
    python -m benchmarks.bench_entk --case cnn          # 4 conv layers × 64 channels, 16×16, n = 64 (target ≥ 5×)
    python -m benchmarks.bench_entk --case resnet18     # CIFAR ResNet-18, n = 32, float32, 10 outputs (≥ 3×)
    python -m benchmarks.bench_entk --case resnet18 --device cuda --n 1000 --no-peer   # GPU: chunked, stated memory

Neural Tangents 0.6.5 (JAX, archived; never a zeroloss dependency) on the MLP, in a throwaway venv that holds both
(jax 0.4.23 needs numpy < 2; torch's CPU wheel is the one of the project's venv):

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "neural-tangents==0.6.5" torch==2.13.0 \\
        "numpy<2" "scipy<1.13" "pandas<2.3" tqdm scikit-learn pyarrow pydantic typer pyyaml jinja2 matplotlib numba
    /tmp/ntvenv/bin/pip install -e . --no-deps
    /tmp/ntvenv/bin/python -m benchmarks.bench_entk --case mlp --neural-tangents --no-peer

The NTVP peer costs one vjp and one jvp per pair of samples; on the large cases it is timed on the first
``--ntvp-rows`` rows of the kernel and scaled by n1 / rows (its cost is the same for every row), and the script
says so. Every peer's kernel is checked against entk's before timing.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from benchmarks._common import best_time, machine
from zeroloss.ntk import entk, entk_memory_bytes
from zeroloss.ntk.entk import _Job
from zeroloss.precision import no_tf32

# ------------------------------------------------------------------------------------------------------------
# The models


class Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def mlp(d: int = 32, width: int = 1024, depth: int = 3, outputs: int = 1) -> nn.Module:
    """The MLP row: ``depth`` hidden layers of ``width`` with biases, erf (Neural Tangents has the same layer)."""
    layers: list[nn.Module] = []
    fan_in = d
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), Erf()]
        fan_in = width
    layers.append(nn.Linear(fan_in, outputs))
    return nn.Sequential(*layers)


def cnn(channels: int = 64, depth: int = 4, outputs: int = 1) -> nn.Module:
    """The CNN row: ``depth`` 3×3 convolutions of ``channels`` (padding 1, biases, tanh), global average, linear."""
    layers: list[nn.Module] = []
    c_in = 3
    for _ in range(depth):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.Tanh()]
        c_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, outputs)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (in-place ReLU and residual add included)."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 for 32×32 inputs (BasicBlock, [2, 2, 2, 2]; CIFAR stem: one 3×3 convolution, no max-pool).

    torchvision cannot be installed beside torch 2.13 here, so the architecture is written out; 11.17 M parameters.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        blocks, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


CASES = {
    # name: (model factory, input shape per sample, n, dtype, outputs)
    "mlp": (lambda: mlp(), (32,), 256, torch.float64),
    "cnn": (lambda: cnn(), (3, 16, 16), 64, torch.float64),
    "resnet18": (lambda: ResNet18(), (3, 32, 32), 32, torch.float32),
}

# ------------------------------------------------------------------------------------------------------------
# The peers: the torch.func tutorial's two recipes


def _single(model: nn.Module):
    def fnet_single(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (x.unsqueeze(0),)).squeeze(0)

    return fnet_single


def tutorial_jacobian(model: nn.Module, params: dict, x1: torch.Tensor, x2: torch.Tensor | None) -> torch.Tensor:
    """The tutorial's ``empirical_ntk_jacobian_contraction`` (compute="trace"); J(x1) reused when x2 is None."""
    fnet_single = _single(model)
    jac1 = vmap(jacrev(fnet_single), (None, 0))(params, x1)
    jac1 = [j.flatten(2) for j in jac1.values()]
    if x2 is None:
        jac2 = jac1
    else:
        jac2 = vmap(jacrev(fnet_single), (None, 0))(params, x2)
        jac2 = [j.flatten(2) for j in jac2.values()]
    return sum(torch.einsum("Naf,Maf->NM", j1, j2) for j1, j2 in zip(jac1, jac2, strict=True))


def tutorial_ntvp(model: nn.Module, params: dict, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The tutorial's ``empirical_ntk_ntk_vps`` (compute="trace"), verbatim apart from names."""
    func = _single(model)

    def get_ntk(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        def func_x1(params):
            return func(params, x1)

        def func_x2(params):
            return func(params, x2)

        output, vjp_fn = vjp(func_x1, params)

        def get_ntk_slice(vec):
            vjps = vjp_fn(vec)
            _, jvps = jvp(func_x2, (params,), vjps)
            return jvps

        basis = torch.eye(output.numel(), dtype=output.dtype, device=output.device).view(output.numel(), -1)
        return vmap(get_ntk_slice)(basis)

    result = vmap(vmap(get_ntk, (None, 0)), (0, None))(x1, x2)
    return torch.einsum("NMKK->NM", result)


def blocked(peer, model, params, x1, x2, block: int) -> torch.Tensor:
    """Apply a peer over blocks of ``block`` samples of x1 × x2 (the tutorial's code unchanged inside a block).

    For the square kernel (x2 None) only the blocks on and above the diagonal are computed and mirrored, and the
    Jacobian peer computes a diagonal block's J once: a blocked run computes J for (b + b(b−1)/2)·block samples
    (b blocks) instead of n, the price of fitting in memory, which the script prints.
    """
    n1 = x1.shape[0]
    xs = x1 if x2 is None else x2
    out = torch.empty(n1, xs.shape[0], dtype=x1.dtype, device=x1.device)
    for a in range(0, n1, block):
        for b in range(0, xs.shape[0], block):
            if x2 is None and b < a:
                continue
            same = x2 is None and a == b and peer is tutorial_jacobian
            K = peer(model, params, x1[a : a + block], None if same else xs[b : b + block])
            out[a : a + block, b : b + block] = K
            if x2 is None and b > a:
                out[b : b + block, a : a + block] = K.T
    return out


def _ntvp_peer(model, params, x1, x2, block):
    return blocked(tutorial_ntvp, model, params, x1, x1 if x2 is None else x2, block)


# ------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="mlp")
    parser.add_argument("--n", type=int, default=None, help="samples (default: the case's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-bytes", type=float, default=None, help="entk's memory cap in GiB (default: entk's)")
    parser.add_argument("--peer-block", type=int, default=None, help="samples per peer block (default: all)")
    parser.add_argument("--ntvp-rows", type=int, default=None, help="time the NTVP peer on this many rows")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--method", choices=["auto", "structured", "jacobian", "ntvp"], default="auto",
                        help="entk's method (default auto; the doc's CNN paragraph compares structured)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one entk call")
    parser.add_argument("--neural-tangents", action="store_true",
                        help="also Neural Tangents' structured derivatives (MLP only; a venv with jax, see above)")
    args = parser.parse_args()

    factory, shape, n, dtype = CASES[args.case]
    n = args.n or n
    dtype = getattr(torch, args.dtype) if args.dtype else dtype
    device = torch.device(args.device)
    sync = device.type == "cuda"
    torch.manual_seed(0)
    model = factory().to(device=device, dtype=dtype).eval()
    X = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
    budget = None if args.max_bytes is None else int(args.max_bytes * 2**30)
    P = sum(p.numel() for p in model.parameters())
    print(f"command: python -m benchmarks.bench_entk --case {args.case} (n={n}, {str(dtype)[6:]}, {device})")
    print(f"machine: {machine()}")
    stated = entk_memory_bytes(model, X, memory_budget=budget, dtype=dtype)
    print(f"model: {P / 1e6:.2f} M parameters; entk states {stated / 2**30:.2f} GiB before computing")

    def ours() -> torch.Tensor:
        return entk(model, X, memory_budget=budget, dtype=dtype, method=args.method)

    with no_tf32():
        if sync:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        K = ours()
        first = time.perf_counter() - t0
        if sync:
            peak = torch.cuda.max_memory_allocated()
            print(f"CUDA peak allocated {peak / 2**30:.2f} GiB (stated {stated / 2**30:.2f} GiB)")
        t_ours = best_time(ours, args.repeats, sync)
        chosen = _Job(model, X, None, None, "trace", "total", args.method, budget, dtype).plan().method
        label = f"auto = {chosen}" if args.method == "auto" else chosen
        print(f"zeroloss.entk ({label}): {t_ours:.4f} s (first call {first:.3f} s)")
        if args.profile:
            with torch.profiler.profile() as prof:
                ours()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        if args.neural_tangents:
            if args.case != "mlp":
                raise SystemExit("--neural-tangents: the MLP case only")
            nt_peer, versions = neural_tangents_peer(model, X)
            print(f"peer: {versions}")
            t_nt = _time_peer("neural-tangents", nt_peer, K, args.repeats, sync)
            print(f"neural-tangents structured derivatives (jit, after compilation): {t_nt:.4f} s   "
                  f"ratio {t_nt / t_ours:.1f}x")
        if args.no_peer:
            return
        params = {k: v.detach() for k, v in model.named_parameters()}
        block = args.peer_block or n
        if block < n:
            blocks = math.ceil(n / block)
            print(f"Jacobian peer in {blocks} × {blocks} blocks of {block} samples: J computed for "
                  f"{(blocks + blocks * (blocks - 1) // 2) * block} sample-Jacobians instead of {n}")
        if dtype == torch.float32:
            m = min(n, 4)  # the float64 kernel of the first samples: how accurate is each float32 result?
            K64 = entk(model, X[:m], dtype=torch.float64)
            P32 = tutorial_jacobian(model, params, X[:m], None)
            print(f"float32 vs float64 on {m} samples: entk {_rel(K[:m, :m], K64):.1e}, Jacobian peer "
                  f"{_rel(P32, K64):.1e}")
        times = {}
        t_jac = _time_peer("jacobian", lambda: blocked(tutorial_jacobian, model, params, X, None, block), K,
                           max(1, args.repeats - 2), sync)
        times["torch.func Jacobian contraction"] = t_jac
        rows = args.ntvp_rows or n
        Xr = X[:rows]
        # the NTVP recipe holds a P-vector (and its activations) per pair of a block: blocks of ≤ 1 GiB of them
        pair_block = max(1, int(math.sqrt(2**30 / (4 * P * X.element_size()))))
        pair_block = min(pair_block, block, rows)
        print(f"NTVP peer blocks: {pair_block} × {pair_block} pairs")

        def ntvp_rows() -> torch.Tensor:
            return blocked(tutorial_ntvp, model, params, Xr, X, pair_block)

        t_ntvp = _time_peer("ntvp", ntvp_rows, K[:rows], 1, sync) * (n / rows)
        note = f" (timed on {rows} of {n} rows, scaled by {n / rows:g})" if rows < n else ""
        times[f"torch.func NTK-vector products{note}"] = t_ntvp
    for name, t in times.items():
        print(f"{name}: {t:.4f} s   ratio {t / t_ours:.1f}x")
    best = min(times.values())
    print(f"ratio best peer / zeroloss: {best / t_ours:.1f}x")


def neural_tangents_peer(model: nn.Sequential, X: torch.Tensor):
    """Neural Tangents' structured-derivatives eNTK of the MLP (``mlp()``), weights copied; returns a callable.

    Needs jax 0.4.23 + neural-tangents 0.6.5 (a throwaway venv, never a zeroloss dependency; see the module
    docstring). stax's ``Dense`` in the standard parameterisation computes x W + b with the weights as given, and
    ``Erf`` is torch.erf, so the two models are the same function (checked before timing).
    """
    import jax
    import neural_tangents as nt
    from neural_tangents import stax

    jax.config.update("jax_enable_x64", X.dtype == torch.float64)
    layers, params = [], []
    for module in model:
        if isinstance(module, nn.Linear):
            layers.append(stax.Dense(module.out_features, parameterization="standard"))
            params.append((jax.numpy.asarray(module.weight.detach().T.numpy()),
                           jax.numpy.asarray(module.bias.detach().numpy())))
        else:
            layers.append(stax.Erf())
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                         implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
    x = jax.numpy.asarray(X.numpy())

    def peer() -> torch.Tensor:
        return torch.from_numpy(jax.numpy.asarray(ntk_fn(x, None, params).block_until_ready()).__array__().copy())

    return peer, f"jax {jax.__version__}, neural-tangents {getattr(nt, '__version__', '0.6.5')}"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _time_peer(name: str, fn, reference: torch.Tensor, repeats: int, sync: bool) -> float:
    t0 = time.perf_counter()
    K = fn()
    first = time.perf_counter() - t0
    err = float((K - reference).norm() / reference.norm())
    # float64: round-off; float32: the peer's own float32 error, printed above against float64 (~4e-4 measured
    # for ResNet-18's vmap(jacrev), while entk's float32 kernel is within ~1e-7 of float64)
    tol = 2e-3 if reference.dtype == torch.float32 else 1e-10
    print(f"{name} peer: first call {first:.3f} s, relative difference to entk {err:.1e}")
    if not math.isfinite(err) or err > tol:
        raise SystemExit(f"the {name} peer's kernel differs from entk's by {err:.1e}: timing would be meaningless")
    if repeats <= 1 and first > 10:
        return first  # a slow peer is timed once (its first call already is that measurement)
    return best_time(fn, repeats, sync)


if __name__ == "__main__":
    main()
