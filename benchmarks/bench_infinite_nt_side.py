"""Neural Tangents' side of the infinite-width comparison: run under NT's own virtual environment (jax 0.4.23,
neural-tangents 0.6.5), never imported by zeroloss or its tests.

    NT_PYTHON benchmarks/bench_infinite_nt_side.py --out nt.npz [--n 6] [--timing] [--repeat 3]

Writes, per architecture of ``benchmarks/infinite_archs.py``, the NNGP and NTK on n inputs (float64) to an .npz
(keys ``<arch>/nngp``, ``<arch>/ntk``), and with ``--timing`` the jitted ``kernel_fn`` time (best of ``--repeat``,
after one compiling call) for the two anchors at their issue-21 sizes in float64 and float32
(keys ``time/<arch>/<dtype>``). ``neural_tangents.experimental`` (which imports TensorFlow) is not loaded.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import infinite_archs as A  # noqa: E402


def _layers(spec, stax):
    out = []
    for layer in spec:
        kind = layer[0]
        if kind == "dense":
            out.append(stax.Dense(layer[1], W_std=A.W_STD, b_std=A.B_STD, parameterization="standard"))
        elif kind == "conv":
            _, ch, k, stride, pad = layer
            padding = {"same": "SAME", "valid": "VALID", "same_right": "SAME"}[pad]
            out.append(stax.Conv(ch, (k, k), (stride, stride), padding, W_std=A.W_STD, b_std=A.B_STD,
                                 parameterization="standard"))
        elif kind == "act":
            name = layer[1]
            if name == "relu":
                out.append(stax.Relu())
            elif name == "erf":
                out.append(stax.Erf())
            elif name == "gelu":
                out.append(stax.Gelu())
            elif name == "leaky_relu":
                out.append(stax.LeakyRelu(layer[2]))
            elif name == "tanh":
                out.append(stax.ElementwiseNumerical(jax.numpy.tanh, deg=A.NT_NUMERICAL_DEGREE))
            else:
                raise ValueError(name)
        elif kind == "flatten":
            out.append(stax.Flatten())
        elif kind == "gap":
            out.append(stax.GlobalAvgPool())
        elif kind == "avgpool":
            out.append(stax.AvgPool((layer[1], layer[1]), (layer[1], layer[1]), "VALID"))
        elif kind == "layernorm":
            out.append(stax.LayerNorm(eps=1e-12))
        elif kind == "residual":
            branch = stax.serial(*_layers(layer[1], stax))
            out.append(stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), branch), stax.FanInSum()))
        else:
            raise ValueError(kind)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated architectures (default: all)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    results: dict[str, np.ndarray] = {}
    names = [a for a in A.ARCHS if not args.only or a in args.only.split(",")]
    for name in names:
        shape, spec = A.ARCHS[name]
        _, _, kernel_fn = stax.serial(*_layers(spec, stax))
        values, full_shape = A.inputs(name, args.n)
        x = np.asarray(values, dtype=np.float64).reshape(full_shape)
        k = kernel_fn(x, None, ("nngp", "ntk"))
        results[f"{name}/nngp"] = np.asarray(k.nngp)
        results[f"{name}/ntk"] = np.asarray(k.ntk)
        print(f"{name}: done", flush=True)
    if args.timing:
        for name, n in A.ANCHORS.items():
            _, spec = A.ARCHS[name]
            _, _, kernel_fn = stax.serial(*_layers(spec, stax))
            fn = jax.jit(kernel_fn, static_argnames="get")
            for dtype in (np.float64, np.float32):
                values, full_shape = A.inputs(name, n, seed=1)
                x = np.asarray(values, dtype=dtype).reshape(full_shape)
                fn(x, None, get=("nngp", "ntk")).ntk.block_until_ready()  # compile
                best = float("inf")
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    fn(x, None, get=("nngp", "ntk")).ntk.block_until_ready()
                    best = min(best, time.perf_counter() - t)
                results[f"time/{name}/{np.dtype(dtype).name}"] = np.asarray(best)
                print(f"{name} n={n} {np.dtype(dtype).name}: {best:.3f} s", flush=True)
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
