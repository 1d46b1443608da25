"""``zeroloss kernel``: an infinite-width kernel (Du's K^(H), NNGP or NTK) of one of Du et al.'s nets.

    zeroloss kernel --net fc --depth 3 --activation softplus --kind du --inputs X.npy --out K.npy

Inputs are validated as Du et al. require (unit norm within 1e-5, no two rows parallel) unless ``--normalise``
projects them onto the sphere. Prints λ_min, λ_max and the condition number; ``--json`` prints them alone as
JSON on stdout. Bad input: one line ``error: ...`` on stderr, exit status 2, no file written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import typer

from zeroloss.cli.common import atomic_write_bytes, cli_errors, echo_err, load_inputs, parse_device
from zeroloss.errors import ZerolossInputError


def kernel(
    inputs: Path = typer.Option(..., help="X.npy: (n, d), or (n, channels, positions) for conv-resnet"),
    out: Path = typer.Option(..., help="where to write K.npy ((n, n) float64)"),
    net: str = typer.Option("fc", help="fc | resnet | conv-resnet"),
    depth: int = typer.Option(2, help="number of hidden layers H"),
    activation: str = typer.Option("softplus", help="activation name"),
    kind: str = typer.Option("du", help="du (Du's K^(H), lambda_0) | nngp | ntk"),
    c_res: float = typer.Option(0.5, "--c-res", help="ResNet residual scale, in (0, 1)"),
    kernel_size: int = typer.Option(3, "--kernel-size", help="conv-resnet kernel size q (odd)"),
    nodes: int = typer.Option(96, help="Gauss-Hermite nodes per axis where no closed form exists"),
    normalise: bool = typer.Option(False, help="project inputs onto the unit sphere instead of rejecting them"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="print the spectrum as JSON on stdout"),
) -> None:
    """Write the infinite-width kernel (float64) and print lambda_min, lambda_max and the condition number."""
    import numpy as np

    from zeroloss.errors import choice
    from zeroloss.kernels.limit import KINDS, NETS, limit_kernel, limit_kernel_memory_bytes
    from zeroloss.spectrum import spectrum

    choice(net, "--net", NETS)
    choice(kind, "--kind", KINDS)
    X = load_inputs(inputs, normalise)
    if (net == "conv-resnet") != (X.ndim == 3):
        need = "(n, channels, positions)" if net == "conv-resnet" else "(n, d)"
        raise ZerolossInputError(f"--inputs: {net} needs {need} arrays, got shape {tuple(X.shape)}")
    norms = X.reshape(X.shape[0], -1).norm(dim=1)
    if float(norms.max() - norms.min()) > 1e-13 and net != "conv-resnet":
        echo_err("note: the input norms differ by more than 1e-13, so every block is integrated separately "
                 "(slow for large n); --normalise projects onto the sphere exactly and enables the fast table")
    where = parse_device(device)
    positions = X.shape[2] if X.ndim == 3 else 1
    need = limit_kernel_memory_bytes(X.shape[0], depth, positions, nodes, device=where)
    if need > 2**30:
        echo_err(f"note: computing a {X.shape[0]}x{X.shape[0]} kernel on {where} needs about {need / 2**30:.1f} GiB")
    K = limit_kernel(X, net=net, depth=depth, activation=activation, kind=kind, c_res=c_res,
                     kernel_size=kernel_size, nodes=nodes, device=where).cpu()
    spec = spectrum(K)
    buffer = io.BytesIO()
    np.save(buffer, K.numpy())
    atomic_write_bytes(out, buffer.getvalue())
    summary = {"lambda_min": spec.lambda_min, "lambda_max": spec.lambda_max, "condition": spec.condition,
               "negative_eigenvalues": spec.negative_count, "n": int(K.shape[0]), "kind": kind, "net": net}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"{kind} kernel of {net}, H={depth}, {activation}: lambda_min {spec.lambda_min:.6g}  "
               f"lambda_max {spec.lambda_max:.6g}  condition {spec.condition:.4g}")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("kernel")(cli_errors(kernel))
