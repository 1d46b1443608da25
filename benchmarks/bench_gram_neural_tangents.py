"""zeroloss.gram(layer="all") against Neural Tangents' fastest empirical NTK, same net, same inputs, one process.

Neural Tangents (JAX, archived) is not a zeroloss dependency: measure it in a throwaway venv that holds both
(Neural Tangents 0.6.5 runs with jax 0.4.23, which needs numpy < 2):

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "neural-tangents==0.6.5" torch==2.13.0 \\
        "numpy<2" "scipy<1.13" "pandas<2.3" tqdm scikit-learn pyarrow pydantic typer
    /tmp/ntvenv/bin/pip install -e . --no-deps
    /tmp/ntvenv/bin/python -m benchmarks.bench_gram_neural_tangents

The peer is ``nt.empirical_ntk_fn(..., implementation=STRUCTURED_DERIVATIVES, vmap_axes=0)``, jit-compiled, in
float64 (jax_enable_x64), on Du's fully-connected net written in stax with the weights copied from zeroloss's net:
``Dense(m, W_std=√d)`` then ``Dense(m, W_std=√c_σ)`` layers with erf activations, no biases (docs/theory.md §1.4).
The two Gram matrices are checked to agree before timing.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks._common import best_time, machine
from zeroloss.data import sphere_data
from zeroloss.kernels.empirical import gram
from zeroloss.nets import FullyConnected


def main() -> None:
    import jax
    import neural_tangents as nt
    from neural_tangents import stax

    jax.config.update("jax_enable_x64", True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    X, _ = sphere_data(args.n, args.d, seed=0)
    net = FullyConnected(args.d, args.width, args.depth, "erf", 1, 0, torch.float64)
    c = net.activation.c_sigma
    layers = [stax.Dense(args.width, W_std=math.sqrt(args.d), b_std=None), stax.Erf()]
    for _ in range(args.depth - 1):
        layers += [stax.Dense(args.width, W_std=math.sqrt(c), b_std=None), stax.Erf()]
    layers += [stax.Dense(1, W_std=math.sqrt(c), b_std=None)]
    _, apply_fn, _ = stax.serial(*layers)
    weights = [getattr(net, f"W{h}")[0].detach().numpy().T for h in range(1, args.depth + 1)]
    weights.append(net.a[0].detach().numpy()[:, None])
    params, w = [], iter(weights)
    for layer_index in range(len(layers)):
        params.append((jax.numpy.asarray(next(w)), None) if layer_index % 2 == 0 else ())
    x = jax.numpy.asarray(X.numpy())
    ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                         implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))

    def peer() -> np.ndarray:
        return np.asarray(ntk_fn(x, None, params).block_until_ready())

    G_nt = peer().reshape(args.n, args.n)
    G_ours = gram(net, X)[0].numpy()
    err = float(np.linalg.norm(G_ours - G_nt) / np.linalg.norm(G_nt))
    print(f"machine: {machine()}, jax {jax.__version__}, neural-tangents {getattr(nt, '__version__', '0.6.5')}")
    print(f"n={args.n} d={args.d} m={args.width} H={args.depth} float64, erf; relative difference {err:.1e}")
    if err > 1e-8:
        raise SystemExit("the two Gram matrices disagree: the nets are not the same, timing would be meaningless")
    ours = best_time(lambda: gram(net, X), args.repeats)
    theirs = best_time(peer, args.repeats)
    print(f"zeroloss.gram(layer='all'): {ours:.4f} s")
    print(f"neural-tangents structured derivatives (jit, after compile): {theirs:.4f} s")
    print(f"ratio neural-tangents / zeroloss: {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
