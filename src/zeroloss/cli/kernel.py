"""``zeroloss kernel``: an infinite-width kernel (Du's K^(H), NNGP or NTK) of one of Du et al.'s nets.

    zeroloss kernel --net fc --depth 3 --activation softplus --kind du --inputs X.npy --out K.npy
    zeroloss kernel --model my_net.py:make_net --kind ntk --inputs X.npy --out K.npy    # your own nn.Module

With ``--out K.zarr`` the kernel is a tiled, resumable job (:mod:`zeroloss.tiles`, :mod:`zeroloss.cli.kernel_job`)
and ``--kind`` may also be ``gram`` (the finite-width Gram of a lab net: ``--width``, ``--seed``, ``--layer``) or
``entk`` (the empirical NTK of your model, ``--model FILE.py:FACTORY``):

    zeroloss kernel --kind ntk --inputs X.npy --out K.zarr --block 2048 --executor process --workers 2 [--dry-run]

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

from zeroloss.cli.common import (
    cli_errors,
    echo_err,
    input_shape,
    load_inputs,
    parse_device,
    prepare_output_file,
)
from zeroloss.errors import ZerolossInputError

#: Memory of the parallel-rows check of the inputs (:func:`zeroloss.data.validate_inputs`: row blocks of at most
#: this many bytes).
PARALLEL_CHECK_BYTES = 64 * 2**20
#: Fewest Gauss-Hermite nodes per axis: with 1 to 4 nodes the softplus and tanh kernels of a few unit inputs came
#: out with λ_min < 0 (the products of activations are integrated wrongly); more nodes may still be needed, which
#: the λ_min check below says.
MIN_NODES = 8
#: Most nodes per axis: the quadrature's tables grow with nodes² per entry (and 2000 is far beyond any accuracy gain).
MAX_NODES = 2000
#: A computed kernel whose λ_min is below −NEGATIVE_TOLERANCE·λ_max is refused as not positive semi-definite. The
#: exact kernel of valid (unit, non-parallel) inputs is positive definite; float64 round-off in the eigenvalues of
#: an n × n matrix is about n·1e-16·λ_max, far below this for any n the budget allows.
NEGATIVE_TOLERANCE = 1e-10


def kernel_command_bytes(kernel_bytes: int, n: int) -> int:
    """Peak memory of the command: the largest of computing the kernel (``kernel_bytes``,
    :func:`zeroloss.kernels.limit.limit_kernel_memory_bytes`), writing it (K and its ``.npy`` buffer) and its
    spectrum beside K."""
    from zeroloss.spectra import eigenvalues_memory_bytes

    result = 8 * n * n
    return max(kernel_bytes, 2 * result, result + eigenvalues_memory_bytes(n))


def kernel(
    inputs: Path = typer.Option(..., help="X.npy: (n, d), or (n, channels, positions) for conv-resnet"),
    out: Path = typer.Option(..., help="where to write K.npy ((n, n) float64), or K.zarr: a tiled, resumable job"),
    net: str = typer.Option("fc", help="fc | resnet | conv-resnet"),
    depth: int = typer.Option(2, help="number of hidden layers H"),
    activation: str = typer.Option("softplus", help="activation name"),
    kind: str = typer.Option("du", help="du (Du's K^(H), lambda_0) | nngp | ntk; with --out K.zarr also gram "
                             "(a lab net's finite-width Gram) | entk (your --model)"),
    c_res: float = typer.Option(0.5, "--c-res", help="ResNet residual scale, in (0, 1)"),
    kernel_size: int = typer.Option(3, "--kernel-size", help="conv-resnet kernel size q (odd)"),
    nodes: int = typer.Option(96, help="Gauss-Hermite nodes per axis where no closed form exists"),
    normalise: bool = typer.Option(False, help="project inputs onto the unit sphere instead of rejecting them"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="print the spectrum as JSON on stdout"),
    overwrite: bool = typer.Option(False, help="replace --out if it exists"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: half the "
                                         "available memory, or ZEROLOSS_MAX_BYTES); per worker for a K.zarr job"),
    block: int = typer.Option(2048, help="K.zarr: tile side (rows and columns per tile)"),
    executor: str = typer.Option("local", help="K.zarr: local | process | ray"),
    workers: int | None = typer.Option(None, help="K.zarr: worker processes (process) or CPUs (local Ray)"),
    address: str | None = typer.Option(None, help="K.zarr: a Ray cluster's address (default: a private local one)"),
    dtype: str = typer.Option("float64", help="K.zarr: stored dtype, float64 | float32"),
    dry_run: bool = typer.Option(False, "--dry-run", help="K.zarr: state tiles, disk, memory and time; write nothing"),
    model: str | None = typer.Option(None, help="FILE.py:FACTORY returning a torch.nn.Module: its infinite-width "
                                     "kernel (--kind nngp|ntk, to K.npy), or with K.zarr --kind entk its eNTK"),
    parameterisation: str = typer.Option("standard", "--parameterisation", help="with --model: standard | ntk"),
    width: int = typer.Option(0, help="--kind gram: the net's width (0: 512); entk: FACTORY(width) (0: FACTORY())"),
    seed: int = typer.Option(0, help="--kind gram: the net's seed; entk: torch's seed before FACTORY is called"),
    layer: str = typer.Option("all", help="--kind gram: all | last | output | an integer h"),
    inputs2: Path | None = typer.Option(None, "--inputs2", help="K.zarr: X2.npy for the cross kernel K(X, X2)"),
    threads: int = typer.Option(1, help="K.zarr: intra-op threads per tile"),
) -> None:
    """Write the infinite-width kernel (float64) and print lambda_min, lambda_max and the condition number."""
    if out.suffix == ".zarr":
        from zeroloss.cli.kernel_job import run_job

        return run_job(dict(locals()))
    if model is not None:  # a user's nn.Module to K.npy: its infinite-width kernel (zeroloss.infinite.shell)
        from zeroloss.infinite.shell import model_kernel_command

        model_kernel_command(model, inputs, out, kind, parameterisation, nodes, parse_device(device), overwrite,
                             as_json, max_bytes)
        return
    if kind in ("gram", "entk"):
        raise ZerolossInputError(f"--kind: {kind} is computed as a tiled job; give --out K.zarr, got {str(out)!r}")
    for given, name in ((executor != "local", "--executor"), (workers is not None, "--workers"),
                        (address is not None, "--address"), (dry_run, "--dry-run"), (model is not None, "--model"),
                        (inputs2 is not None, "--inputs2")):
        if given:
            raise ZerolossInputError(f"{name}: only used with --out K.zarr (a tiled job), got --out {str(out)!r}")
    import numpy as np

    from zeroloss.activations import ACTIVATIONS
    from zeroloss.budget import FLAG, check_depth, check_memory, resolve_budget
    from zeroloss.errors import choice, require
    from zeroloss.kernels.limit import KINDS, NETS, limit_kernel, limit_kernel_memory_bytes
    from zeroloss.spectra import spectrum
    from zeroloss.store import atomic_write_bytes, output_errors

    choice(net, "--net", NETS)
    choice(kind, "--kind", KINDS)
    choice(activation, "--activation", tuple(ACTIVATIONS))
    check_depth(depth, "--depth")
    require(MIN_NODES <= nodes <= MAX_NODES, "--nodes", f"must be an integer from {MIN_NODES} to {MAX_NODES} "
            "(Gauss-Hermite nodes per axis)", nodes)
    if net != "fc":
        require(0.0 < c_res < 1.0, "--c-res", "must be in (0, 1)", c_res)
    if net == "conv-resnet":
        require(kernel_size >= 1 and kernel_size % 2 == 1, "--kernel-size", "must be an odd positive integer",
                kernel_size)
    where = parse_device(device)
    budget = resolve_budget(max_bytes, FLAG)
    def command_bytes(shape: tuple[int, ...], itemsize: int) -> int:
        """The whole command's peak: reading and checking the inputs, the kernel, its file and its spectrum."""
        n, positions = shape[0], (shape[2] if len(shape) == 3 else 1)
        return (kernel_command_bytes(limit_kernel_memory_bytes(n, depth, positions, nodes, device=where), n)
                + n * int(np.prod(shape[1:])) * (itemsize + 8) + PARALLEL_CHECK_BYTES)

    # the memory is checked once, for the whole command: from the file's header, before the inputs are read (or,
    # for a file without a usable header, from the inputs as read); the library calls below state no more than it
    header = input_shape(inputs)
    checked = header is not None and len(header[0]) in (2, 3) and 0 not in header[0]
    if checked:
        need = command_bytes(*header)
        check_memory(need, budget, field="--inputs", what=f"the {header[0][0]} × {header[0][0]} {kind} kernel",
                     hint="use fewer inputs")
    X = load_inputs(inputs, normalise, budget)
    if (net == "conv-resnet") != (X.ndim == 3):
        shape_text = "(n, channels, positions)" if net == "conv-resnet" else "(n, d)"
        raise ZerolossInputError(f"--inputs: {net} needs {shape_text} arrays, got shape {tuple(X.shape)}")
    if net == "conv-resnet":
        require(kernel_size <= 2 * X.shape[2] - 1, "--kernel-size", f"must be at most 2·positions − 1 = "
                f"{2 * X.shape[2] - 1} for inputs of {X.shape[2]} positions (a wider window adds only zero padding)",
                kernel_size)
    norms = X.reshape(X.shape[0], -1).norm(dim=1)
    if float(norms.max() - norms.min()) > 1e-13 and net != "conv-resnet":
        echo_err("note: the input norms differ by more than 1e-13, so every block is integrated separately "
                 "(slow for large n); --normalise projects onto the sphere exactly and enables the fast table")
    n = X.shape[0]
    if not checked:
        need = command_bytes(tuple(X.shape), X.element_size())
        check_memory(need, budget, field="--inputs", what=f"the {n} × {n} {kind} kernel", hint="use fewer inputs")
    if need > 2**30:
        echo_err(f"note: computing a {n}x{n} kernel on {where} needs about {need / 2**30:.1f} GiB")
    prepare_output_file(out, "--out", overwrite)
    K = limit_kernel(X, net=net, depth=depth, activation=activation, kind=kind, c_res=c_res,
                     kernel_size=kernel_size, nodes=nodes, device=where, memory_budget=budget.bytes).cpu()
    spec = spectrum(K, memory_budget=budget.bytes)
    if spec.lambda_min < -NEGATIVE_TOLERANCE * abs(spec.lambda_max):
        raise ZerolossInputError(f"--nodes: the kernel computed with {nodes} Gauss-Hermite nodes has lambda_min = "
                                 f"{spec.lambda_min:.3g} < 0, so it is not a kernel: the quadrature is too coarse for "
                                 "these inputs; raise --nodes (nothing written)")
    buffer = io.BytesIO()
    np.save(buffer, K.numpy())
    with output_errors("--out", out):
        atomic_write_bytes(out, buffer.getbuffer())
    del buffer
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
