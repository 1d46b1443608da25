"""``zeroloss kernel``: an infinite-width kernel (Du's K^(H), NNGP or NTK) of one of Du et al.'s nets.

    zeroloss kernel --net fc --depth 3 --activation softplus --kind du --inputs X.npy --out K.npy
    zeroloss kernel --model my_net.py:make_net --kind ntk --inputs X.npy --out K.npy    # your own nn.Module

Inputs are validated as Du et al. require (unit norm within 1e-5, no two rows parallel) unless ``--normalise``
projects them onto the sphere. Prints λ_min, λ_max and the condition number; ``--json`` prints them alone as
JSON on stdout. The memory of the whole command is compared with the budget (``--max-bytes``, default half the
available memory: :mod:`zeroloss.budget`) — from the inputs' ``.npy`` header before they are read, and again once
they are validated. Bad input or an impossible size: one line ``error: ...`` on stderr, exit status 2, no file
written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import typer

from zeroloss.cli.common import cli_errors, echo_err, load_inputs, parse_device, prepare_output_file
from zeroloss.errors import ZerolossInputError

#: Memory of the parallel-rows check of the inputs (:func:`zeroloss.data.validate_inputs`: row blocks of at most
#: this many bytes).
PARALLEL_CHECK_BYTES = 64 * 2**20


def kernel_command_bytes(kernel_bytes: int, n: int) -> int:
    """Peak memory of the command: the largest of computing the kernel (``kernel_bytes``,
    :func:`zeroloss.kernels.limit.limit_kernel_memory_bytes`), writing it (K and its ``.npy`` buffer) and its
    spectrum beside K."""
    from zeroloss.spectrum import eigenvalues_memory_bytes

    result = 8 * n * n
    return max(kernel_bytes, 2 * result, result + eigenvalues_memory_bytes(n))


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
    overwrite: bool = typer.Option(False, help="replace --out if it exists"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: half the "
                                         "available memory, or ZEROLOSS_MAX_BYTES)"),
    model: str = typer.Option("", "--model", help="FILE.py:FACTORY: the kernel of your own nn.Module (--kind nngp|ntk; "
                              "--net, --depth, --activation do not apply)"),
    parameterisation: str = typer.Option("standard", "--parameterisation", help="with --model: standard | ntk"),
) -> None:
    """Write the infinite-width kernel (float64) and print lambda_min, lambda_max and the condition number."""
    if model:  # a user's nn.Module: zeroloss.infinite (self-contained there)
        from zeroloss.infinite.shell import model_kernel_command

        model_kernel_command(model, inputs, out, kind, parameterisation, nodes, parse_device(device), overwrite,
                             as_json, max_bytes)
        return
    import numpy as np

    from zeroloss.activations import ACTIVATIONS
    from zeroloss.budget import FLAG, check_memory, npy_shape, resolve_budget
    from zeroloss.errors import choice, require
    from zeroloss.kernels.limit import KINDS, NETS, limit_kernel, limit_kernel_memory_bytes
    from zeroloss.spectrum import spectrum
    from zeroloss.store import atomic_write_bytes, output_errors

    choice(net, "--net", NETS)
    choice(kind, "--kind", KINDS)
    choice(activation, "--activation", tuple(ACTIVATIONS))
    require(depth >= 1, "--depth", "must be a positive integer", depth)
    require(nodes >= 1, "--nodes", "must be a positive integer (Gauss-Hermite nodes per axis)", nodes)
    if net != "fc":
        require(0.0 < c_res < 1.0, "--c-res", "must be in (0, 1)", c_res)
    if net == "conv-resnet":
        require(kernel_size >= 1 and kernel_size % 2 == 1, "--kernel-size", "must be an odd positive integer",
                kernel_size)
    where = parse_device(device)
    budget = resolve_budget(max_bytes, FLAG)
    header = npy_shape(inputs) if inputs.is_file() else None
    if header is not None and len(header[0]) in (2, 3) and 0 not in header[0]:
        shape, itemsize = header  # sized from the .npy header, before the inputs are read
        n, positions = shape[0], (shape[2] if len(shape) == 3 else 1)
        need = kernel_command_bytes(limit_kernel_memory_bytes(n, depth, positions, nodes, device=where), n) \
            + n * int(np.prod(shape[1:])) * (itemsize + 8) + PARALLEL_CHECK_BYTES
        check_memory(need, budget, field="--inputs", what=f"the {n} × {n} {kind} kernel", hint="use fewer inputs")
    X = load_inputs(inputs, normalise)
    if (net == "conv-resnet") != (X.ndim == 3):
        shape_text = "(n, channels, positions)" if net == "conv-resnet" else "(n, d)"
        raise ZerolossInputError(f"--inputs: {net} needs {shape_text} arrays, got shape {tuple(X.shape)}")
    norms = X.reshape(X.shape[0], -1).norm(dim=1)
    if float(norms.max() - norms.min()) > 1e-13 and net != "conv-resnet":
        echo_err("note: the input norms differ by more than 1e-13, so every block is integrated separately "
                 "(slow for large n); --normalise projects onto the sphere exactly and enables the fast table")
    n, positions = X.shape[0], (X.shape[2] if X.ndim == 3 else 1)
    need = kernel_command_bytes(limit_kernel_memory_bytes(n, depth, positions, nodes, device=where), n)
    check_memory(need, budget, field="--inputs", what=f"the {n} × {n} {kind} kernel", hint="use fewer inputs")
    if need > 2**30:
        echo_err(f"note: computing a {n}x{n} kernel on {where} needs about {need / 2**30:.1f} GiB")
    prepare_output_file(out, "--out", overwrite)
    K = limit_kernel(X, net=net, depth=depth, activation=activation, kind=kind, c_res=c_res,
                     kernel_size=kernel_size, nodes=nodes, device=where, memory_budget=budget.bytes).cpu()
    buffer = io.BytesIO()
    np.save(buffer, K.numpy())
    with output_errors("--out", out):
        atomic_write_bytes(out, buffer.getbuffer())
    del buffer
    spec = spectrum(K, memory_budget=budget.bytes)
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
