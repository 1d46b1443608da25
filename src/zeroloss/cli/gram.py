"""``zeroloss gram``: the exact finite-width Gram matrix of a freshly initialised net on given inputs.

Every option is checked, and the memory of the whole command (the net, the Gram computation, the written file and
the spectra) is compared with the budget (``--max-bytes``, default half the available memory: :mod:`zeroloss.budget`)
— first from the shape in the inputs' ``.npy`` header, before anything is loaded or built, then exactly once the net
exists — before ``--out`` is touched. Bad input or an impossible size: one line ``error: <field>: ...``, exit
status 2, nothing written.
"""

from __future__ import annotations

import io
from pathlib import Path

import typer

from zeroloss.cli.common import (
    check_seed,
    cli_errors,
    input_shape,
    load_inputs,
    parse_device,
    prepare_output_file,
)
from zeroloss.cli.train import build_du_net
from zeroloss.errors import ZerolossInputError, choice, require


def check_net_options(net: str, width: int, depth: int, members: int, c_res: float, activation: str) -> None:
    """The net options of ``gram`` (and their CLI names), before anything is built."""
    from zeroloss.activations import ACTIVATIONS
    from zeroloss.nets.registry import DU_NETS

    choice(net, "--net", DU_NETS)
    from zeroloss.budget import check_depth

    for value, name in ((width, "--width"), (members, "--members")):
        require(value >= 1, name, "must be a positive integer", value)
    check_depth(depth, "--depth")
    if net != "fc":
        require(0.0 < c_res < 1.0, "--c-res", "must be in (0, 1)", c_res)
    choice(activation, "--activation", tuple(ACTIVATIONS))


def parse_layer(layer: str, depth: int) -> str | int:
    """``all``, ``last``, ``output`` or an integer h in 1..H+1 (H + 1: the output weights); checked from the
    depth alone (no set of layers is built: ``--depth`` may be absurd, the budget refuses it later)."""
    if layer in ("all", "last", "output"):
        return layer
    text = layer.strip()
    if text.lstrip("-").isdigit() and 1 <= int(text) <= depth + 1:
        return int(text)
    raise ZerolossInputError(f"--layer: must be 'all', 'last', 'output' or an integer in 1..{depth + 1} "
                             f"(H + 1 = output), got {layer!r}")


def gram_command_bytes(gram_bytes: int, net_bytes: int, n: int, members: int) -> int:
    """Peak memory of the command once the net exists: the net, plus the largest of its three phases — computing
    the Gram (``gram_bytes``, :func:`zeroloss.kernels.empirical.gram_memory_bytes`), writing it (the (S, n, n)
    result and its ``.npy`` buffer) and one member's spectrum beside the result."""
    from zeroloss.spectra import eigenvalues_memory_bytes

    result = 8 * members * n * n
    return net_bytes + max(gram_bytes, 2 * result, result + eigenvalues_memory_bytes(n))


def gram(
    inputs: Path = typer.Option(..., help="X.npy: (n, d), or (n, channels, positions) for conv-resnet"),
    out: Path = typer.Option(..., help="where to write G.npy"),
    net: str = typer.Option("fc", help="fc | resnet | conv-resnet"),
    width: int = typer.Option(512, help="width m"),
    depth: int = typer.Option(2, help="number of hidden layers H"),
    activation: str = typer.Option("softplus", help="activation name"),
    layer: str = typer.Option("all", help="all | last | output | an integer h (1-based)"),
    members: int = typer.Option(1, help="members S: G.npy is (S, n, n) when S > 1, else (n, n)"),
    seed: int = typer.Option(0, help="seed of member 0"),
    c_res: float = typer.Option(0.5, "--c-res", help="ResNet residual scale, in (0, 1)"),
    normalise: bool = typer.Option(False, help="project inputs onto the unit sphere instead of rejecting them"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    overwrite: bool = typer.Option(False, help="replace --out if it exists"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: half the "
                                         "available memory, or ZEROLOSS_MAX_BYTES)"),
) -> None:
    """Write the Gram matrix at initialisation (float64) and print its extreme eigenvalues."""
    import numpy as np
    import torch

    from zeroloss.budget import (
        FLAG,
        check_memory,
        du_net_memory_bytes,
        du_net_parameters,
        largest_cause,
        resolve_budget,
    )
    from zeroloss.kernels.empirical import gram as gram_fn
    from zeroloss.kernels.empirical import gram_memory_bytes
    from zeroloss.spectra import spectrum
    from zeroloss.store import atomic_write_bytes, output_errors

    check_net_options(net, width, depth, members, c_res, activation)
    layer_sel = parse_layer(layer, depth)
    check_seed(seed, members)
    where = parse_device(device)
    budget = resolve_budget(max_bytes, FLAG)
    header = input_shape(inputs)
    if header is not None and len(header[0]) in (2, 3) and 0 not in header[0]:
        # from the header alone: the net's construction, the inputs (read, then float64), the (S, n, n) result
        shape, itemsize = header
        n, per_input = shape[0], int(np.prod(shape[1:]))

        def estimate(v: dict[str, int]) -> int:
            params = du_net_parameters(net, width=v["--width"], depth=v["--depth"], d=shape[1], channels=shape[1],
                                       positions=shape[-1])
            return max(du_net_memory_bytes(params, v["--members"], v["--depth"] + 1),
                       8 * v["--members"] * (params + 3 * n * n)) + n * per_input * (itemsize + 8)

        values = {"--width": width, "--depth": depth, "--members": members}
        field = largest_cause(estimate, values, {"--width": 512, "--depth": 2, "--members": 1}, "--inputs")
        if estimate({"--width": 1, "--depth": 1, "--members": 1}) > budget.bytes:
            field = "--inputs"  # too many inputs whatever the net
        check_memory(estimate(values), budget, field=field, what=f"a Gram matrix of {members} member(s) on n = {n} "
                     f"inputs (net of width {width}, depth {depth})", hint="use fewer inputs or a smaller net")
    X = load_inputs(inputs, normalise, budget)
    wanted = 3 if net == "conv-resnet" else 2
    if X.ndim != wanted:
        shape_text = "(n, channels, positions)" if wanted == 3 else "(n, d)"
        raise ZerolossInputError(f"--inputs: {net} needs {shape_text} arrays, got shape {tuple(X.shape)}")
    model = build_du_net(net, X, width=width, depth=depth, activation=activation, c_res=c_res, members=members,
                         seed=seed, dtype=torch.float64, device=where)
    n = X.shape[0]
    net_bytes = 8 * sum(p.numel() for p in model.parameters())
    need = gram_command_bytes(gram_memory_bytes(model, n, layer_sel), net_bytes, n, members)
    check_memory(need, budget, field="--members" if members > 1 else "--inputs",
                 what=f"a Gram matrix of {members} member(s) on n = {n} inputs",
                 hint="use fewer inputs or a smaller net")
    prepare_output_file(out, "--out", overwrite)
    G = gram_fn(model, X, layer=layer_sel, memory_budget=budget.bytes).cpu()
    buffer = io.BytesIO()
    np.save(buffer, (G[0] if members == 1 else G).numpy())
    with output_errors("--out", out):
        atomic_write_bytes(out, buffer.getbuffer())
    del buffer
    for s in range(members):
        spec = spectrum(G[s], memory_budget=budget.bytes)
        typer.echo(f"member {s}: lambda_min {spec.lambda_min:.6g}  lambda_max {spec.lambda_max:.6g}  "
                   f"condition {spec.condition:.4g}  negative eigenvalues {spec.negative_count}")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("gram")(cli_errors(gram))
