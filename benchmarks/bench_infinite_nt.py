"""zeroloss.limit_kernel on user-style nn.Modules against Neural Tangents' ``stax`` kernel_fn: agreement and speed.

Neural Tangents 0.6.5 (archived) needs jax 0.4.23 and numpy < 2, so it runs in its own virtual environment,
as a subprocess (``benchmarks/bench_infinite_nt_side.py``); zeroloss never imports it:

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install jax==0.4.23 jaxlib==0.4.23 neural-tangents==0.6.5 "numpy<2" "scipy<1.13" \\
        "ml-dtypes==0.3.2"
    /tmp/ntvenv/bin/pip uninstall -y tensorflow tf2jax keras    # NT's experimental module only; not loaded

    python -m benchmarks.bench_infinite_nt --nt-python /tmp/ntvenv/bin/python             # agreement, n = 6
    python -m benchmarks.bench_infinite_nt --nt-python /tmp/ntvenv/bin/python --timing    # + the two anchors

Agreement: every architecture of ``benchmarks/infinite_archs.py`` (FC with each activation, CNN + Flatten, CNN +
global average pooling, strided convs, a residual block, LayerNorm, average pooling), the same laws (NT's
"standard" parameterisation, W_std, b_std given to zeroloss as ``init``), max |ours − NT| / max |NT| ≤ 1e-10 for
closed forms and ≤ 1e-6 for tanh (NT's ``ElementwiseNumerical`` quadrature of degree 64 is the coarser rule).
Timing (``--timing``): NNGP and NTK together, best of 3, for the issue's two anchors — Dense(512)–ReLU–Dense(512)–
Erf–Dense(1) at n = 2000, d = 64, and Conv(64, 3×3)–ReLU ×3 (the third with stride 2)–GlobalAvgPool–Dense(1) on 64
images 8 × 8 × 3 — in float64 and float32, both sides in the same run (the model and inputs built outside the
timed call, as NT's are); ``--device cuda`` for the GPU row (NT on CPU); ``--block-bytes`` scans zeroloss's block size.
Exit status 1 when an architecture disagrees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks import infinite_archs as A
from benchmarks._common import best_time, machine
from zeroloss.kernels.limit import limit_kernel

#: Agreement tolerances (relative to max |NT|): round-off for closed forms; the quadrature's for tanh.
TOL_CLOSED = 1e-10
TOL_QUADRATURE = 1e-6
#: On the diagonal (i = j) NT's ReLU derivative kernel takes θ = arctan2(√(K_ii K_jj − K_ij²), K_ij) with K_ii K_jj
#: and K_ij² from different round-offs: √(1e-16) ≈ 1e-8 relative (measured: 1.8e-8 at fc_relu), where zeroloss's
#: θ is exactly 0 (both passes see one number, zeroloss.infinite.rules.pin_diagonal). Off the diagonal: TOL_CLOSED.
TOL_DIAGONAL = 1e-7


class Residual(nn.Module):
    """x + branch(x)."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


ACTS = {"relu": nn.ReLU, "erf": None, "gelu": nn.GELU, "tanh": nn.Tanh}


class Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def build(spec: list, shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """The nn.Module of a spec (infinite_archs) and its output shape (channels-first)."""
    layers: list[nn.Module] = []
    channels = shape[-1]
    for layer in spec:
        kind = layer[0]
        if kind == "dense":
            layers.append(nn.Linear(channels, layer[1]))
            channels = layer[1]
        elif kind == "conv":
            _, ch, k, stride, pad = layer
            if pad == "same_right":
                layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
                pad = 0
            elif pad == "same":
                pad = (k - 1) // 2
            else:
                pad = 0
            layers.append(nn.Conv2d(channels, ch, k, stride, pad))
            channels = ch
        elif kind == "act":
            name = layer[1]
            if name == "leaky_relu":
                layers.append(nn.LeakyReLU(layer[2]))
            elif name == "erf":
                layers.append(Erf())
            else:
                layers.append(ACTS[name]())
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "gap":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif kind == "avgpool":
            layers.append(nn.AvgPool2d(layer[1]))
        elif kind == "layernorm":
            layers.append(nn.LayerNorm(channels, eps=1e-12, elementwise_affine=False))
        elif kind == "residual":
            branch, _ = build(layer[1], (*shape[:-1], channels))
            layers.append(Residual(branch))
        else:
            raise ValueError(kind)
    return nn.Sequential(*layers), (channels,)


def model_and_inputs(name: str, n: int, seed: int = 0, dtype: torch.dtype = torch.float64):
    """(module, X channels-first, init mapping) for an architecture; flatten sizes follow the conv outputs."""
    shape, spec = A.ARCHS[name]
    values, full = A.inputs(name, n, seed)
    X = torch.tensor(values, dtype=dtype).reshape(full)
    if X.ndim == 4:
        X = X.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    net, _ = build(spec, shape)
    with torch.no_grad():  # size the Linear after a Flatten from a forward pass
        _fix_linear_inputs(net, X[:1].float())
    init = {m: (A.W_STD**2, A.B_STD**2) for m, mod in net.named_modules() if isinstance(mod, (nn.Linear, nn.Conv2d))}
    return net, X, init


def _fix_linear_inputs(net: nn.Sequential, x: torch.Tensor) -> None:
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Linear) and layer.in_features != x.shape[1]:
            net[i] = layer = nn.Linear(x.shape[1], layer.out_features)
        x = layer.float()(x)


def ours(name: str, n: int, dtype: torch.dtype = torch.float64, device: str = "cpu", seed: int = 0,
         block_bytes: int | None = None):
    net, X, init = model_and_inputs(name, n, seed, dtype)
    return limit_kernel(X.to(device), net.double(), kind="both", init=init, device=device, dtype=dtype,
                        block_bytes=block_bytes)


def run_nt(python: str, n: int, timing: bool) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nt.npz"
        cmd = [python, str(Path(__file__).with_name("bench_infinite_nt_side.py")), "--out", str(out), "--n", str(n)]
        subprocess.run(cmd + (["--timing"] if timing else []), check=True)
        with np.load(out) as data:
            return {k: data[k] for k in data.files}


def agreement(nt: dict[str, np.ndarray], n: int) -> bool:
    ok = True
    for name in A.ARCHS:
        if f"{name}/nngp" not in nt:
            continue
        res = ours(name, n)
        tol = TOL_QUADRATURE if "tanh" in name else TOL_CLOSED
        errs, diag = [], []
        off = ~np.eye(n, dtype=bool)
        for kind in ("nngp", "ntk"):
            ref = nt[f"{name}/{kind}"]
            mine = getattr(res, kind).cpu().numpy()
            scale = np.abs(ref).max()
            errs.append(float(np.abs(mine - ref)[off].max() / scale))
            diag.append(float(np.abs(np.diag(mine) - np.diag(ref)).max() / scale))
        good = max(errs) <= tol and max(diag) <= TOL_DIAGONAL
        ok &= good
        print(f"{name:18s} off-diagonal nngp {errs[0]:.1e} ntk {errs[1]:.1e} (tol {tol:.0e}); diagonal nngp "
              f"{diag[0]:.1e} ntk {diag[1]:.1e} (tol {TOL_DIAGONAL:.0e})  {'ok' if good else 'DISAGREES'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nt-python", default="", help="python of NT's venv (empty: zeroloss timings only)")
    parser.add_argument("--n", type=int, default=6, help="inputs of the agreement check")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block-bytes", type=int, default=None, help="zeroloss's block size (default: its own)")
    args = parser.parse_args()
    print(machine())
    nt = run_nt(args.nt_python, args.n, args.timing) if args.nt_python else {}
    ok = agreement(nt, args.n) if nt else True
    if args.timing:
        for name, n in A.ANCHORS.items():
            net, X, init = model_and_inputs(name, n, 1)
            for dtype in (torch.float64, torch.float32):
                Xd = X.to(args.device, dtype)  # the model and inputs are built once, outside the timing

                def run(Xd=Xd, net=net, init=init, dtype=dtype):
                    return limit_kernel(Xd, net.double(), kind="both", init=init, device=args.device, dtype=dtype,
                                        block_bytes=args.block_bytes)

                t = best_time(run, sync=args.device.startswith("cuda"))
                key = f"time/{name}/{str(dtype).split('.')[-1]}"
                peer = float(nt[key]) if key in nt else float("nan")
                print(f"{name} n={n} {str(dtype).split('.')[-1]} ({args.device}): zeroloss {t:.3f} s, "
                      f"Neural Tangents {peer:.3f} s, ratio NT/zeroloss {peer / t:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
